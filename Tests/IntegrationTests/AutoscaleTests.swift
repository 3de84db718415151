import Foundation
import MusterAPI
import Testing

/// The autoscaler through the real daemon: a slow backend (~100 ms a request) behind the proxy,
/// real clients, real decisions at musterd's own 1 s tick.
@Suite(.serialized) struct AutoscaleTests {
    /// backend.py behind a proxy on `port`, ready on READY=1, autoscaled by `autoscale`.
    static func service(port: Int, instances: Int, autoscale: String) -> String {
        """
        command = ["/usr/bin/python3", "\(ProxyTests.fixtures)/backend.py", "--notify"]
        instances = \(instances)
        [restart]
        start_seconds = 0.2
        [stop]
        timeout = "5s"
        [proxy]
        listen = ["127.0.0.1:\(port)"]
        drain_timeout = "5s"
        queue_timeout = "10s"
        [health]
        check = "notify"
        [autoscale]
        \(autoscale)
        """
    }

    static func report(_ d: DaemonHarness, _ service: String = "web") throws -> AutoscaleReport {
        let result = d.ctl("autoscale", service, "--json")
        return try JSONDecoder().decode(AutoscaleReport.self, from: Data(result.stdout.utf8))
    }

    /// The autoscaler's report as text, for failure messages.
    static func describe(_ d: DaemonHarness) -> Comment {
        Comment(rawValue: d.ctl("autoscale", "web").stdout)
    }

    @Test(.enabled(if: isRoot)) func scalesUpUnderConcurrencyAndBackToMinWithoutLosingARequest() async throws {
        let port = ProxyTests.freePort()
        let manifest = Self.service(port: port, instances: 1, autoscale: """
            min = 1
            max = 6
            metric = "concurrency"
            target = 5
            window = "2s"
            panic_window = "1s"
            scale_down_delay = "3s"
            max_scale_down = 1
            """)
        try await DaemonHarness.with(services: ["web": manifest]) { d in
            try await d.start()
            let firstReady = await eventually(15) { ProxyTests.readyCount(d, "web") == 1 }
            #expect(firstReady)

            // Concurrency 20 against a target of 5 in flight per instance: four instances.
            let heavy = try ProxyTests.Load(port: port, clients: 20, path: "/slow?ms=100", directory: d.directory)
            let scaledUp = await eventually(30) { ProxyTests.readyCount(d, "web") >= 4 }
            let atPeak = try Self.report(d)
            let counts = try heavy.finish()
            #expect(scaledUp, Self.describe(d))
            #expect(atPeak.desired == 4, "\(atPeak)")
            let upByConcurrency = atPeak.decisions.contains { $0.reason.contains("concurrency") && $0.to > $0.from }
            #expect(upByConcurrency, "\(atPeak.decisions)")
            #expect(counts.failed == 0, "\(counts.errors)")
            #expect(counts.ok > 20, "the load ran")

            // While the autoscaler owns the count, scale is refused; paused, it is the operator's.
            let refused = d.ctl("scale", "web", "2")
            #expect(refused.code == 1)
            #expect(refused.stderr.contains("autoscale pause web"), "\(refused.stderr)")

            // The load falls to a trickle: back to min after scale_down_delay, one instance a
            // tick, each drained before its stop; the trickle loses nothing meanwhile.
            let light = try ProxyTests.Load(port: port, clients: 1, path: "/slow?ms=20", directory: d.directory)
            let scaledDown = await eventually(40) { (try? Self.report(d).desired) == 1 && ProxyTests.readyCount(d, "web") == 1 }
            let trickle = try light.finish()
            #expect(scaledDown, Self.describe(d))
            #expect(trickle.failed == 0, "\(trickle.errors)")
            let decisions = try Self.report(d).decisions
            let downs = decisions.filter { $0.to < $0.from }
            let oneAtATime = downs.allSatisfy { $0.from - $0.to == 1 }
            #expect(oneAtATime, "max_scale_down = 1: \(decisions)")
            #expect(downs.last?.to == 1)

            let events = d.ctl("events").stdout
            #expect(events.contains("autoscaled: web: 1 → 4") || events.contains("autoscaled: web: 1 → "), "\(events)")

            #expect(d.ctl("autoscale", "pause", "web").code == 0)
            let scaled = d.ctl("scale", "web", "2")
            #expect(scaled.code == 0, "\(scaled.stderr)")
            let twoReady = await eventually(15) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(twoReady)
            // Paused: measured and explained, never changed, even with no load at all.
            try await Task.sleep(for: .seconds(5))
            #expect(try Self.report(d).desired == 2)
            #expect(try Self.report(d).paused)
            #expect(d.ctl("status").stdout.contains("web: autoscaled on concurrency"))
            #expect(d.ctl("autoscale", "resume", "web").code == 0)
        }
    }

