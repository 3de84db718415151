import Foundation
import Glibc
import Hummingbird
import MusterAPI
import MusterControl
import MusterCore
import MusterRuntime
import Testing

/// The control API driven in-process through its router, with a real Supervisor running real
/// processes; every response is checked against docs/api/openapi.json.
@Suite("Control API routes", .serialized)
struct ControlRouteTests {
    /// Prints one line with the clean environment it got, then becomes a long sleep.
    static let workerCommand = [
        "/bin/sh", "-c",
        "echo \"hello from {service}:{index} port=$PORT service=$MUSTER_SERVICE instance=$MUSTER_INSTANCE home=${HOME-unset} secret=${SECRET-unset}\"; exec /bin/sleep 1000",
    ]

    /// Exits with code 3 once and is not restarted: state exited.
    static let oneshot: ServiceSpec = {
        var spec = RouteHarness.spec("oneshot", command: ["/bin/sh", "-c", "exit 3"])
        spec.restart.policy = .never
        spec.restart.startSeconds = 0
        return spec
    }()

    /// Fails before start_seconds every time: backoff, then fatal after two failed starts.
    static let crashy: ServiceSpec = {
        var spec = RouteHarness.spec("crashy", command: ["/bin/false"])
        spec.restart.maxFailedStarts = 2
        // Long enough that /bin/false cannot count as started however late a loaded machine
        // delivers its exit (at 200 ms it once did, and the count of restarts was off by one).
        spec.restart.startSeconds = 2
        spec.restart.backoffMin = .milliseconds(10)
        spec.restart.backoffMax = .milliseconds(20)
        return spec
    }()

    static let services = [
        RouteHarness.spec("web", instances: 2),
        RouteHarness.spec("worker", command: workerCommand),
        RouteHarness.spec("idle", instances: 0),
        RouteHarness.spec("old", instances: 0),
        oneshot, crashy,
    ]

    static func pids(_ status: StatusResponse) -> [Int32] {
        status.services.flatMap { $0.instances.compactMap(\.pid) }
    }

    @Test("every route, good and bad requests, shutdown last")
    func everyRoute() async throws {
        try await RouteHarness.run(specs: Self.services, shutDownOnRequest: true) { harness, api in
            try await Self.versionAndStatus(harness, api)
            try await Self.startStopRestart(harness, api)
            try await Self.badBodies(api)
            try await Self.signals(harness, api)
            try await Self.scale(harness, api)
            try await Self.metricsHistory(api)
            try await Self.reload(harness, api)
            try await Self.logs(harness, api)
            try await Self.events(harness, api)
            try await Self.unknownEndpoints(api)
            try await Self.shutdown(harness, api)
        }
    }

