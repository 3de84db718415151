import Foundation
import Testing

/// musterd raises its own soft RLIMIT_NOFILE to the hard one (2,000 instances need ~10,000
/// descriptors) and starts its instances with the soft limit it was given; a manifest's
/// `[isolation] nofile` still wins.
@Suite("open files limit", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct OpenFileLimitTests {
    @Test func daemonRaisesItsOwnAndInstancesKeepTheOriginal() async throws {
        let out = NSTemporaryDirectory() + "muster-nofile-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let report = { (name: String) in
            "command = [\"/bin/sh\", \"-c\", \"echo $(ulimit -Sn) $(ulimit -Hn) > \(out)/\(name); exec sleep 100000\"]\n"
        }
        try await DaemonHarness.with(services: [
            "plain": report("plain"),
            "limited": report("limited") + "[isolation]\nnofile = 4096\n",
        ]) { d in
            // Started with soft 1024 of hard 8192, as a login shell or a bare unit would give it.
            try await d.start(launcher: ["/usr/bin/prlimit", "--nofile=1024:8192", "--"])
            let wrote = await eventually(10) {
                FileManager.default.fileExists(atPath: out + "/plain") && FileManager.default.fileExists(atPath: out + "/limited")
            }
            try #require(wrote, "instances did not report their limits; log:\n\(d.log)")
            let plain = try String(contentsOfFile: out + "/plain", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let limited = try String(contentsOfFile: out + "/limited", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(plain == "1024 8192")
            #expect(limited == "4096 4096")
            let pid = try #require(d.daemon?.processIdentifier)
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }.map(String.init) ?? ""
            #expect(line.split(separator: " ", omittingEmptySubsequences: true).suffix(3).prefix(2) == ["8192", "8192"],
                    "musterd's own limit: \(line)")
        }
    }
}
