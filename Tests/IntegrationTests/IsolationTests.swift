import Foundation
import MusterAPI
import Testing

/// `[isolation]`, running as root, and the file ownership rule, through the real musterd.
@Suite("Isolation and file trust end to end", .enabled(if: isRoot, "creates cgroups and namespaces: needs root"), .serialized)
struct IsolationIntegrationTests {
    @Test func aGroupWritableManifestOrConfigIsRefusedAndReloadChangesNothing() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            let manifest = d.servicesDir.appendingPathComponent("sleeper.toml").path
            chmod(manifest, 0o664)
            let check = d.run(DaemonHarness.binDir + "/musterd", ["--config", d.configPath, "--check"])
            #expect(check.code == 1, "\(check)")
            #expect(check.stderr.contains("sleeper.toml: refused: writable by group (mode 0664); a writable manifest would let others run commands as root: chmod go-w \(manifest)"), "\(check.stderr)")
            let ctlCheck = d.run(DaemonHarness.binDir + "/musterctl", ["check", manifest])
            #expect(ctlCheck.code == 1)
            #expect(ctlCheck.stderr.contains("refused: writable by group (mode 0664)"), "\(ctlCheck.stderr)")

            chmod(manifest, 0o644)
            chmod(d.configPath, 0o646)
            let config = d.run(DaemonHarness.binDir + "/musterd", ["--config", d.configPath, "--check"])
            #expect(config.code == 1, "\(config)")
            #expect(config.stderr.contains("musterd.toml: refused: writable by others (mode 0646); a writable daemon config would let others run commands as root: chmod go-w "), "\(config.stderr)")
            chmod(d.configPath, 0o644)

            try await d.start()
            let up = await eventually { try d.running("sleeper", count: 2) }
            #expect(up)
            let pids = try d.instances("sleeper").map(\.pid)
            try d.write(service: "sleeper", sleeper.replacingOccurrences(of: "instances = 2", with: "instances = 3"))
            chmod(manifest, 0o664)
            let dryRun = d.ctl("reload", "--dry-run")
            #expect(dryRun.code == 1)
            #expect(dryRun.stderr.contains("sleeper.toml: refused: writable by group (mode 0664)"), "\(dryRun)")
            let refused = d.ctl("reload")
            #expect(refused.code == 1)
            #expect(refused.stderr.contains("sleeper.toml: refused: writable by group (mode 0664)"), "\(refused)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try d.instances("sleeper").map(\.pid) == pids)

            // Fixed: the same change goes through.
            chmod(manifest, 0o644)
            #expect(d.ctl("reload").code == 0)
            let scaled = await eventually { try d.running("sleeper", count: 3) }
            #expect(scaled)
        }
    }

    @Test func aServiceWithoutUserIsFlaggedAsRunningAsRoot() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            let check = d.run(DaemonHarness.binDir + "/musterd", ["--config", d.configPath, "--check"])
            #expect(check.code == 0)
            #expect(check.stderr.contains("warning: sleeper will run as root (no user = \"…\" in the manifest)"), "\(check)")
            try await d.start()
            let up = await eventually { try d.running("sleeper", count: 2) }
            #expect(up)
            let dryRun = d.ctl("reload", "--dry-run")
            #expect(dryRun.stdout.contains("warning: sleeper will run as root"), "\(dryRun)")
            let rows = try d.instances("sleeper")
            #expect(rows.map(\.user) == ["root", "root"])
            let table = d.ctl("status").stdout
            let rootRows = table.split(separator: "\n").filter { $0.hasPrefix("sleeper:") && $0.hasSuffix("as root") }
            #expect(rootRows.count == 2, "\(table)")
        }
    }

    @Test func anInstanceRunsWithItsIsolationAndItsExecProbeSharesIt() async throws {
        let marker = "/etc/muster-isolation-\(getpid())"
        let tmpMarker = "/tmp/muster-isolation-marker-\(getpid())"
        defer { unlink(marker); unlink(tmpMarker) }
        let report = """
            touch \(tmpMarker); \
            grep -E '^(CapBnd|NoNewPrivs):' /proc/self/status; \
            grep 'Max open files' /proc/self/limits; \
            echo tmp entries: $(ls -A /tmp | wc -l); \
            touch \(marker) 2>/dev/null || echo 'etc refused'; \
            exec sleep 100000
            """
        let web = """
            command = ["/bin/sh", "-c", "\(report)"]
            [restart]
            start_seconds = 0.3
            [stop]
            timeout = "2s"
            [health]
            check    = "exec"
            command  = ["/bin/sh", "-c", "test -e \(tmpMarker)"]
            interval = "200ms"
            rise     = 1
            [isolation]
            private_tmp     = true
            read_only_paths = ["/etc"]
            capabilities    = ["CAP_NET_BIND_SERVICE"]
            nofile          = 1024
            """
        try await DaemonHarness.with(services: ["web": web]) { d in
            try await d.start()
            let ready = await eventually(15) { try d.instances("web").first?.ready == true }
            #expect(ready, "\(d.ctl("status").stdout)")
            let logFile = d.directory.appendingPathComponent("log/web/0.log")
            let logged = await eventually { ((try? String(contentsOf: logFile, encoding: .utf8)) ?? "").contains("etc refused") }
            #expect(logged)
            let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            #expect(log.contains("CapBnd:\t0000000000000400"), "\(log)")
            #expect(log.contains("NoNewPrivs:\t1"), "\(log)")
            #expect(log.contains("Max open files            1024                 1024"), "\(log)")
            #expect(log.contains("tmp entries: 1"), "\(log)")
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(!FileManager.default.fileExists(atPath: tmpMarker))
        }
    }
}
