import Foundation
import Testing

/// A connection flood through a tcp proxy cannot take musterd's own descriptors: the proxy stops
/// below its `DescriptorReserve` ceiling, so health checks, logs and the control socket keep
/// working (before, health checks failed with "socket: too many open files" and restarted healthy
/// instances, and libdispatch crashed the daemon when it could not open /proc/<tid>/stat).
@Suite("descriptor reserve", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct DescriptorFloodTests {
    @Test func aFloodPastTheLimitLeavesTheDaemonItsDescriptors() async throws {
        let (port, metricsPort) = (ProxyTests.freePort(), ProxyTests.freePort())
        let health = "check = \"tcp\"\ninterval = \"200ms\"\nrise = 1\nfall = 2"
        try await DaemonHarness.with(services: ["db": ProxyTests.service(instances: 2, port: port, mode: "tcp", health: health)],
                                     daemonConfig: "metrics_listen = \"127.0.0.1:\(metricsPort)\"") { d in
            // 512 descriptors: the proxy may keep those numbered below 256.
            try await d.start(launcher: ["/usr/bin/prlimit", "--nofile=512:512", "--"])
            let ready = await eventually(15) { ProxyTests.readyCount(d, "db") == 2 }
            try #require(ready, "log:\n\(d.log)")

            // 600 connections: each one the proxy takes costs it two descriptors.
            var flood: [Int32] = []
            defer { for fd in flood { close(fd) } }
            for _ in 0..<600 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                try #require(fd >= 0)
                flood.append(fd)
                _ = ProxyTests.onLoopback(fd, port, connect)
            }
            // Ten health-check intervals with the flood held.
            try await Task.sleep(for: .seconds(2))
            let pid = try #require(d.daemon?.processIdentifier)
            #expect(alive(pid), "musterd exited; log:\n\(d.log)")
            let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
            #expect(open < 512 - 100, "musterd holds \(open) of its 512 descriptors")
            let events = d.ctl("events").stdout
            #expect(!events.contains("unhealthy"), "\(events)")
            #expect(ProxyTests.readyCount(d, "db") == 2)
            let metrics = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
            let rejected = metrics.split(separator: "\n").first { $0.hasPrefix(#"muster_proxy_rejected_connections_total{service="db"}"#) }
                .flatMap { Double($0.split(separator: " ").last!) } ?? 0
            #expect(rejected > 0, "\(metrics)")

            // The flood gone, the proxy serves again.
            for fd in flood { close(fd) }
            flood.removeAll()
            let served = await eventually(20) { ((try? ProxyTests.hits(d, port: port, count: 2, fresh: true)) ?? []).count == 2 }
            #expect(served, "log:\n\(d.log)")
        }
    }
}
