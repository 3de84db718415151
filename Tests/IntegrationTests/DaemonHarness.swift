import Foundation
import MusterAPI
import Synchronization
import Testing

/// Runs the built `musterd` in a temp folder with a cgroup root of its own, and `musterctl`
/// against it. `cleanUp` kills whatever is left (daemon, instances, cgroups, files) even when the
/// test failed halfway.
final class DaemonHarness: @unchecked Sendable {
    let directory: URL
    let rootName: String
    var socket: String { directory.appendingPathComponent("run/muster.sock").path }
    var servicesDir: URL { directory.appendingPathComponent("services.d") }
    var configPath: String { directory.appendingPathComponent("musterd.toml").path }
    private(set) var daemon: Process?
    private var daemonLog: FileHandle?

    static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["MUSTER_BIN_DIR"] { return dir }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }

    /// - Parameter autoRoot: `cgroup_root = "auto"`: musterd is started inside a cgroup made for
    ///   it (as systemd's Delegate=yes would) and must adopt it.
    let autoRoot: Bool

    /// Each daemon of the run gets its own 100 instance ports: daemons sharing one range (tests
    /// run in parallel) each saw the other's ports free while an instance had not bound yet, and
    /// one's health check and proxy then reached the other's instance. Below 32768, the kernel's
    /// ephemeral range here, and above ProxyTests.freePort's 17000-19999.
    private static let nextPortBlock = Atomic<Int>(0)
    static func instancePortBlock() -> String {
        let block = nextPortBlock.add(1, ordering: .relaxed).oldValue % 127
        return "\(20000 + block * 100)-\(20000 + block * 100 + 99)"
    }

    /// - Parameter daemonConfig: more lines for musterd.toml's [daemon] table.
    init(services: [String: String], ports: String = DaemonHarness.instancePortBlock(), autoRoot: Bool = false, daemonConfig: String = "") throws {
        self.autoRoot = autoRoot
        rootName = "muster-it-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(rootName)
        try FileManager.default.createDirectory(at: servicesDir, withIntermediateDirectories: true)
        let config = """
            [daemon]
            services_dir   = "services.d"
            control_socket = "run/muster.sock"
            state_dir      = "state"
            log_dir        = "log"
            cgroup_root    = "\(autoRoot ? "auto" : rootName)"
            instance_ports = "\(ports)"
            \(daemonConfig)
            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        for (name, text) in services { try write(service: name, text) }
    }

    func write(service name: String, _ text: String) throws {
        try text.write(to: servicesDir.appendingPathComponent("\(name).toml"), atomically: true, encoding: .utf8)
    }

    func remove(service name: String) throws {
        try FileManager.default.removeItem(at: servicesDir.appendingPathComponent("\(name).toml"))
    }

    /// Starts musterd and waits until its control socket answers.
    /// - Parameter environment: added to the test's own environment for the daemon.
    /// - Parameter launcher: a program and arguments that exec musterd's command line after them
    ///   (e.g. `systemd-socket-activate -l ADDRESS`).
    func start(environment: [String: String] = [:], launcher: [String] = []) async throws {
        let process = Process()
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if autoRoot {
            // The delegated cgroup a service manager would give it: musterd starts inside it.
            let delegated = "/sys/fs/cgroup/unified/\(rootName)"
            try FileManager.default.createDirectory(atPath: delegated, withIntermediateDirectories: true)
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "echo $$ > \(delegated)/cgroup.procs && exec \(Self.binDir)/musterd --config \(configPath)"]
        } else if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [Self.binDir + "/musterd", "--config", configPath]
        } else {
            process.executableURL = URL(fileURLWithPath: Self.binDir + "/musterd")
            process.arguments = ["--config", configPath]
        }
        let logURL = directory.appendingPathComponent("musterd.log")
        if !FileManager.default.fileExists(atPath: logURL.path) { FileManager.default.createFile(atPath: logURL.path, contents: nil) }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        daemon = process
        daemonLog = log
        let ready = await eventually(15) { ctl("version").code == 0 }
        try #require(ready, "musterd did not answer on \(socket); its log:\n\(self.log)")
    }

    var log: String { (try? String(contentsOf: directory.appendingPathComponent("musterd.log"), encoding: .utf8)) ?? "" }

    struct Result {
        var code: Int32
        var stdout: String
        var stderr: String
    }

    @discardableResult
    func ctl(_ arguments: String..., socketPath: String? = nil) -> Result {
        run(Self.binDir + "/musterctl", arguments + ["--socket", socketPath ?? socket])
    }

    /// Runs a program to completion and collects its output.
    func run(_ program: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        do { try process.run() } catch { return Result(code: -1, stdout: "", stderr: "\(error)") }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        // A command that hangs must fail its test, not stall the whole suite.
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        defer { watchdog.cancel() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(code: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func status() throws -> StatusResponse {
        let result = ctl("status", "--json")
        try #require(result.code == 0, "status failed: \(result.stderr)")
        return try JSONDecoder().decode(StatusResponse.self, from: Data(result.stdout.utf8))
    }

    func instances(_ service: String) throws -> [InstanceStatus] {
        try status().services.first { $0.name == service }?.instances ?? []
    }

    func running(_ service: String, count: Int) throws -> Bool {
        let rows = try instances(service)
        return rows.count == count && rows.allSatisfy { $0.state == "running" }
    }

    /// SIGKILL: the daemon dies without stopping anything.
    func killDaemon() {
        guard let daemon, daemon.isRunning else { return }
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
    }

    /// Waits for the daemon to exit by itself; returns its exit status.
    func waitForExit(_ seconds: Double) async -> Int32? {
        guard let daemon else { return nil }
        _ = await eventually(seconds) { !daemon.isRunning }
        return daemon.isRunning ? nil : daemon.terminationStatus
    }

    var cgroupDirectories: [String] {
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu"]
            .map { "\($0)/\(rootName)" }
            .filter { FileManager.default.fileExists(atPath: $0) }
    }

    func cleanUp() {
        if let daemon, daemon.isRunning {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
        }
        try? daemonLog?.close()
        for root in cgroupDirectories {
            // Leaves first: kill what is in them, then remove folders from the deepest up.
            let enumerator = FileManager.default.enumerator(atPath: root)
            var folders: [String] = []
            while let item = enumerator?.nextObject() as? String {
                let path = root + "/" + item
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue, !item.contains("/cgroup.") {
                    folders.append(path)
                }
            }
            for folder in folders where FileManager.default.fileExists(atPath: folder + "/cgroup.kill") {
                try? "1".write(toFile: folder + "/cgroup.kill", atomically: false, encoding: .utf8)
            }
            for folder in (folders + [root]).sorted(by: { $0.count > $1.count }) {
                for _ in 0..<100 where rmdir(folder) != 0 && errno == EBUSY { usleep(10_000) }
            }
        }
        try? FileManager.default.removeItem(at: directory)
    }

    static func with(services: [String: String], autoRoot: Bool = false, daemonConfig: String = "",
                     _ body: (DaemonHarness) async throws -> Void) async throws {
        let harness = try DaemonHarness(services: services, autoRoot: autoRoot, daemonConfig: daemonConfig)
        defer { harness.cleanUp() }
        do {
            try await body(harness)
        } catch {
            Issue.record("musterd log:\n\(harness.log)")
            throw error
        }
    }
}

/// Polls `condition` every 25 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(25))
    }
    return (try? condition()) == true
}

func alive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return true }
    return !stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
}

let isRoot = getuid() == 0
let sleeper = "command = [\"/bin/sleep\", \"100000\"]\ninstances = 2\n[restart]\nstart_seconds = 0.3\n[stop]\ntimeout = \"2s\"\n"
