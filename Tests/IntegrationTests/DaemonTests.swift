import Foundation
import MusterAPI
import Testing

/// The built musterd and musterctl, run for real: processes, cgroups, sockets.
@Suite("musterd and musterctl end to end", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct DaemonTests {
    @Test func statusShowsEveryInstanceAndTheSocketSpeaksHTTP() async throws {
        let web = """
            command = ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
            directory = "/tmp"
            instances = 2
            [restart]
            start_seconds = 0.5
            [stop]
            signal = "INT"
            """
        try await DaemonHarness.with(services: ["web": web]) { d in
            try await d.start()
            let up = await eventually { try d.running("web", count: 2) }
            #expect(up)
            let rows = try d.instances("web")
            #expect(rows.map(\.id) == ["web:0", "web:1"])
            #expect(Set(rows.compactMap(\.port)).count == 2)
            let allInOwnCgroups = rows.allSatisfy { $0.cgroup?.contains("/\(d.rootName)/services/web/") == true }
            #expect(allInOwnCgroups)
            let port = try #require(rows.first?.port)
            let served = await eventually { d.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/"]).stdout == "200" }
            #expect(served)
            let api = d.run("/usr/bin/curl", ["-s", "--unix-socket", d.socket, "http://muster/v1/status"])
            let decoded = try JSONDecoder().decode(StatusResponse.self, from: Data(api.stdout.utf8))
            #expect(decoded.services.first?.desired == 2)
            let table = d.ctl("status").stdout
            #expect(table.hasPrefix("NAME   STATE    READY  PID"))
            #expect(table.contains("web:1  RUNNING  yes"))
            let missing = d.run("/usr/bin/curl", ["-s", "-w", " %{http_code}", "--unix-socket", d.socket, "http://muster/v1/nothing"])
            #expect(missing.stdout.hasSuffix(" 404"))
            #expect(missing.stdout.contains(#""error":"not_found""#))
        }
    }

    @Test func scaleUpAndDown() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            try await d.start()
            let twoRunning = await eventually { try d.running("sleeper", count: 2) }
            #expect(twoRunning)
            #expect(d.ctl("scale", "sleeper", "4").stdout == "sleeper: 2 → 4 instances\n")
            let fourRunning = await eventually { try d.running("sleeper", count: 4) }
            #expect(fourRunning)
            let before = try d.instances("sleeper")
            #expect(d.ctl("scale", "sleeper", "1").code == 0)
            let onlyFirstLeft = await eventually { try d.instances("sleeper").map(\.id) == ["sleeper:0"] }
            #expect(onlyFirstLeft)
            // The highest indexes went; their processes with them.
            for row in before where row.index > 0 {
                let gone = await eventually(5) { !alive(row.pid!) }
                #expect(gone, "\(row.id) pid \(row.pid!) survived the scale-down")
            }
            #expect(try d.instances("sleeper").first?.pid == before.first?.pid)
            #expect(d.ctl("events").stdout.contains("scaled: sleeper: 4 → 1 instances"))
        }
    }

    @Test func aKilledDaemonLeavesNoOrphansAndComesBackAtItsSavedCounts() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper, "other": sleeper]) { d in
            try await d.start()
            let bothRunning = await eventually { try d.running("sleeper", count: 2) && d.running("other", count: 2) }
            #expect(bothRunning)
            #expect(d.ctl("scale", "sleeper", "3").code == 0)
            #expect(d.ctl("stop", "other").code == 0)
            let threeRunning = await eventually { try d.running("sleeper", count: 3) }
            #expect(threeRunning)
            let old = try d.instances("sleeper")
            d.killDaemon()
            // The instances outlive a SIGKILLed daemon...
            let oldAllAlive = old.allSatisfy { alive($0.pid!) }
            #expect(oldAllAlive)
            try await d.start()
            // ...and the next daemon stops them before starting fresh ones on the same ports.
            let threeRunningAgain = await eventually { try d.running("sleeper", count: 3) }
            #expect(threeRunningAgain)
            for row in old {
                let orphanGone = await eventually(5) { !alive(row.pid!) }
                #expect(orphanGone, "orphan \(row.pid!) survived")
            }
            let fresh = try d.instances("sleeper")
            #expect(Set(fresh.compactMap(\.pid)).isDisjoint(with: old.compactMap(\.pid)))
            #expect(Set(fresh.compactMap(\.port)).count == 3)
            let otherRows = try d.instances("other")
            let otherAllStopped = otherRows.allSatisfy { $0.state == "stopped" }
            #expect(otherRows.isEmpty || otherAllStopped)
            let otherService = try d.status().services.first { $0.name == "other" }
            #expect(otherService?.started == false)
            #expect(d.ctl("events").stdout.contains("orphan-stopped"))
        }
    }

    @Test func nothingStartsWhileAnEarlierDaemonsInstancesAreStillStopping() async throws {
        // Takes a second to stop: the next daemon must wait for it before starting anything.
        let slow = #"command = ["/usr/bin/python3", "-c", "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))\nwhile True: time.sleep(1)"]"# + "\n[restart]\nstart_seconds = 0\n[stop]\ntimeout = \"5s\"\n"
        try await DaemonHarness.with(services: ["slow": slow]) { d in
            try await d.start()
            let slowRunning = await eventually { try d.running("slow", count: 1) }
            #expect(slowRunning)
            let old = try #require(try d.instances("slow").first?.pid)
            d.killDaemon()
            try await d.start()
            // Asked to scale while the orphan is still stopping: intent changes, nothing starts yet.
            #expect(d.ctl("scale", "slow", "2").code == 0)
            let twoSlowRunning = await eventually { try d.running("slow", count: 2) }
            #expect(twoSlowRunning)
            #expect(!alive(old))
            let events = d.ctl("events", "--json").stdout.split(separator: "\n")
                .compactMap { try? JSONDecoder().decode(EventRecord.self, from: Data($0.utf8)) }
            let lastDaemonStart = events.lastIndex { $0.kind == "daemon-started" }
            let lastOrphanStop = events.lastIndex { $0.kind == "orphan-stopped" }
            let secondStart = try #require(lastDaemonStart)
            let orphan = try #require(lastOrphanStop)
            #expect(orphan < secondStart)
            // The ring is the second daemon's own: nothing started before it was done with the orphan.
            let nothingStartedBefore = events[..<secondStart].allSatisfy { $0.kind != "started" }
            #expect(nothingStartedBefore)
            let startedAfter = events[secondStart...].filter { $0.kind == "started" }.count
            #expect(startedAfter == 2)
        }
    }

    @Test func aReloadWithABadFileChangesNothingAndSaysWhy() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            try await d.start()
            let up = await eventually { try d.running("sleeper", count: 2) }
            #expect(up)
            let pids = try d.instances("sleeper").map(\.pid)
            try d.write(service: "broken", "command = [\"/bin/sleep\", \"1\"]\n[resources]\nmemory_max = \"12Q\"\n")
            try d.write(service: "sleeper", sleeper.replacingOccurrences(of: "100000", with: "99999"))
            let refused = d.ctl("reload")
            #expect(refused.code == 1)
            #expect(refused.stderr.contains(#"broken.toml: [resources] memory_max = "12Q": not a size (try 256M or 1G)"#))
            #expect(try d.instances("sleeper").map(\.pid) == pids)
            #expect(try d.status().services.map(\.name) == ["sleeper"])
            try d.remove(service: "broken")
            try d.write(service: "extra", "command = [\"/bin/sleep\", \"100000\"]\n")
            let plan = d.ctl("reload", "--dry-run")
            #expect(plan.stdout.contains("+ start new service extra"))
            #expect(plan.stdout.contains("~ restart sleeper (manifest changed)"))
            #expect(try d.instances("sleeper").map(\.pid) == pids)
            #expect(d.ctl("reload").code == 0)
            let reloadedRunning = await eventually { try d.running("extra", count: 1) && d.running("sleeper", count: 2) }
            #expect(reloadedRunning)
            #expect(Set(try d.instances("sleeper").map(\.pid)).isDisjoint(with: pids))
        }
    }

    @Test func onlyRootAndTheControlGroupMayUseTheSocket() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            try await d.start()
            // Loosen the file mode on purpose: the peer-credential check must still refuse.
            chmod(d.directory.path, 0o755)
            chmod(d.directory.appendingPathComponent("run").path, 0o755)
            chmod(d.socket, 0o666)
            let asNobody = d.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/curl", "-s", "-w", " %{http_code}",
                                                      "--unix-socket", d.socket, "http://muster/v1/status"])
            #expect(asNobody.stdout.hasSuffix(" 403"), "\(asNobody)")
            #expect(asNobody.stdout.contains(#""error":"forbidden""#))
            #expect(d.ctl("status").code == 0)
        }
    }

    @Test func exitCodesSayWhatHappened() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            let unreachable = d.ctl("status")
            #expect(unreachable.code == 3)
            #expect(unreachable.stderr.contains("cannot reach musterd at \(d.socket)"))
            #expect(unreachable.stderr.contains("(is musterd running?)"))
            try await d.start()
            #expect(d.ctl("stop", "nosuch").code == 1)
            #expect(d.ctl("frobnicate").code == 2)
            #expect(d.ctl("scale", "sleeper").code == 2)
            #expect(d.ctl("signal", "NOPE", "sleeper").code == 2)
            #expect(d.ctl("stop", "sleeper:1").stdout == "sleeper:1: stopped\n")
            #expect(d.ctl("start", "sleeper:1").code == 0)
        }
    }

    @Test func shutdownStopsEverythingAndRemovesTheCgroups() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            try await d.start()
            let up = await eventually { try d.running("sleeper", count: 2) }
            #expect(up)
            let pids = try d.instances("sleeper").compactMap(\.pid)
            #expect(d.ctl("shutdown").code == 0)
            #expect(await d.waitForExit(15) == 0)
            for pid in pids { #expect(!alive(pid)) }
            #expect(d.cgroupDirectories.isEmpty, "left behind: \(d.cgroupDirectories)")
        }
    }

    @Test func anAutoRootAdoptsTheDaemonsOwnCgroup() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper], autoRoot: true) { d in
            try await d.start()
            let up = await eventually { try d.running("sleeper", count: 2) }
            #expect(up)
            let delegated = "/sys/fs/cgroup/unified/\(d.rootName)"
            // The daemon moved itself into a leaf; instances live in siblings under services/.
            let daemonPid = try #require(d.daemon?.processIdentifier)
            let membership = try String(contentsOfFile: "/proc/\(daemonPid)/cgroup", encoding: .utf8)
            #expect(membership.contains("0::/\(d.rootName)/daemon\n"), "\(membership)")
            let allUnderDelegated = try d.instances("sleeper").allSatisfy { $0.cgroup?.hasPrefix(delegated + "/services/sleeper/") == true }
            #expect(allUnderDelegated)
            #expect(try String(contentsOfFile: delegated + "/cgroup.procs", encoding: .utf8).isEmpty)
            #expect(d.ctl("shutdown").code == 0)
            #expect(await d.waitForExit(15) == 0)
            // Its own cgroup stays (it is not musterd's to remove); what musterd made is gone.
            #expect(!FileManager.default.fileExists(atPath: delegated + "/services"))
        }
    }

    @Test func checkValidatesWithoutADaemon() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            let good = d.run(DaemonHarness.binDir + "/musterd", ["--config", d.configPath, "--check"])
            #expect(good.code == 0, "\(good)")
            try d.write(service: "bad", "command = [\"/bin/true\"]\nuser = \"no-such-user-here\"\n[restart]\npolcy = \"always\"\n")
            let bad = d.run(DaemonHarness.binDir + "/musterd", ["--config", d.configPath, "--check"])
            #expect(bad.code == 1)
            #expect(bad.stderr.contains(#"bad.toml: [restart] unknown key "polcy" (did you mean "policy"?)"#))
            let ctlCheck = d.run(DaemonHarness.binDir + "/musterctl", ["check", d.servicesDir.appendingPathComponent("bad.toml").path])
            #expect(ctlCheck.code == 1)
            #expect(ctlCheck.stderr.contains("polcy"))
        }
    }
}

