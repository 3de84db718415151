import Foundation
import MusterCore
import MusterRuntime
import Testing

/// `GET /v1/logs`: every service's log files interleaved by their stamps. The files are written
/// here with chosen stamps (alpha's instances are sleeps that print nothing), so the expected
/// order is exact.
@Suite("Control API: logs of every service")
struct LogsAllRouteTests {
    static let services: [ServiceSpec] = {
        var journal = RouteHarness.spec("gamma", instances: 0)
        journal.logs.target = .journal
        return [RouteHarness.spec("alpha", instances: 2), RouteHarness.spec("beta", instances: 0), journal]
    }()

    private static func write(_ lines: [String], to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try lines.map { $0 + "\n" }.joined().write(toFile: path, atomically: false, encoding: .utf8)
    }

    @Test func interleavesByStampPrefixesEachLineAndNotesJournalServices() async throws {
        try await RouteHarness.run(specs: Self.services) { harness, api in
            let now = WallClock.now()
            func at(_ ago: Double) -> String { Timestamp.iso8601(now - ago) }
            let (t1, t2, t3, t4, t5) = (at(3600), at(1800), at(240), at(120), at(60))
            let log = harness.directory + "/log"
            try Self.write(["\(t1) stdout a0 first", "\(t3) stdout a0 third", "\(t5) stderr a0 fifth"], to: log + "/alpha/0.log")
            try Self.write(["\(t2) stdout a1 second"], to: log + "/alpha/1.log")
            try Self.write(["\(t4) stdout b0 fourth", "continued without a stamp", "\(t5) stdout b0 same time as a0"], to: log + "/beta/0.log")

            let note = "note: gamma logs to the journal ([logs] target = \"journal\"), not shown here: journalctl -t muster/gamma/0 (one -t per instance)\n"
            let every = try await api.call(.get, "/v1/logs", route: "/v1/logs", expect: 200)
            #expect(every.contentType == "text/plain; charset=utf-8")
            #expect(every.text == note + """
                alpha.0 | \(t1) stdout a0 first
                alpha.1 | \(t2) stdout a1 second
                alpha.0 | \(t3) stdout a0 third
                beta.0 | \(t4) stdout b0 fourth
                beta.0 | continued without a stamp
                alpha.0 | \(t5) stderr a0 fifth
                beta.0 | \(t5) stdout b0 same time as a0

                """)

            let lastTwo = try await api.call(.get, "/v1/logs?lines=2", route: "/v1/logs", expect: 200)
            #expect(lastTwo.text == note + "alpha.0 | \(t5) stderr a0 fifth\nbeta.0 | \(t5) stdout b0 same time as a0\n")

            let recent = try await api.call(.get, "/v1/logs?since=10m", route: "/v1/logs", expect: 200)
            let recentLines = recent.text.split(separator: "\n").map(String.init)
            #expect(recentLines == [String(note.dropLast()), "alpha.0 | \(t3) stdout a0 third", "beta.0 | \(t4) stdout b0 fourth",
                                    "beta.0 | continued without a stamp", "alpha.0 | \(t5) stderr a0 fifth", "beta.0 | \(t5) stdout b0 same time as a0"])
            let recentOne = try await api.call(.get, "/v1/logs?since=10m&lines=1", route: "/v1/logs", expect: 200)
            #expect(recentOne.text == note + "beta.0 | \(t5) stdout b0 same time as a0\n")

            let oneService = try await api.call(.get, "/v1/logs/alpha:0?since=3m", route: "/v1/logs/{target}", expect: 200)
            #expect(oneService.text == "\(t5) stderr a0 fifth\n")

            for uri in ["/v1/logs?since=soon", "/v1/logs?lines=-1", "/v1/logs/alpha?since=10x", "/v1/logs?since=1e25", "/v1/logs/alpha?since=1e30s"] {
                let refused = try await api.call(.get, uri, route: uri.hasPrefix("/v1/logs?") ? "/v1/logs" : "/v1/logs/{target}", expect: 400)
                #expect(refused.errorCode == "bad_request", "\(uri)")
            }
        }
    }
}