    @Test(.enabled(if: isRoot)) func scalesToZeroKeepsZeroAcrossARestartAndServesTheFirstRequest() async throws {
        let port = ProxyTests.freePort()
        let manifest = Self.service(port: port, instances: 1, autoscale: """
            min = 0
            max = 3
            target = 5
            window = "2s"
            panic_window = "1s"
            scale_down_delay = "1s"
            scale_to_zero_after = "2s"
            """)
        try await DaemonHarness.with(services: ["web": manifest]) { d in
            try await d.start()
            // Ready, or already scaled away: under the full suite's load the backend can take
            // longer than scale_to_zero_after (2 s of no traffic) to become ready, and the
            // autoscaler is right to take it away first (seen once in a full run).
            let firstStart = await eventually(15) {
                let idle = try Self.report(d).decisions.last?.reason.contains("idle") ?? false
                return ProxyTests.readyCount(d, "web") == 1 || idle
            }
            #expect(firstStart, Self.describe(d))
            let zero = await eventually(20) { (try? d.instances("web"))?.isEmpty == true }
            #expect(zero, Self.describe(d))
            let lastReason = try Self.report(d).decisions.last?.reason ?? ""
            #expect(lastReason.contains("idle"), Self.describe(d))

            // The count survives a daemon restart: still zero, not the manifest's starting 1.
            #expect(d.ctl("shutdown").code == 0)
            _ = await d.waitForExit(15)
            try await d.start()
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try d.instances("web").isEmpty, "\((try? d.instances("web")) ?? [])")
            #expect(try d.status().services[0].desired == 0)

            // The listener stayed: the first request wakes an instance at once and is served.
            let started = Date()
            let seen = try ProxyTests.hits(d, port: port, count: 1)
            let elapsed = Date().timeIntervalSince(started)
            #expect(seen == ["0"], "\(seen)")
            #expect(try d.status().services[0].desired >= 1)
            let activation = try Self.report(d).decisions.last
            #expect(activation?.from == 0 && activation?.reason.contains("activator") == true, "\(String(describing: activation))")
            print("first request from zero served in \(Int(elapsed * 1000)) ms")

            // Back to zero; then a burst of 12 concurrent requests (target 5) starts ⌈12 ÷ 5⌉ = 3
            // at once, and none of them fails.
            let zeroAgain = await eventually(20) { (try? d.instances("web"))?.isEmpty == true }
            #expect(zeroAgain, Self.describe(d))
            let burst = try ProxyTests.Load(port: port, clients: 12, path: "/slow?ms=500", directory: d.directory)
            let three = await eventually(10) { (try? Self.report(d).desired) ?? 0 >= 3 }
            let counts = try burst.finish()
            #expect(three, Self.describe(d))
            #expect(counts.failed == 0, "\(counts.errors)")
            let activations = try Self.report(d).decisions.filter { $0.reason.contains("activator") }
            let largest = activations.map(\.to).max() ?? 0
            #expect(largest >= 3, "\(activations)")
        }
    }

    @Test(.enabled(if: isRoot)) func cpuFromTheCgroupScalesAndAReloadedBoundHoldsAtOnce() async throws {
        // Each instance spins one core; with a target of 0.4 cores per instance, one instance
        // asks for ⌈1.0 ÷ 0.4⌉ = 3, and three spinning instances ask for more than max.
        let manifest = """
            command = ["/usr/bin/python3", "-c", "while True: pass"]
            instances = 1
            [stop]
            timeout = "2s"
            [autoscale]
            min = 1
            max = 3
            metric = "cpu"
            target = 0.4
            window = "2s"
            panic_window = "1s"
            """
        try await DaemonHarness.with(services: ["spin": manifest]) { d in
            try await d.start()
            let atMax = await eventually(20) { (try? d.instances("spin").filter { $0.state == "running" }.count) == 3 }
            let report = try Self.report(d, "spin")
            #expect(atMax, Comment(rawValue: d.ctl("autoscale", "spin").stdout))
            #expect(report.desired == 3)
            let cpuDecision = report.decisions.first { $0.reason.hasPrefix("cpu ") }
            #expect(cpuDecision != nil, "\(report.decisions)")
            #expect(report.load.stable > 0.2, "cpu measured from the cgroups: \(report.load)")

            // A reload that lowers max brings the count within it at once, restarting nothing.
            let pids = Set(try d.instances("spin").prefix(2).compactMap(\.pid))
            try d.write(service: "spin", manifest.replacingOccurrences(of: "max = 3", with: "max = 2"))
            let reload = d.ctl("reload")
            #expect(reload.code == 0, "\(reload.stderr)")
            let atNewMax = await eventually(15) { (try? d.instances("spin").count) == 2 }
            #expect(atNewMax)
            let kept = Set(try d.instances("spin").compactMap(\.pid))
            #expect(kept == pids, "instances 0 and 1 kept running")
            #expect(try Self.report(d, "spin").max == 2)
        }
    }

    @Test(.enabled(if: isRoot)) func autoscaleTableAddedByReloadGetsTicks() async throws {
        // Without autoscaled services the scaler's loop sleeps; a reload that adds one must wake it.
        let plain = """
            command = ["/bin/sleep", "100000"]
            instances = 1
            [restart]
            start_seconds = 0
            """
        try await DaemonHarness.with(services: ["idle": plain]) { d in
            try await d.start()
            try d.write(service: "idle", plain + """

                [autoscale]
                min = 1
                max = 2
                metric = "memory"
                target = "1G"
                """)
            let reload = d.ctl("reload")
            #expect(reload.code == 0, "\(reload.stderr)")
            let ticked = await eventually(10) { (try? Self.report(d, "idle").lastReason) != nil }
            #expect(ticked, Comment(rawValue: d.ctl("autoscale", "idle").stdout))
        }
    }
}
