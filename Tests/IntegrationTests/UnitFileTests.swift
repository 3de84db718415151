import Foundation
import Testing

/// systemd/musterd.service as systemd itself reads it: `systemd-analyze verify` reports unknown
/// keys and bad values only on stderr (exit status 0), so the test demands an empty stderr.
@Suite("The systemd unit")
struct UnitFileTests {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
    func systemdAnalyzeVerifyHasNothingToSay() throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("systemd/musterd.service"), encoding: .utf8)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("muster-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // The installed paths, pointed at the built binaries so the executables exist.
        let copy = unit.replacingOccurrences(of: "/usr/local/bin/", with: DaemonHarness.binDir + "/")
        let path = folder.appendingPathComponent("musterd.service").path
        try copy.write(toFile: path, atomically: true, encoding: .utf8)
        // The socket units (the control socket, and the example for a proxy listener), verified
        // beside the service they activate.
        var socketUnits: [String] = []
        for name in ["musterd.socket", "musterd-web.socket"] {
            let copyPath = folder.appendingPathComponent(name).path
            try FileManager.default.copyItem(atPath: Self.root.appendingPathComponent("systemd/\(name)").path, toPath: copyPath)
            socketUnits.append(copyPath)
        }
        let controlSocket = try String(contentsOfFile: socketUnits[0], encoding: .utf8)
        #expect(controlSocket.contains("FileDescriptorName=control"))
        #expect(controlSocket.contains("ListenStream=/run/muster/muster.sock"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        process.arguments = ["verify", path] + socketUnits
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(stderr.isEmpty, "systemd-analyze verify: \(stderr)")
        for key in ["Type=notify", "Delegate=yes", "KillMode=mixed", "WatchdogSec=", "ExecReload=", "Restart=on-failure",
                    "RuntimeDirectory=muster", "StateDirectory=muster", "LogsDirectory=muster", "TimeoutStopSec="] {
            #expect(unit.contains(key), "\(key)")
        }
    }
}

@Suite("scripts/install and scripts/uninstall, staged")
struct InstallScriptTests {
    @Test func installsEverythingKeepsAUsersConfigAndUninstallsCleanly() throws {
        let root = UnitFileTests.root
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("muster-stage-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: stage) }
        func script(_ name: String) -> DaemonHarness.Result {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: root.appendingPathComponent("scripts/\(name)").path)
            process.environment = ProcessInfo.processInfo.environment.merging(["DESTDIR": stage.path, "MUSTER_BIN_DIR": DaemonHarness.binDir]) { $1 }
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try? process.run()
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return .init(code: process.terminationStatus, stdout: stdout, stderr: stderr)
        }
        let first = script("install")
        #expect(first.code == 0, "\(first.stderr)")
        for file in ["usr/local/bin/musterd", "usr/local/bin/musterctl", "etc/systemd/system/musterd.service",
                     "etc/systemd/system/musterd.socket", "etc/muster/musterd.toml", "usr/share/bash-completion/completions/musterctl", "usr/local/share/doc/muster/README.md"] {
            #expect(FileManager.default.fileExists(atPath: stage.appendingPathComponent(file).path), "\(file)")
        }
        // The installed example config is valid as it stands (with its empty services.d).
        let config = stage.appendingPathComponent("etc/muster/musterd.toml").path
        let check = Process()
        check.executableURL = stage.appendingPathComponent("usr/local/bin/musterd")
        check.arguments = ["--config", config, "--check"]
        check.standardOutput = FileHandle.nullDevice
        try check.run()
        check.waitUntilExit()
        #expect(check.terminationStatus == 0)
        // A user's edit survives a second install.
        try "# edited by the operator\n[daemon]\n".write(toFile: config, atomically: true, encoding: .utf8)
        #expect(script("install").stdout.contains("kept the existing /etc/muster/musterd.toml"))
        #expect(try String(contentsOfFile: config, encoding: .utf8).hasPrefix("# edited by the operator"))
        #expect(script("uninstall").code == 0)
        #expect(!FileManager.default.fileExists(atPath: stage.appendingPathComponent("usr/local/bin/musterd").path))
        #expect(!FileManager.default.fileExists(atPath: stage.appendingPathComponent("etc/systemd/system/musterd.socket").path))
        #expect(FileManager.default.fileExists(atPath: config))
    }
}
