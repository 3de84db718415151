import Foundation
import MusterAPI
import Testing

/// Canary deploys through the real daemon: backend.py "versions" differ by $BEHAVIOR and
/// $VERSION, load from Fixtures/load.py, judged by the real proxy's counters.
@Suite(.serialized) struct CanaryTests {
    /// backend.py behind a proxy with a canary `[deploy]` table.
    static func service(port: Int, version: Int, behavior: String = "ok", instances: Int = 2, duration: String = "3s",
                        weight: String = "20%", maxErrorRate: String = "5%", maxP99: String = "") -> String {
        ProxyTests.service(instances: instances, port: port, environment: "BEHAVIOR = \"\(behavior)\", VERSION = \"\(version)\"") + """

            [deploy]
            strategy = "canary"
            canary_instances = 1
            canary_weight = "\(weight)"
            canary_duration = "\(duration)"
            max_error_rate = "\(maxErrorRate)"
            \(maxP99.isEmpty ? "" : "max_p99 = \"\(maxP99)\"")
            """
    }

    static func history(_ d: DaemonHarness, _ service: String = "web") throws -> HistoryResponse {
        let result = d.ctl("history", service, "--json")
        try #require(result.code == 0, "history failed: \(result.stderr)")
        return try JSONDecoder().decode(HistoryResponse.self, from: Data(result.stdout.utf8))
    }

    static func pids(_ d: DaemonHarness) throws -> [Int32] {
        try d.instances("web").compactMap(\.pid).sorted()
    }

    /// Starts v1 under load, deploys `next` with `deploy --watch`, and hands back what happened.
    static func deploy(_ next: (Int) -> String, first: ((Int) -> String)? = nil,
                       _ check: (DaemonHarness, DaemonHarness.Result, ProxyTests.Load.Counts, [Int32]) async throws -> Void) async throws {
        let port = ProxyTests.freePort()
        let v1 = first?(port) ?? service(port: port, version: 1)
        try await DaemonHarness.with(services: ["web": v1]) { d in
            try await d.start()
            let ready = await eventually(20) { ProxyTests.readyCount(d, "web") == 2 }
            try #require(ready)
            let before = try pids(d)
            let load = try ProxyTests.Load(port: port, clients: 6, directory: d.directory)
            try d.write(service: "web", next(port))
            let result = d.ctl("deploy", "web", "--watch")
            let counts = try load.finish()
            try await check(d, result, counts, before)
        }
    }

    @Test(.enabled(if: isRoot)) func aGoodVersionIsPromotedWithoutLosingARequest() async throws {
        try await Self.deploy({ Self.service(port: $0, version: 2) }) { d, result, counts, before in
            #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("revision 2: promoted"), "\(result.stdout)")
            #expect(counts.failed == 0, "\(counts.errors)")
            let history = try Self.history(d)
            #expect(history.revisions.map(\.outcome) == ["deployed", "promoted"])
            #expect(history.revisions.last?.current == true)
            #expect(history.revisions.last?.changes == ["environment (VERSION)"])
            // The old instances are replaced by the rolling restart, and the canary goes away.
            let replaced = await eventually(30) {
                let status = try d.status().services[0]
                return status.canary == nil && status.revision == 2 && status.instances.allSatisfy { $0.ready && !before.contains($0.pid ?? 0) }
            }
            #expect(replaced)
        }
    }

    @Test(.enabled(if: isRoot)) func aVersionAnswering500IsRolledBack() async throws {
        try await Self.deploy({ Self.service(port: $0, version: 2, behavior: "fail") }) { d, result, counts, before in
            #expect(result.code != 0, "\(result.stdout)")
            let outcome = try Self.history(d).revisions.last?.outcome ?? ""
            #expect(outcome.hasPrefix("rolled back: error rate"), "\(outcome)")
            #expect(outcome.hasSuffix("> 5%"), "\(outcome)")
            // The old instances kept serving; clients saw at most about the canary's share of errors.
            #expect(try Self.pids(d) == before)
            #expect(counts.ok > 0)
            #expect(Double(counts.failed) <= Double(counts.ok + counts.failed) * 0.2 + 1, "\(counts.failed) of \(counts.ok + counts.failed)")
            // The rollback sticks: a reload with the manifest unchanged starts no new canary.
            #expect(d.ctl("reload").code == 0)
            #expect(try d.status().services[0].canary == nil)
            #expect(try Self.history(d).revisions.count == 2)
            #expect(try Self.pids(d) == before)
        }
    }

    @Test(.enabled(if: isRoot)) func aVersionThatCrashesAtStartIsRolledBack() async throws {
        try await Self.deploy({ Self.service(port: $0, version: 2, behavior: "crash") }) { d, result, counts, before in
            #expect(result.code != 0, "\(result.stdout)")
            let outcome = try Self.history(d).revisions.last?.outcome ?? ""
            #expect(outcome.hasPrefix("rolled back: canary crashed"), "\(outcome)")
            #expect(counts.failed == 0, "\(counts.errors)")
            #expect(try Self.pids(d) == before)
        }
    }

    @Test(.enabled(if: isRoot)) func aSlowVersionIsCaughtByMaxP99() async throws {
        try await Self.deploy({ Self.service(port: $0, version: 2, behavior: "slow", duration: "20s", maxP99: "250ms") },
                              first: { Self.service(port: $0, version: 1, maxP99: "250ms") }) { d, result, counts, before in
            #expect(result.code != 0, "\(result.stdout)")
            let outcome = try Self.history(d).revisions.last?.outcome ?? ""
            #expect(outcome.hasPrefix("rolled back: p99"), "\(outcome)")
            #expect(outcome.hasSuffix("> 250ms"), "\(outcome)")
            #expect(counts.failed == 0, "\(counts.errors)")
            #expect(try Self.pids(d) == before)
        }
    }