    static func versionAndStatus(_ harness: RouteHarness, _ api: APIClient) async throws {
        let version = try await api.call(.get, "/v1/version", route: "/v1/version", expect: 200).decode(VersionResponse.self)
        #expect(version.version == MusterVersion.current)
        #expect(version.pid == getpid())
        #expect(version.cgroupMode == "unavailable")
        #expect(version.cgroupRoot == nil)

        let settled = await RouteHarness.eventually {
            let states = try await api.status().services.flatMap(\.instances).map { "\($0.id) \($0.state)" }
            return states == ["crashy:0 fatal", "oneshot:0 exited", "web:0 running", "web:1 running", "worker:0 running"]
        }
        #expect(settled, "every instance should settle within 10 s")
        let status = try await api.status()
        harness.saw(pids(status))
        #expect(status.services.map(\.name) == ["crashy", "idle", "old", "oneshot", "web", "worker"])
        let oneshotInstance = status.services.first { $0.name == "oneshot" }?.instances.first
        let exited = try #require(oneshotInstance)
        #expect(exited.state == "exited" && exited.pid == nil && exited.uptimeSeconds == nil)
        #expect(exited.reason == "exited with code 3")
        let crashyInstance = status.services.first { $0.name == "crashy" }?.instances.first
        let fatal = try #require(crashyInstance)
        #expect(fatal.state == "fatal" && fatal.pid == nil)
        #expect(fatal.restarts == 1)
        #expect(fatal.reason == "exited with code 1 before start_seconds (2s); gave up after 2 failed starts in a row")
        let webService = status.services.first { $0.name == "web" }
        let web = try #require(webService)
        #expect(web.desired == 2)
        #expect(web.started)
        #expect(web.source == "/etc/muster/services.d/web.toml")
        #expect(web.instances.map(\.id) == ["web:0", "web:1"])
        #expect(web.instances.map(\.index) == [0, 1])
        for instance in web.instances {
            #expect(instance.state == "running")
            #expect(instance.pid != nil)
            let portInRange = instance.port.map { (41000...41999).contains($0) }
            #expect(portInRange == true)
            #expect(instance.restarts == 0)
            #expect(instance.uptimeSeconds != nil)
            #expect(instance.cgroup == nil, "no cgroups in these tests")
            #expect(instance.user == Accounts.currentUserName)
        }
        #expect(Set(web.instances.compactMap(\.port)).count == 2, "each instance has its own port")
        let idle = status.services.first { $0.name == "idle" }
        #expect(idle?.instances == [])

        #expect(try await api.status("?service=web").services.map(\.name) == ["web"])
        #expect(try await api.status("?service=worker&service=web").services.map(\.name) == ["web", "worker"])
        let unknown = try await api.call(.get, "/v1/status?service=nope", route: "/v1/status", expect: 404)
        #expect(unknown.errorCode == "not_found")
        #expect(unknown.message.hasPrefix("no service named \"nope\""))
        let partly = try await api.call(.get, "/v1/status?service=web&service=nope", route: "/v1/status", expect: 404)
        #expect(partly.errorCode == "not_found")

        // `musterctl status` takes the table as musterd renders it; JSON stays the default.
        let table = try await api.call(.get, "/v1/status?service=web", route: "/v1/status", accept: "text/plain", expect: 200)
        #expect(table.contentType.hasPrefix("text/plain"))
        let rows = table.text.split(separator: "\n")
        #expect(rows.first?.hasPrefix("NAME   STATE    READY  PID") == true, "\(table.text)")
        let instanceRows = rows.dropFirst().map { String($0.prefix(14)) }
        #expect(instanceRows == ["web:0  RUNNING", "web:1  RUNNING"], "\(table.text)")
        for accept in ["application/json, text/plain", "*/*", "text/html"] {
            let document = try await api.call(.get, "/v1/status?service=web", route: "/v1/status", accept: accept, expect: 200)
            #expect(document.contentType == "application/json", "Accept: \(accept)")
        }
    }

