import Foundation
import MusterAPI
import Testing

/// The charts' CPU and memory come from each service's cgroup folder (one read a service a
/// second, not two an instance): they must still be the service's whole use, and an instance
/// going away must not make the rate jump or go negative.
@Suite("history: CPU and memory of the service's cgroup", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct HistoryUsageTests {
    static func history(_ d: DaemonHarness, _ service: String) throws -> ServiceMetricsHistory? {
        let body = d.run("/usr/bin/curl", ["-s", "--unix-socket", d.socket, "http://musterd/v1/history?service=\(service)"]).stdout
        return try JSONDecoder().decode(MetricsHistoryResponse.self, from: Data(body.utf8)).services.first
    }

    @Test func busyInstancesShowInTheServiceCPUAndScalingDownKeepsItSane() async throws {
        let busy = "command = [\"/bin/sh\", \"-c\", \"while :; do :; done\"]\ninstances = 2\n[restart]\nstart_seconds = 0\n"
        try await DaemonHarness.with(services: ["burn": busy]) { d in
            try await d.start()
            var burn: ServiceMetricsHistory?
            // Two busy loops on a 2-core machine: well above a third of a core, however busy the
            // machine is otherwise; a sampler that read nothing would chart 0.
            let charted = await eventually(20) {
                burn = try Self.history(d, "burn")
                let recent = burn?.samples.suffix(2) ?? []
                return recent.count == 2 && recent.allSatisfy { $0.cpuPercent > 30 && $0.ready == 2 }
            }
            #expect(charted, "samples: \(String(describing: burn?.samples.suffix(4)))")
            if (try d.instances("burn")).allSatisfy({ ($0.memoryBytes ?? 0) > 0 }) {
                let last = try #require(burn?.samples.last)
                #expect(last.memoryBytes > 0, "status reports memory, so the history should: \(last)")
            }
            let scaled = d.ctl("scale", "burn", "1")
            #expect(scaled.code == 0, "\(scaled.stderr)")
            let before = Date().timeIntervalSince1970
            let settled = await eventually(20) {
                burn = try Self.history(d, "burn")
                return (burn?.samples.filter { $0.time > before && $0.ready == 1 }.count ?? 0) >= 3
            }
            #expect(settled, "samples: \(String(describing: burn?.samples.suffix(4)))")
            let after = burn?.samples.filter { $0.time > before } ?? []
            // One busy loop is at most one core (100 %); a removed folder's usage counted twice
            // or lost would show as a jump or a negative rate.
            let sane = after.allSatisfy { $0.cpuPercent >= 0 && $0.cpuPercent < 250 }
            #expect(sane, "samples after scaling down: \(after)")
        }
    }
}
