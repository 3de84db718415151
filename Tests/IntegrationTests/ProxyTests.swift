import Foundation
import MusterAPI
import Testing

/// The proxy through the real daemon: real instances (Fixtures/backend.py), real clients
/// (Fixtures/hits.py, Fixtures/load.py), real sockets.
@Suite(.serialized) struct ProxyTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// A manifest for backend.py behind a proxy on `port`.
    static func service(instances: Int, port: Int, mode: String = "http", health: String = "check = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"\nrise = 1\nfall = 2",
                        arguments: [String] = [], proxyExtra: String = "", environment: String = "") -> String {
        let argv = (["/usr/bin/python3", "\(fixtures)/backend.py"] + arguments).map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            command = [\(argv)]
            instances = \(instances)
            \(environment.isEmpty ? "" : "environment = { \(environment) }")
            [restart]
            start_seconds = 0.2
            [stop]
            timeout = "5s"
            [proxy]
            listen = ["127.0.0.1:\(port)"]
            protocol = "\(mode)"
            drain_timeout = "5s"
            queue_timeout = "5s"
            \(proxyExtra)
            [health]
            \(health)
            """
    }

    /// `bind` or `connect` of `fd` to 127.0.0.1:`port`; the call's result.
    static func onLoopback(_ fd: Int32, _ port: Int, _ call: (Int32, UnsafePointer<sockaddr>?, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// A loopback port nothing listens on, for a proxy listener. Taken below the kernel's
    /// ephemeral range (32768 and up here): a port the kernel chose for a bind, then closed, can
    /// be handed to some outgoing connection before musterd binds it, and the test fails for
    /// nothing.
    static func freePort() -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 17000..<20000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let bound = onLoopback(fd, port, bind)
            close(fd)
            if bound == 0 { return port }
        }
        fatalError("no free loopback port in 17000-19999")
    }

    static func hits(_ d: DaemonHarness, port: Int, count: Int, fresh: Bool = false) throws -> [String] {
        let result = d.run("/usr/bin/python3", ["\(fixtures)/hits.py", "http://127.0.0.1:\(port)/", "\(count)"] + (fresh ? ["--fresh"] : []))
        return try JSONDecoder().decode([String].self, from: Data(result.stdout.utf8))
    }

    static func readyCount(_ d: DaemonHarness, _ service: String) -> Int {
        ((try? d.instances(service)) ?? []).filter { $0.ready }.count
    }

    /// load.py in the background until `finish()` is called.
    final class Load: @unchecked Sendable {
        struct Counts: Decodable { var ok: Int; var failed: Int; var errors: [String]; var by_instance: [String: Int] }
        let process = Process()
        let output = Pipe()
        let stopFile: String

        init(port: Int, clients: Int = 4, path: String = "/", directory: URL) throws {
            stopFile = directory.appendingPathComponent("stop-load-\(UInt32.random(in: 0...UInt32.max))").path
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["\(ProxyTests.fixtures)/load.py", "http://127.0.0.1:\(port)\(path)", "--clients", "\(clients)", "--duration", "120", "--stop-file", stopFile]
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        func finish() throws -> Counts {
            FileManager.default.createFile(atPath: stopFile, contents: nil)
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return try JSONDecoder().decode(Counts.self, from: data)
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    @Test(.enabled(if: isRoot)) func httpRoundRobinOverReadyInstances() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 3, port: port)]) { d in
            try await d.start()
            let allReady = await eventually(15) { Self.readyCount(d, "web") == 3 }
            #expect(allReady)
            let seen = try Self.hits(d, port: port, count: 12)
            #expect(seen.sorted() == ["0", "0", "0", "0", "1", "1", "1", "1", "2", "2", "2", "2"], "\(seen)")
            let status = try d.status().services[0]
            #expect(status.proxy?.listen == ["127.0.0.1:\(port)"])
            #expect((status.proxy?.requestsTotal ?? 0) >= 12)
            let table = d.ctl("status").stdout
            #expect(table.contains("web: http proxy on 127.0.0.1:\(port)"))
        }
    }

    @Test(.enabled(if: isRoot)) func tcpRoundRobinPerConnection() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["db": Self.service(instances: 3, port: port, mode: "tcp", health: "check = \"tcp\"\ninterval = \"200ms\"\nrise = 1")]) { d in
            try await d.start()
            let allReady = await eventually(15) { Self.readyCount(d, "db") == 3 }
            #expect(allReady)
            let seen = try Self.hits(d, port: port, count: 12, fresh: true)
            #expect(seen.sorted() == ["0", "0", "0", "0", "1", "1", "1", "1", "2", "2", "2", "2"], "\(seen)")
        }
    }

    @Test(.enabled(if: isRoot)) func slowStarterGetsNoTrafficUntilReady() async throws {
        let port = Self.freePort()
        // Instance 1 listens only after 3 s; instance 0 at once.
        let text = Self.service(instances: 2, port: port, arguments: [], environment: "DELAY = \"{index}\"")
            .replacingOccurrences(of: "command = [\"/usr/bin/python3\", \"\(Self.fixtures)/backend.py\"]",
                                  with: "command = [\"/bin/sh\", \"-c\", \"exec /usr/bin/python3 \(Self.fixtures)/backend.py --start-delay $((DELAY * 3))\"]")
        try await DaemonHarness.with(services: ["web": text]) { d in
            try await d.start()
            let firstReady = await eventually(10) { Self.readyCount(d, "web") == 1 }
            #expect(firstReady)
            let early = try Self.hits(d, port: port, count: 6)
            #expect(early == ["0", "0", "0", "0", "0", "0"], "only the ready instance serves: \(early)")
            let bothReady = await eventually(15) { Self.readyCount(d, "web") == 2 }
            #expect(bothReady)
            let later = try Self.hits(d, port: port, count: 6)
            #expect(Set(later) == ["0", "1"], "\(later)")
        }
    }

    @Test(.enabled(if: isRoot)) func notifyReadinessMakesAnInstanceReady() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 1, port: port, health: "check = \"notify\"", arguments: ["--notify"])]) { d in
            try await d.start()
            let ready = await eventually(15) { Self.readyCount(d, "web") == 1 }
            #expect(ready)
            #expect(try Self.hits(d, port: port, count: 2) == ["0", "0"])
            #expect(try d.instances("web").first?.health == "READY=1")
        }
    }

    @Test(.enabled(if: isRoot)) func nothingReadyWaitsThenAnswers503() async throws {
        let port = Self.freePort()
        let text = Self.service(instances: 1, port: port, proxyExtra: "queue_timeout = \"700ms\"").replacingOccurrences(of: "queue_timeout = \"5s\"\n", with: "")
        try await DaemonHarness.with(services: ["web": text]) { d in
            try await d.start()
            let ready = await eventually(15) { Self.readyCount(d, "web") == 1 }
            #expect(ready)
            #expect(d.ctl("stop", "web").code == 0)
            let started = Date()
            let seen = try Self.hits(d, port: port, count: 1)
            #expect(Date().timeIntervalSince(started) >= 0.6)
            #expect(seen.first?.hasPrefix("HTTP 503") == true, "\(seen)")
            #expect(seen.first?.contains("no instance of web is ready") == true, "\(seen)")
        }
    }

    @Test(.enabled(if: isRoot)) func rollingRestartUnderLoadLosesNoRequest() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 2, port: port)]) { d in
            try await d.start()
            let bothReady = await eventually(15) { Self.readyCount(d, "web") == 2 }
            #expect(bothReady)
            let before = try d.instances("web").compactMap(\.pid)
            let load = try Load(port: port, directory: d.directory)
            try await Task.sleep(for: .seconds(1))
            let restart = d.ctl("restart", "web")
            #expect(restart.code == 0, "\(restart.stderr)")
            try await Task.sleep(for: .seconds(1))
            let counts = try load.finish()
            let after = try d.instances("web")
            #expect(Set(after.compactMap(\.pid)).isDisjoint(with: before), "every instance was replaced")
            let allReplacementsReady = after.allSatisfy { $0.ready }
            #expect(allReplacementsReady, "\(after)")
            #expect(counts.failed == 0, "\(counts.errors)")
            #expect(counts.ok > 50)
            // Rolling, one at a time: each slot's replacement was ready before its old process
            // began to drain, and slot 1 began only after slot 0 was done.
            let lines = d.ctl("events", "--json").stdout.split(separator: "\n")
            let events = lines.compactMap { try? JSONDecoder().decode(EventRecord.self, from: Data($0.utf8)) }
                .filter { ["replacing", "ready", "draining"].contains($0.kind) && $0.service == "web" }
            let story = events.map { "\($0.kind) \($0.instance ?? "")" }
            let tail = Array(story.drop { $0 != "replacing web:0" })
            #expect(tail == ["replacing web:0", "ready web:0", "draining web:0", "replacing web:1", "ready web:1", "draining web:1"], "\(story)")
        }
    }

    @Test(.enabled(if: isRoot)) func scaleDownUnderLoadLosesNoRequest() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 3, port: port)]) { d in
            try await d.start()
            let allReady = await eventually(15) { Self.readyCount(d, "web") == 3 }
            #expect(allReady)
            let load = try Load(port: port, directory: d.directory)
            try await Task.sleep(for: .seconds(1))
            #expect(d.ctl("scale", "web", "1").code == 0)
            let scaledDown = await eventually(15) { (try? d.instances("web").count) == 1 }
            #expect(scaledDown)
            try await Task.sleep(for: .milliseconds(500))
            let counts = try load.finish()
            #expect(counts.failed == 0, "\(counts.errors)")
            #expect(d.log.contains("draining"))
        }
    }

    @Test(.enabled(if: isRoot)) func killedInstanceUnderLoadIsCoveredByRetries() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 3, port: port)]) { d in
            try await d.start()
            let allReady = await eventually(15) { Self.readyCount(d, "web") == 3 }
            #expect(allReady)
            let load = try Load(port: port, directory: d.directory)
            try await Task.sleep(for: .seconds(1))
            let victim = try #require(try d.instances("web").first?.pid)
            kill(victim, SIGKILL)
            let victimReplaced = await eventually(15) { Self.readyCount(d, "web") == 3 && ((try? d.instances("web").first?.pid) ?? victim) != victim }
            #expect(victimReplaced)
            try await Task.sleep(for: .milliseconds(500))
            let counts = try load.finish()
            #expect(counts.failed == 0, "\(counts.errors)")
        }
    }

    @Test(.enabled(if: isRoot)) func reloadRebindsAChangedListenerAndRefusesATakenOne() async throws {
        let (first, second, other) = (Self.freePort(), Self.freePort(), Self.freePort())
        try await DaemonHarness.with(services: ["web": Self.service(instances: 1, port: first), "api": Self.service(instances: 1, port: other)]) { d in
            try await d.start()
            let bothServicesReady = await eventually(15) { Self.readyCount(d, "web") == 1 && Self.readyCount(d, "api") == 1 }
            #expect(bothServicesReady)
            let apiPid = try d.instances("api").first?.pid
            try d.write(service: "web", Self.service(instances: 1, port: second))
            let reload = d.ctl("reload")
            #expect(reload.code == 0, "\(reload.stderr)")
            #expect(try Self.hits(d, port: second, count: 1) == ["0"])
            #expect(try Self.hits(d, port: other, count: 1) == ["0"], "the other service's listener stayed up")
            #expect(try d.instances("api").first?.pid == apiPid)
            // An address something else holds: the reload is refused and nothing changes.
            let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(blocker) }
            let taken = Self.freePort()
            _ = Self.onLoopback(blocker, taken, bind)
            listen(blocker, 1)
            try d.write(service: "web", Self.service(instances: 2, port: taken))
            let refused = d.ctl("reload")
            #expect(refused.code != 0)
            #expect(refused.stderr.contains("127.0.0.1:\(taken)"), "\(refused.stderr)")
            #expect(try Self.hits(d, port: second, count: 1) == ["0"], "the old listener still serves")
            let web = try d.status().services.first { $0.name == "web" }
            #expect(web?.desired == 1)
        }
    }

    @Test(.enabled(if: isRoot)) func prometheusEndpointCountsRequestsPerInstance() async throws {
        let (port, metricsPort) = (Self.freePort(), Self.freePort())
        try await DaemonHarness.with(services: ["web": Self.service(instances: 2, port: port)]) { d in
            let config = try String(contentsOfFile: d.configPath, encoding: .utf8)
            try (config + "\nmetrics_listen = \"127.0.0.1:\(metricsPort)\"\n").write(toFile: d.configPath, atomically: true, encoding: .utf8)
            try await d.start()
            let bothReady = await eventually(15) { Self.readyCount(d, "web") == 2 }
            #expect(bothReady)
            #expect(try Self.hits(d, port: port, count: 10).count == 10)
            let metrics = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
            let lines = metrics.split(separator: "\n").map(String.init)
            func value(_ prefix: String) -> Double? {
                lines.first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last!) }
            }
            #expect(value(#"muster_proxy_requests_total{service="web",instance="0",code="2xx"}"#) == 5, "\(metrics)")
            #expect(value(#"muster_proxy_requests_total{service="web",instance="1",code="2xx"}"#) == 5)
            #expect(value(#"muster_instance_ready{service="web",instance="0"}"#) == 1)
            #expect(value(#"muster_service_desired_instances{service="web"}"#) == 2)
            #expect(value(#"muster_proxy_response_latency_seconds_count{service="web",instance="0"}"#) == 5)
            #expect(metrics.contains("# TYPE muster_proxy_requests_total counter"))
            // Totals survive an instance's restart.
            #expect(d.ctl("restart", "web:0").code == 0)
            let bothReadyAgain = await eventually(15) { Self.readyCount(d, "web") == 2 }
            #expect(bothReadyAgain)
            let again = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
            #expect(again.contains(#"muster_proxy_requests_total{service="web",instance="0",code="2xx"} 5"#), "\(again)")
        }
    }

    /// `GET /v1/history` over the control socket: the seconds with traffic have a rate and a p99,
    /// every sample has the instance counts and the cgroups' memory.
    @Test(.enabled(if: isRoot)) func historyChartsTheProxysTraffic() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 2, port: port)]) { d in
            try await d.start()
            let bothReady = await eventually(15) { Self.readyCount(d, "web") == 2 }
            #expect(bothReady)
            var web: ServiceMetricsHistory?
            let charted = await eventually(15) {
                _ = try Self.hits(d, port: port, count: 20)
                let body = d.run("/usr/bin/curl", ["-s", "--unix-socket", d.socket, "http://musterd/v1/history?service=web"]).stdout
                web = try JSONDecoder().decode(MetricsHistoryResponse.self, from: Data(body.utf8)).services.first
                return web?.samples.contains { $0.rps > 0 && $0.p99Seconds != nil && $0.ready == 2 } ?? false
            }
            #expect(charted, "a sample with traffic: \(String(describing: web?.samples.suffix(3)))")
            let last = try #require(web?.samples.last)
            #expect(last.desired == 2)
            if (try d.instances("web")).allSatisfy({ ($0.memoryBytes ?? 0) > 0 }) {
                #expect(last.memoryBytes > 0, "status reports memory, so the history should: \(last)")
            }
        }
    }

    @Test(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")))
    func socketActivatedListenerIsAdopted() async throws {
        let port = Self.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(instances: 1, port: port)]) { d in
            // systemd-socket-activate binds the port and passes it as LISTEN_FDS with the name
            // "web", as a .socket unit with FileDescriptorName=web would. Like systemd, it starts
            // musterd at the first connection: that one waits in the socket's queue meanwhile.
            let early = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(early) }
            // Through a shell that waits for it: Foundation's Process, watching
            // systemd-socket-activate as its direct child across the exec, stopped reaping the
            // other children of the test process (a blocking wait4 on that pid).
            let launched = Task.detached {
                try await d.start(launcher: ["/bin/sh", "-c", "/usr/bin/systemd-socket-activate -l 127.0.0.1:\(port) --fdname=web \"$@\" & wait", "sh"])
            }
            // Connect (retrying until systemd-socket-activate listens); that starts musterd.
            var connected = false
            for _ in 0..<200 where !connected {
                connected = Self.onLoopback(early, port, connect) == 0
                if !connected { try await Task.sleep(for: .milliseconds(50)) }
            }
            try #require(connected)
            try await launched.value
            // The connection made before musterd ran is served now.
            let request = Array("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(early, $0.baseAddress, $0.count, 0) }
            var reply: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(early, &buffer, buffer.count, 0)
                if count <= 0 { break }
                reply += buffer[0..<count]
            }
            #expect(String(decoding: reply, as: UTF8.self).hasPrefix("HTTP/1.1 200"), "the connection made before musterd ran was answered once it did")
            let ready = await eventually(15) { Self.readyCount(d, "web") == 1 }
            #expect(ready)
            #expect(try Self.hits(d, port: port, count: 2) == ["0", "0"])
            let events = d.ctl("events").stdout
            #expect(events.contains("socket-adopted: listening on 127.0.0.1:\(port) through the socket systemd holds"), "\(events)")
            // The instance inherited neither the listening socket nor LISTEN_FDS.
            func fdTargets(_ pid: Int32) -> [String] {
                let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
                return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
            }
            let shellPid = try #require(d.daemon?.processIdentifier)
            let children = (try? String(contentsOfFile: "/proc/\(shellPid)/task/\(shellPid)/children", encoding: .utf8)) ?? ""
            let firstChild = children.split(separator: " ").first.flatMap { Int32($0) }
            let daemonPid = try #require(firstChild, "the launcher shell has no child: \(children)")
            let passed = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(daemonPid)/fd/3")
            #expect(passed.hasPrefix("socket:"))
            let pid = try #require(try d.instances("web").first?.pid)
            #expect(!fdTargets(pid).contains(passed), "the instance holds the proxy's listening socket")
            let environ = (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)) ?? ""
            #expect(!environ.contains("LISTEN_FDS"))
            // musterd is the shell's child, which the harness's cleanup does not reach: stop it here.
            #expect(d.ctl("shutdown").code == 0)
            let daemonExited = await eventually(30) { !alive(daemonPid) }
            #expect(daemonExited)
        }
    }

    @Test(.enabled(if: isRoot && !FileManager.default.fileExists(atPath: "/run/systemd/journal/stdout")))
    func journalTargetWithoutJournaldSaysWhy() async throws {
        let text = "command = [\"/bin/sleep\", \"1000\"]\n[restart]\nmax_failed_starts = 1\n[logs]\ntarget = \"journal\"\n"
        try await DaemonHarness.with(services: ["worker": text]) { d in
            try await d.start()
            let gaveUp = await eventually(10) { (try? d.instances("worker").first?.state) == "fatal" }
            #expect(gaveUp)
            let reason = try d.instances("worker").first?.reason ?? ""
            #expect(reason.contains("[logs] target = \"journal\": journald"), "\(reason)")
            let logs = d.ctl("logs", "worker")
            #expect(logs.code == 1)
            #expect(logs.stderr.contains("journalctl -t muster/worker/0"), "\(logs.stderr)")
        }
    }
}