@Suite("musterctl logs, events, prompt and SIGHUP", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct OperatorTests {
    static let ticker = "command = [\"/bin/sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick $i; echo oops $i >&2; sleep 0.05; done\"]\n[restart]\nstart_seconds = 0.2\n"

    @Test func logsShowStampedLinesFromBothStreams() async throws {
        try await DaemonHarness.with(services: ["ticker": Self.ticker]) { d in
            try await d.start()
            let sixLogged = await eventually { d.ctl("logs", "-n", "6", "ticker:0").stdout.split(separator: "\n").count == 6 }
            #expect(sixLogged)
            let lines = d.ctl("logs", "-n", "6", "ticker").stdout.split(separator: "\n")
            let hasStdout = lines.contains { $0.contains(" stdout tick ") }
            let hasStderr = lines.contains { $0.contains(" stderr oops ") }
            let allStamped = lines.allSatisfy { $0.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (stdout|stderr) "#, options: .regularExpression) != nil }
            #expect(hasStdout, "\(lines)")
            #expect(hasStderr, "\(lines)")
            #expect(allStamped, "\(lines)")
            let file = d.directory.appendingPathComponent("log/ticker/0.log").path
            #expect(FileManager.default.fileExists(atPath: file))
            #expect(d.ctl("logs", "nosuch").code == 1)
        }
    }

    @Test func eventsAreListedAsTextAndJSONAndKeptInTheStateDir() async throws {
        try await DaemonHarness.with(services: ["ticker": Self.ticker]) { d in
            try await d.start()
            let up = await eventually { try d.running("ticker", count: 1) }
            #expect(up)
            #expect(d.ctl("restart", "ticker").code == 0)
            let json = d.ctl("events", "--json").stdout.split(separator: "\n")
            let events = try json.map { try JSONDecoder().decode(EventRecord.self, from: Data($0.utf8)) }
            let sawStopping = events.contains { $0.kind == "stopping" && $0.instance == "ticker:0" }
            #expect(sawStopping)
            let startedCount = events.filter { $0.kind == "started" }.count
            #expect(startedCount == 2)
            #expect(d.ctl("events").stdout.contains("ticker:0  started: started pid"))
            let file = try String(contentsOf: d.directory.appendingPathComponent("state/events.log"), encoding: .utf8)
            #expect(file.split(separator: "\n").count >= events.count)
        }
    }

    @Test func thePromptTakesTheSameCommands() async throws {
        try await DaemonHarness.with(services: ["ticker": Self.ticker]) { d in
            try await d.start()
            let up = await eventually { try d.running("ticker", count: 1) }
            #expect(up)
            let session = d.run(DaemonHarness.binDir + "/musterctl", ["--socket", d.socket], input: "status\nstop ticker\nbogus\nstatus ticker\nquit\n")
            #expect(session.code == 0)
            #expect(session.stdout.contains("ticker:0  RUNNING"))
            #expect(session.stdout.contains("ticker:0: stopped"))
            #expect(session.stderr.contains("unknown command \"bogus\""))
        }
    }

    @Test func sighupReloadsTheManifests() async throws {
        try await DaemonHarness.with(services: ["ticker": Self.ticker]) { d in
            try await d.start()
            let up = await eventually { try d.running("ticker", count: 1) }
            #expect(up)
            try d.write(service: "second", sleeper)
            kill(try #require(d.daemon).processIdentifier, SIGHUP)
            let secondRunning = await eventually { try d.running("second", count: 2) }
            #expect(secondRunning)
            #expect(d.ctl("events").stdout.contains("reloaded: added second"))
        }
    }
}
