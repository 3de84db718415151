import Foundation
import MusterAPI
import Testing

/// `[proxy] balance` and passive outlier ejection through the real daemon, over three real
/// instances of Fixtures/backend.py: web:0 answers every request with a 500, web:1 answers after
/// 300 ms, web:2 at once. Distributions of requests are asserted, never latencies.
@Suite(.serialized) struct BalancingTests {
    static let failing = "0", slow = "1", fast = "2"

    static func manifest(port: Int, balance: String, instances: Int = 3, behaviors: String = "fail,slow,ok", ejectFor: String = "60s") -> String {
        ProxyTests.service(instances: instances, port: port, arguments: ["--behaviors", behaviors, "--slow-ms", "300"],
                           proxyExtra: "balance = \"\(balance)\"\neject_after = 5\neject_for = \"\(ejectFor)\"")
    }

    /// What one policy did: the sequential requests' answers, the load's counts, the metrics.
    struct Run {
        var sequential: [String]
        var load: ProxyTests.Load.Counts
        var clientErrors: Int
        var metrics: [String]

        func metric(_ series: String) -> Double? {
            metrics.first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
    }

    /// Starts the service under `balance`, sends 15 requests one after the other (round robin's
    /// order for both policies: nothing is in flight when each is picked), checks that the
    /// 500-instance was taken out after its fifth and that status, events and the table say so,
    /// then puts 6 clients of steady load on the other two for about 3 s.
    static func run(balance: String) async throws -> Run {
        let (port, metricsPort) = (ProxyTests.freePort(), ProxyTests.freePort())
        var result: Run?
        try await DaemonHarness.with(services: ["web": manifest(port: port, balance: balance)],
                                     daemonConfig: "metrics_listen = \"127.0.0.1:\(metricsPort)\"") { d in
            try await d.start()
            let allReady = await eventually(15) { ProxyTests.readyCount(d, "web") == 3 }
            #expect(allReady)

            let sequential = try ProxyTests.hits(d, port: port, count: 15)
            let clientErrors = sequential.filter { $0.hasPrefix("HTTP 500") }.count
            // Round robin over all three until the fifth 500 (each had its 5 turns), then out.
            #expect(clientErrors == 5, "\(sequential)")
            let toSlow = sequential.filter { $0 == slow }.count, toFast = sequential.filter { $0 == fast }.count
            #expect(toSlow == 5 && toFast == 5, "\(sequential)")

            let web = try #require(try d.status().services.first)
            #expect(web.proxy?.balance == balance)
            #expect(web.proxy?.ejected == 1)
            let ejectedUntil = web.instances.first { $0.index == 0 }?.ejectedUntil
            let comesBackInAMinute = ejectedUntil.map { $0 > Date().timeIntervalSince1970 + 30 } ?? false
            #expect(comesBackInAMinute, "\(String(describing: ejectedUntil))")
            let othersIn = web.instances.filter { $0.index != 0 }.allSatisfy { $0.ejectedUntil == nil }
            #expect(othersIn)
            let table = d.ctl("status").stdout
            let row = table.split(separator: "\n").first { $0.hasPrefix("web:0 ") }.map(String.init) ?? ""
            #expect(row.contains("ejected") && row.contains("back in"), "\(table)")
            #expect(table.contains("1 ejected for failing"), "\(table)")
            let eventSeen = await eventually(5) { d.ctl("events").stdout.contains("web:0  ejected: out of the proxy's rotation for 1m after 5 failures in a row (the last: HTTP 500)") }
            #expect(eventSeen, "\(d.ctl("events").stdout)")

            let load = try ProxyTests.Load(port: port, clients: 6, directory: d.directory)
            try await Task.sleep(for: .seconds(3))
            let counts = try load.finish()

            let metrics = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
            result = Run(sequential: sequential, load: counts, clientErrors: clientErrors,
                         metrics: metrics.split(separator: "\n").map(String.init))
        }
        let run = try #require(result)
        // No request reached the 500-instance while it was out: no client error under load.
        #expect(run.load.failed == 0, "\(run.load.errors)")
        #expect(run.load.by_instance[failing] == nil, "\(run.load.by_instance)")
        // The 5xx clients saw are the ones the proxy counted on the instance, and one ejection.
        #expect(run.metric(#"muster_proxy_requests_total{service="web",instance="0",code="5xx"}"#) == Double(run.clientErrors))
        #expect(run.metric(#"muster_proxy_ejections_total{service="web",instance="0"}"#) == 1)
        #expect(run.metric(#"muster_proxy_ejections_total{service="web",instance="1"}"#) == 0)
        #expect(run.metric(#"muster_proxy_ejected_instances{service="web"}"#) == 1)
        print("balance = \(balance): 15 requests one at a time answered \(run.sequential); client errors (HTTP 500) seen: \(run.clientErrors), "
              + "counted by the proxy: \(run.metric(#"muster_proxy_requests_total{service="web",instance="0",code="5xx"}"#).map { String(Int($0)) } ?? "none"); "
              + "then 3 s of 6 clients: \(run.load.ok) answered (slow web:1 \(run.load.by_instance[slow] ?? 0), fast web:2 \(run.load.by_instance[fast] ?? 0), "
              + "web:0 \(run.load.by_instance[failing] ?? 0)), \(run.load.failed) client errors")
        return run
    }