    @Test(.enabled(if: isRoot)) func rollbackDeploysAnEarlierRevision() async throws {
        try await Self.deploy({ Self.service(port: $0, version: 2) }) { d, result, _, _ in
            #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
            let back = d.ctl("rollback", "web", "--watch")
            #expect(back.code == 0, "\(back.stdout)\(back.stderr)")
            let history = try Self.history(d)
            #expect(history.revisions.map(\.source) == ["start", "deploy", "rollback to 1"])
            #expect(history.revisions.last?.outcome == "promoted")
            #expect(history.revisions.last?.current == true)
            // A reload with the manifest (v2) unchanged keeps the rolled-back revision running.
            let settled = await eventually(30) { try d.status().services[0].canary == nil }
            #expect(settled)
            #expect(d.ctl("reload").code == 0)
            #expect(try d.status().services[0].canary == nil)
            #expect(try d.status().services[0].revision == 3)
        }
    }

    @Test(.enabled(if: isRoot)) func aReloadOfAChangedManifestGoesThroughTheCanary() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(port: port, version: 1)]) { d in
            try await d.start()
            let ready = await eventually(20) { ProxyTests.readyCount(d, "web") == 2 }
            try #require(ready)
            let before = try Self.pids(d)
            let load = try ProxyTests.Load(port: port, clients: 6, directory: d.directory)
            try d.write(service: "web", Self.service(port: port, version: 2, behavior: "fail"))
            #expect(d.ctl("reload").code == 0)
            let decided = await eventually(60) { (try Self.history(d).revisions.last?.outcome ?? "").hasPrefix("rolled back") }
            _ = try load.finish()
            #expect(decided)
            let table = d.ctl("history", "web")
            #expect(table.code == 0)
            #expect(table.stdout.contains("reload"), "\(table.stdout)")
            #expect(table.stdout.contains("rolled back: error rate"), "\(table.stdout)")
            #expect(table.stdout.contains("environment (BEHAVIOR, VERSION)"), "\(table.stdout)")
            #expect(try Self.pids(d) == before)
        }
    }

    @Test(.enabled(if: isRoot)) func aDaemonKilledDuringACanaryComesBackOnOneRevision() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(port: port, version: 1)]) { d in
            try await d.start()
            let ready = await eventually(20) { ProxyTests.readyCount(d, "web") == 2 }
            try #require(ready)
            try d.write(service: "web", Self.service(port: port, version: 2, duration: "5m"))
            #expect(d.ctl("deploy", "web").code == 0)
            let judging = await eventually(20) { try d.status().services[0].canary?.phase == "judging" }
            try #require(judging)
            let canaryPid = try #require(try d.status().services[0].canary?.instances.first?.pid)
            d.killDaemon()
            try await d.start()
            let back = await eventually(30) { try d.running("web", count: 2) && ProxyTests.readyCount(d, "web") == 2 }
            #expect(back)
            let status = try d.status().services[0]
            #expect(status.revision == 1)
            #expect(status.canary == nil)
            #expect(!alive(canaryPid))
            let history = try Self.history(d)
            #expect(history.revisions.map(\.outcome) == ["deployed", "rolled back: musterd restarted during the canary"])
            // No cgroup of the canary is left.
            let leftover = d.cgroupDirectories.flatMap { root in
                ((try? FileManager.default.contentsOfDirectory(atPath: root + "/services")) ?? []).filter { $0.contains("@") }
            }
            #expect(leftover.isEmpty, "\(leftover)")
            // Every instance runs revision 1: its answers say so.
            let seen = try ProxyTests.hits(d, port: port, count: 6)
            let allAnswered = seen.allSatisfy { !$0.hasPrefix("HTTP") }
            #expect(allAnswered, "\(seen)")
        }
    }

    @Test(.enabled(if: isRoot)) func stoppingTheServiceDuringItsCanaryRollsTheCanaryBack() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": Self.service(port: port, version: 1)]) { d in
            try await d.start()
            let ready = await eventually(20) { ProxyTests.readyCount(d, "web") == 2 }
            try #require(ready)
            try d.write(service: "web", Self.service(port: port, version: 2, duration: "5m"))
            #expect(d.ctl("deploy", "web").code == 0)
            let judging = await eventually(20) { try d.status().services[0].canary?.phase == "judging" }
            try #require(judging)
            let canaryPid = try #require(try d.status().services[0].canary?.instances.first?.pid)
            let stopped = d.ctl("stop", "web")
            #expect(stopped.code == 0, "\(stopped.stdout)\(stopped.stderr)")
            // A stopped service is neither judged nor promoted: its canary goes with it.
            let gone = await eventually(20) { try d.status().services[0].canary == nil && !alive(canaryPid) }
            #expect(gone)
            #expect(try Self.history(d).revisions.map(\.outcome) == ["deployed", "rolled back: web was stopped"])
            #expect(try d.status().services[0].revision == 1)
            #expect(try Self.pids(d).isEmpty)
            // Started again, it runs the revision it ran, with no canary.
            #expect(d.ctl("start", "web").code == 0)
            let back = await eventually(20) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(back)
            #expect(try d.status().services[0].canary == nil)
        }
    }
}