    static func startStopRestart(_ harness: RouteHarness, _ api: APIClient) async throws {
        let before = try await api.status("?service=web").services[0].instances
        var result = try await api.call(.post, "/v1/stop", route: "/v1/stop", body: #"{"targets": ["web:1"]}"#, expect: 200).decode(ActionResponse.self)
        #expect(result.results == ["web:1: stopped"])
        var web = try await api.status("?service=web").services[0]
        #expect(web.instances.map(\.state) == ["running", "stopped"])
        #expect(web.instances[1].pid == nil)
        #expect(web.instances[0].pid == before[0].pid, "stopping web:1 leaves web:0 alone")
        if let old = before[1].pid {
            let gone = kill(old, 0) == -1
            #expect(gone, "the stopped process is gone")
        }

        result = try await api.call(.post, "/v1/start", route: "/v1/start", body: #"{"targets": ["web:1"]}"#, expect: 200).decode(ActionResponse.self)
        #expect(result.results.count == 1)
        #expect(result.results.first?.hasPrefix("web:1: running (pid ") == true, "\(result.results)")
        web = try await api.status("?service=web").services[0]
        harness.saw(pids(.init(services: [web])))
        #expect(web.instances.map(\.state) == ["running", "running"])
        #expect(web.instances[1].restarts == 1)

        let worker = try await api.status("?service=worker").services[0].instances[0]
        result = try await api.call(.post, "/v1/restart", route: "/v1/restart", body: #"{"targets": ["worker"]}"#, expect: 200).decode(ActionResponse.self)
        let restarted = try await api.status("?service=worker").services[0].instances[0]
        harness.saw([restarted.pid].compactMap { $0 })
        #expect(result.results == ["worker:0: running (pid \(restarted.pid ?? -1))"])
        #expect(restarted.pid != worker.pid)
        #expect(restarted.restarts == worker.restarts + 1)
        #expect(restarted.port == worker.port, "a slot keeps its port across restarts")

        // Everything or nothing: one unknown target refuses the whole request.
        let pidsBefore = pids(try await api.status())
        for (uri, body, status) in [
            ("/v1/start", #"{"targets": ["nope"]}"#, 404),
            ("/v1/stop", #"{"targets": ["web:7"]}"#, 404),
            ("/v1/restart", #"{"targets": ["web", "nope"]}"#, 404),
            ("/v1/restart", #"{"targets": ["Bad Name"]}"#, 400),
            ("/v1/stop", #"{"targets": ["web:-1"]}"#, 400),
            ("/v1/start", #"{"targets": []}"#, 400),
        ] {
            let refused = try await api.call(.post, uri, route: uri, body: body, expect: status)
            #expect(refused.errorCode == (status == 404 ? "not_found" : "bad_request"))
        }
        #expect(pids(try await api.status()) == pidsBefore, "refused requests change nothing")
        let outOfRange = try await api.call(.post, "/v1/stop", route: "/v1/stop", body: #"{"targets": ["web:7"]}"#, expect: 404)
        #expect(outOfRange.message == "web has 2 instance(s): web:0 to web:1")
    }

    static func badBodies(_ api: APIClient) async throws {
        for route in ["/v1/start", "/v1/stop", "/v1/restart", "/v1/signal", "/v1/services/{name}/scale"] {
            let uri = route.replacingOccurrences(of: "{name}", with: "web")
            let malformed = try await api.call(.post, uri, route: route, body: "{not json", expect: 400)
            #expect(malformed.errorCode == "bad_request")
            #expect(malformed.message.hasPrefix("the request body is not what this endpoint takes"))
            let missing = try await api.call(.post, uri, route: route, expect: 400)
            #expect(missing.message == "this endpoint takes a JSON body")
            let empty = try await api.call(.post, uri, route: route, body: "{}", expect: 400)
            #expect(empty.message.contains("missing field"), "\(empty.message)")
        }
        let wrongType = try await api.call(.post, "/v1/stop", route: "/v1/stop", body: #"{"targets": "web"}"#, expect: 400)
        #expect(wrongType.message == #"the request body is not what this endpoint takes: wrong type at "targets""#)
        let tooLarge = String(repeating: " ", count: (1 << 20) + 16) + #"{"targets": ["web"]}"#
        let large = try await api.call(.post, "/v1/stop", route: "/v1/stop", body: tooLarge, expect: 413)
        #expect(large.errorCode == "bad_request")
    }

    static func signals(_ harness: RouteHarness, _ api: APIClient) async throws {
        let bogus = try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "BOGUS", "targets": ["web"]}"#, expect: 400)
        #expect(bogus.errorCode == "bad_request")
        #expect(bogus.message == #""BOGUS" is not a signal (try TERM, HUP, USR1 or 15)"#)
        try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "99", "targets": ["web"]}"#, expect: 400)
        try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": 15, "targets": ["web"]}"#, expect: 400)
        try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "CONT", "targets": ["nope"]}"#, expect: 404)
        try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "CONT", "targets": []}"#, expect: 400)

        let web = try await api.status("?service=web").services[0].instances
        let one = try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "cont", "targets": ["web:0"]}"#, expect: 200)
            .decode(ActionResponse.self)
        #expect(one.results == ["web:0: sent SIGCONT to pid \(web[0].pid ?? -1)"])
        let all = try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "SIGCONT", "targets": ["web"]}"#, expect: 200)
            .decode(ActionResponse.self)
        let expectedResults = web.map { "\($0.id): sent SIGCONT to pid \($0.pid ?? -1)" }
        #expect(all.results == expectedResults)
        let numbered = try await api.call(.post, "/v1/signal", route: "/v1/signal", body: #"{"signal": "18", "targets": ["web:1"]}"#, expect: 200)
            .decode(ActionResponse.self)
        #expect(numbered.results.count == 1)
        #expect(try await api.status("?service=web").services[0].instances.map(\.pid) == web.map(\.pid), "SIGCONT leaves them running")
    }

    static func scale(_ harness: RouteHarness, _ api: APIClient) async throws {
        let up = try await api.call(.post, "/v1/services/web/scale", route: "/v1/services/{name}/scale", body: #"{"instances": 3}"#, expect: 200)
            .decode(ActionResponse.self)
        #expect(up.results == ["web: 2 → 3 instances"])
        let three = await RouteHarness.eventually {
            let web = try await api.status("?service=web").services[0]
            harness.saw(pids(.init(services: [web])))
            return web.desired == 3 && web.instances.map(\.state) == ["running", "running", "running"]
        }
        #expect(three, "web should run 3 instances")

        for (body, status) in [(#"{"instances": -1}"#, 400), (#"{"instances": 10001}"#, 400), (#"{"instances": "2"}"#, 400)] {
            let refused = try await api.call(.post, "/v1/services/web/scale", route: "/v1/services/{name}/scale", body: body, expect: status)
            #expect(refused.errorCode == "bad_request")
        }
        let unknown = try await api.call(.post, "/v1/services/nope/scale", route: "/v1/services/{name}/scale", body: #"{"instances": 1}"#, expect: 404)
        #expect(unknown.errorCode == "not_found")

        let down = try await api.call(.post, "/v1/services/web/scale", route: "/v1/services/{name}/scale", body: #"{"instances": 1}"#, expect: 200)
            .decode(ActionResponse.self)
        #expect(down.results == ["web: 3 → 1 instances"])
        let one = await RouteHarness.eventually {
            let web = try await api.status("?service=web").services[0]
            return web.desired == 1 && web.instances.map(\.id) == ["web:0"]
        }
        #expect(one, "surplus instances stop and are forgotten")
    }

    /// After `scale`: the sampler has recorded web's instances each second, and both scales are
    /// marked with their reason.
    static func metricsHistory(_ api: APIClient) async throws {
        var web: ServiceMetricsHistory?
        let sampled = await RouteHarness.eventually {
            let history = try await api.call(.get, "/v1/history?service=web", route: "/v1/history", expect: 200)
                .decode(MetricsHistoryResponse.self)
            web = history.services.first
            return history.services.count == 1 && web?.samples.last?.ready == 1 && web?.samples.last?.desired == 1
        }
        #expect(sampled, "the latest sample should show web's one ready instance: \(String(describing: web?.samples.last))")
        let decisions = web?.decisions.map { "\($0.from) → \($0.to) \($0.reason)" }
        #expect(decisions == ["2 → 3 musterctl scale", "3 → 1 musterctl scale"])
        let times = web?.samples.map(\.time) ?? []
        #expect(times == times.sorted(), "samples come oldest first")

        let all = try await api.call(.get, "/v1/history", route: "/v1/history", expect: 200).decode(MetricsHistoryResponse.self)
        #expect(all.capacity == 900)
        #expect(all.intervalSeconds == 1)
        #expect(all.services.map(\.name) == ["crashy", "idle", "old", "oneshot", "web", "worker"])
        let recent = try await api.call(.get, "/v1/history?service=web&since=3s", route: "/v1/history", expect: 200)
            .decode(MetricsHistoryResponse.self)
        let recentCount = recent.services.first?.samples.count ?? 0
        #expect(recentCount >= 1 && recentCount <= 4, "since=3s keeps about 3 samples: \(recentCount)")
        let badSince = try await api.call(.get, "/v1/history?since=yesterday", route: "/v1/history", expect: 400)
        #expect(badSince.errorCode == "bad_request")
        let unknown = try await api.call(.get, "/v1/history?service=nope", route: "/v1/history", expect: 404)
        #expect(unknown.errorCode == "not_found")
    }

    static func reload(_ harness: RouteHarness, _ api: APIClient) async throws {
        // web: only instances changed; worker: command changed; idle: same; old: gone; extra: new.
        var web = RouteHarness.spec("web", instances: 4)
        web.sourcePath = "/elsewhere/web.toml"
        let next = [web, RouteHarness.spec("worker", command: ["/bin/sleep", "999"]), RouteHarness.spec("idle", instances: 0),
                    RouteHarness.spec("extra", instances: 0), oneshot, crashy]
        harness.setManifests(.success(next))
        for flag in ["true", "1", "yes"] {
            let plan = try await api.call(.post, "/v1/reload?dry_run=\(flag)", route: "/v1/reload", expect: 200).decode(ReloadResponse.self)
            #expect(plan == ReloadResponse(applied: false, added: ["extra"], removed: ["old"], changed: ["worker"],
                                           rescaled: [.init(name: "web", from: 2, to: 4)], unchanged: ["crashy", "idle", "oneshot"],
                                           warnings: [RouteHarness.reloadWarning]))
        }
        let untouched = try await api.status()
        #expect(untouched.services.map(\.name) == ["crashy", "idle", "old", "oneshot", "web", "worker"], "a dry run applies nothing")
        let untouchedWeb = untouched.services.first { $0.name == "web" }
        #expect(untouchedWeb?.desired == 1)

        let issues = [ManifestIssue(file: "web.toml", table: "stop", key: "signal", value: "\"TREM\"", message: "not a signal (try \"TERM\")"),
                      ManifestIssue(file: "worker.toml", line: 3, column: 1, message: "TOML syntax: expected a value")]
        harness.setManifests(.failure(ManifestErrors(issues)))
        for uri in ["/v1/reload", "/v1/reload?dry_run=true"] {
            let refused = try await api.call(.post, uri, route: "/v1/reload", expect: 422).decode(ErrorResponse.self)
            #expect(refused.error == "invalid_manifest")
            #expect(refused.message == "reload refused: 2 problem(s) in the manifests; nothing was changed")
            #expect(refused.details == [#"web.toml: [stop] signal = "TREM": not a signal (try "TERM")"#, "worker.toml:3:1: TOML syntax: expected a value"])
        }

        harness.setManifests(.success([RouteHarness.spec("web", instances: 2), RouteHarness.spec("worker", command: workerCommand),
                                       RouteHarness.spec("idle", instances: 0), RouteHarness.spec("extra", instances: 0), oneshot, crashy]))
        let applied = try await api.call(.post, "/v1/reload", route: "/v1/reload", expect: 200).decode(ReloadResponse.self)
        #expect(applied == ReloadResponse(applied: true, added: ["extra"], removed: ["old"], changed: [], rescaled: [],
                                          unchanged: ["crashy", "idle", "oneshot", "web", "worker"], warnings: [RouteHarness.reloadWarning]))
        let names = await RouteHarness.eventually {
            try await api.status().services.map(\.name) == ["crashy", "extra", "idle", "oneshot", "web", "worker"]
        }
        #expect(names, "extra is added and old removed")
        #expect(try await api.status("?service=web").services[0].desired == 1, "an unchanged manifest keeps the scaled count")
    }

    static func logs(_ harness: RouteHarness, _ api: APIClient) async throws {
        let worker = try await api.status("?service=worker").services[0].instances[0]
        let port = try #require(worker.port)
        let expected = " stdout hello from worker:0 port=\(port) service=worker instance=0 home=unset secret=unset\n"
        // The restart above printed the line twice; the log pump writes asynchronously.
        let written = await RouteHarness.eventually {
            let text = try await api.call(.get, "/v1/logs/worker", route: "/v1/logs/{target}", expect: 200).text
            return text.components(separatedBy: expected).count - 1 == 2
        }
        #expect(written, "the worker's two greetings reach its log")
        let last = try await api.call(.get, "/v1/logs/worker:0?lines=1", route: "/v1/logs/{target}", expect: 200)
        #expect(last.contentType == "text/plain; charset=utf-8")
        #expect(last.text.hasSuffix(expected))
        let lineCount = last.text.filter { $0 == "\n" }.count
        #expect(lineCount == 1)
        #expect(last.text.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stdout "#, options: .regularExpression) != nil, "\(last.text)")
        let nothing = try await api.call(.get, "/v1/logs/worker?lines=0&follow=no", route: "/v1/logs/{target}", expect: 200)
        #expect(nothing.text == "")
        #expect(try await api.call(.get, "/v1/logs/web:0", route: "/v1/logs/{target}", expect: 200).text == "", "sleep prints nothing")

        for (uri, status) in [("/v1/logs/nope", 404), ("/v1/logs/nope:0", 404), ("/v1/logs/worker:99", 404), ("/v1/logs/all", 400), ("/v1/logs/Bad%21", 400),
                              ("/v1/logs/worker?lines=abc", 400), ("/v1/logs/worker?lines=-1", 400), ("/v1/logs/worker?lines=1000001", 400)] {
            let refused = try await api.call(.get, uri, route: "/v1/logs/{target}", expect: status)
            #expect(refused.errorCode == (status == 404 ? "not_found" : "bad_request"), "\(uri)")
        }
    }

    static func events(_ harness: RouteHarness, _ api: APIClient) async throws {
        let all = try await api.call(.get, "/v1/events", route: "/v1/events", expect: 200).decode(EventsResponse.self)
        let kinds = Set(all.events.map(\.kind))
        for kind in ["daemon-started", "started", "running", "stopping", "stopped", "exited", "not-restarted", "backoff", "fatal",
                     "scaled", "reload-failed", "reloaded", "removed"] {
            #expect(kinds.contains(kind), "no \(kind) event in \(kinds.sorted())")
        }
        let oneshotExit = all.events.first { $0.kind == "exited" && $0.service == "oneshot" }
        let exit = try #require(oneshotExit)
        #expect(exit.exitCode == 3 && exit.signal == nil && exit.instance == "oneshot:0")
        let webStop = all.events.first { $0.kind == "stopped" && $0.service == "web" }
        let stopped = try #require(webStop)
        #expect(stopped.signal == "SIGTERM" && stopped.exitCode == nil)
        #expect(all.events.map(\.time) == all.events.map(\.time).sorted(), "oldest first")
        let firstStart = all.events.first { $0.kind == "started" }
        let started = try #require(firstStart)
        #expect(started.service != nil && started.instance != nil && started.pid != nil)

        let three = try await api.call(.get, "/v1/events?limit=3", route: "/v1/events", expect: 200).decode(EventsResponse.self)
        #expect(three.events.count == 3)
        #expect(three.events == Array(all.events.suffix(3)), "the newest, oldest first")
        #expect(try await api.call(.get, "/v1/events?limit=0", route: "/v1/events", expect: 200).decode(EventsResponse.self).events == [])
        for uri in ["/v1/events?limit=x", "/v1/events?limit=-5", "/v1/events?limit=1000001"] {
            #expect(try await api.call(.get, uri, route: "/v1/events", expect: 400).errorCode == "bad_request")
        }

        // follow=true streams until musterd ends its followers; end them from the side.
        let closer = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                harness.journal.finishFollowers()
            }
        }
        defer { closer.cancel() }
        let streamed = try await api.call(.get, "/v1/events?follow=true&limit=4", route: "/v1/events", expect: 200)
        #expect(streamed.contentType == "application/x-ndjson")
        let lines = streamed.text.split(separator: "\n")
        #expect(lines.count >= 4)
        #expect(streamed.text.hasSuffix("\n"))
        let first = try JSONDecoder().decode(EventRecord.self, from: Data(lines[0].utf8))
        #expect(first == all.events.suffix(4).first, "the stream starts with the newest `limit` past events")
    }

    static func unknownEndpoints(_ api: APIClient) async throws {
        for (method, uri) in [(HTTPRequest.Method.get, "/v1/nope"), (.post, "/v2/status"), (.get, "/"), (.post, "/v1/services/web/scale/extra")] {
            let missing = try await api.call(method, uri, route: nil, expect: 404)
            #expect(missing.errorCode == "not_found")
            #expect(missing.message == "no such endpoint: \(method) \(uri)")
        }
        // A path that exists, with a method it does not take: 405 and the methods it does.
        for (method, uri, allowed) in [(HTTPRequest.Method.get, "/v1/start", "POST"), (.delete, "/v1/status", "GET"),
                                       (.put, "/v1/services/web/scale", "POST")] {
            let wrong = try await api.call(method, uri, route: nil, expect: 405)
            #expect(wrong.errorCode == "method_not_allowed")
            #expect(wrong.message == "\(uri) takes \(allowed), not \(method)")
        }
    }

    static func shutdown(_ harness: RouteHarness, _ api: APIClient) async throws {
        let accepted = try await api.call(.post, "/v1/shutdown", route: "/v1/shutdown", expect: 202).decode(ActionResponse.self)
        #expect(accepted.results == ["musterd is stopping every instance and will exit"])
        #expect(harness.shutdownRequests == 1)
        let stopping = await RouteHarness.eventually { await harness.supervisor.isShuttingDown }
        try #require(stopping)

        for (uri, route, body) in [("/v1/shutdown", "/v1/shutdown", nil), ("/v1/start", "/v1/start", #"{"targets": ["web"]}"#),
                                   ("/v1/restart", "/v1/restart", #"{"targets": ["web"]}"#),
                                   ("/v1/services/web/scale", "/v1/services/{name}/scale", #"{"instances": 2}"#),
                                   ("/v1/reload", "/v1/reload", nil), ("/v1/reload?dry_run=true", "/v1/reload", nil)] {
            let refused = try await api.call(.post, uri, route: route, body: body, expect: 503)
            #expect(refused.errorCode == "shutting_down")
            #expect(refused.message == "musterd is shutting down")
        }
        #expect(harness.shutdownRequests == 1, "a second shutdown request is refused before it is passed on")

        await harness.supervisor.shutdown()
        let status = try await api.status()
        let noInstancesLeft = status.services.allSatisfy { $0.instances.isEmpty }
        #expect(noInstancesLeft, "\(status)")
        // Reading stays possible while musterd winds down.
        try await api.call(.get, "/v1/version", route: "/v1/version", expect: 200)
        try await api.call(.get, "/v1/events?limit=1", route: "/v1/events", expect: 200)
        let events = try await api.call(.get, "/v1/events", route: "/v1/events", expect: 200).decode(EventsResponse.self)
        let sawShutdown = events.events.contains { $0.kind == "shutdown" }
        #expect(sawShutdown)
    }

    @Test("ControlAPI.routes are the routes the router serves")
    func routesAreServed() async throws {
        // What each route answers to a request without body or query.
        let expected: [String: Int] = [
            "GET /v1/version": 200, "GET /v1/status": 200, "POST /v1/start": 400, "POST /v1/stop": 400, "POST /v1/restart": 400,
            "POST /v1/signal": 400, "POST /v1/services/{name}/scale": 400, "POST /v1/reload": 200, "GET /v1/logs": 200, "GET /v1/logs/{target}": 200,
            "GET /v1/events": 200, "POST /v1/shutdown": 202,
            // web has no [autoscale]: each autoscale route answers that, and is served.
            "GET /v1/services/{name}/autoscale": 409, "POST /v1/services/{name}/autoscale/pause": 409,
            "POST /v1/services/{name}/autoscale/resume": 409,
            // web runs its manifest as it is on disk and has one revision: nothing to deploy; rollback wants a JSON body, as start does.
            "POST /v1/services/{name}/deploy": 200, "POST /v1/services/{name}/rollback": 400, "GET /v1/services/{name}/history": 200,
            "GET /v1/history": 200,
            // The harness has a dashboard; the route wants a JSON body ({} for the defaults).
            "POST /v1/dashboard/login": 400,
        ]
        try await RouteHarness.run(specs: [RouteHarness.spec("web")]) { harness, api in
            for route in ControlAPI.routes.map(canonicalRoute) {
                let parts = route.split(separator: " ").map(String.init)
                let status = try #require(expected[route], "no expectation for \(route)")
                let uri = parts[1].replacingOccurrences(of: "{name}", with: "web").replacingOccurrences(of: "{target}", with: "web")
                let response = try await api.call(HTTPRequest.Method(parts[0])!, uri, route: parts[1], expect: status)
                #expect(!response.message.hasPrefix("no such endpoint"), "\(route) is not served")
            }
            #expect(harness.shutdownRequests == 1)
        }
    }

    @Test("refuses every route to a caller whose credentials cannot be read")
    func forbidden() async throws {
        let strict = PeerAuthorizer(controlGroup: "muster", allowWithoutCredentials: false)
        try await RouteHarness.run(specs: [RouteHarness.spec("web")], authorizer: strict) { harness, api in
            let running = await RouteHarness.eventually {
                try await harness.supervisor.status().services[0].instances.first?.state == "running"
            }
            try #require(running)
            let before = try await harness.supervisor.status()
            harness.saw(Self.pids(before))
            for route in ControlAPI.routes.map(canonicalRoute) {
                let parts = route.split(separator: " ").map(String.init)
                let uri = parts[1].replacingOccurrences(of: "{name}", with: "web").replacingOccurrences(of: "{target}", with: "web")
                let body = parts[0] == "POST" ? #"{"targets": ["web"], "signal": "KILL", "instances": 0}"# : nil
                let refused = try await api.call(HTTPRequest.Method(parts[0])!, uri, route: parts[1], body: body, expect: 403)
                #expect(refused.errorCode == "forbidden")
                #expect(refused.message == "permission denied: peer credentials unavailable")
            }
            let missing = try await api.call(.get, "/v1/nope", route: nil, expect: 403)
            #expect(missing.errorCode == "forbidden", "credentials are checked before routing")
            #expect(harness.shutdownRequests == 0)
            let after = try await harness.supervisor.status()
            #expect(Self.pids(after) == Self.pids(before), "refused requests change nothing")
            #expect(after.services[0].desired == 1)
        }
    }
}