    @Test(.enabled(if: isRoot)) func roundRobinSpreadsEvenlyAndEjectsTheFailingInstance() async throws {
        let run = try await Self.run(balance: "round-robin")
        let slow = run.load.by_instance[Self.slow] ?? 0, fast = run.load.by_instance[Self.fast] ?? 0
        // Each in turn, the slow one too: an equal share each (up to the requests in flight).
        #expect(slow > 0 && abs(slow - fast) <= 6, "slow \(slow), fast \(fast)")
    }

    @Test(.enabled(if: isRoot)) func leastRequestFavoursTheFastInstanceAndEjectsTheFailingOne() async throws {
        let run = try await Self.run(balance: "least-request")
        let slow = run.load.by_instance[Self.slow] ?? 0, fast = run.load.by_instance[Self.fast] ?? 0
        // The slow instance's requests pile up, so it is passed over: far below an equal share.
        #expect(fast > 0 && slow * 3 < fast, "slow \(slow), fast \(fast)")
    }

    @Test(.enabled(if: isRoot)) func anEjectedInstanceComesBackAndFailingAgainIsOutTwiceAsLong() async throws {
        let port = ProxyTests.freePort()
        let manifest = Self.manifest(port: port, balance: "round-robin", instances: 2, behaviors: "fail,ok", ejectFor: "1s")
        try await DaemonHarness.with(services: ["web": manifest]) { d in
            try await d.start()
            let bothReady = await eventually(15) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(bothReady)
            let first = try ProxyTests.hits(d, port: port, count: 12)
            let firstErrors = first.filter { $0.hasPrefix("HTTP 500") }.count
            #expect(firstErrors == 5, "\(first)")
            let back = await eventually(10) { d.ctl("events").stdout.contains("web:0  unejected: back in the proxy's rotation") }
            #expect(back, "\(d.ctl("events").stdout)")
            let ejectedNow = try d.status().services.first?.proxy?.ejected
            #expect(ejectedNow == 0)
            // Five more 500s in a row, no success between: out for 2 s this time.
            let second = try ProxyTests.hits(d, port: port, count: 12)
            let secondErrors = second.filter { $0.hasPrefix("HTTP 500") }.count
            #expect(secondErrors == 5, "\(second)")
            let doubled = await eventually(5) { d.ctl("events").stdout.contains("for 2s after 5 failures in a row (the last: HTTP 500, ejection 2 in a row)") }
            #expect(doubled, "\(d.ctl("events").stdout)")
            print("eject_for = 1s: client errors (HTTP 500) seen \(firstErrors) before the first ejection and \(secondErrors) after its return, before the second (2 s)")
        }
    }
}
