import Glibc
import Logging
import MusterAPI
import MusterCore
import MusterRuntime
import Testing

/// A cgroup root and a temp folder of a test's own, removed afterwards even when the test fails:
/// processes left in the root are killed and every folder under it is removed, leaves first.
final class KernelFixture: Sendable {
    let rootName: String
    let cgroups: Cgroups
    let directory: String
    let reaper = Reaper.shared
    let journal = EventJournal(stateDir: nil)

    init() throws {
        rootName = "muster-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        cgroups = Cgroups.setUp(root: .named(rootName))
        var template = Array("/tmp/muster-test-XXXXXX".utf8CString)
        let made = try #require(mkdtemp(&template), "mkdtemp failed")
        directory = String(cString: made)
    }

    func supervisor(_ specs: [ServiceSpec], store: StateStore? = nil) -> Supervisor {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return Supervisor(specs: specs, dependencies: .init(
            cgroups: cgroups, reaper: reaper, logs: LogPump { _ in }, journal: journal, store: store,
            logDir: directory + "/log", ports: 31000...31999, daemonEnvironment: [:], logger: logger,
            loadManifests: { () throws(ManifestErrors) -> [ServiceSpec] in specs }, containersDir: directory + "/containers"))
    }

    /// Runs `body` with a fresh fixture and always cleans up after it.
    static func with(_ body: (KernelFixture) async throws -> Void) async throws {
        let fixture = try KernelFixture()
        defer { fixture.cleanUp() }
        try await body(fixture)
    }

    func cleanUp() {
        for group in cgroups.leftovers() {
            cgroups.kill(group)
            for _ in 0..<200 where !cgroups.remove(group) { usleep(5000) }
        }
        cgroups.tearDown()
        _ = system("rm -rf '\(directory)'")
    }

    /// Starts `request` with stdout and stderr in one file of the fixture's (opened by the test:
    /// the process may not see the test's folders) and waits for its exit.
    func runCapturingOutput(_ request: LaunchRequest) async throws -> (output: String, exit: MusterCore.ExitStatus) {
        let path = directory + "/run-\(UInt32.random(in: 0...UInt32.max)).out"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        var request = request
        request.stdoutFD = fd
        request.stderrFD = fd
        let exits = AsyncStream<MusterCore.ExitStatus>.makeStream()
        do {
            _ = try Reaper.shared.spawning { () throws(SpawnError) -> ProcessHandle in
                let handle = try Spawner.spawn(request)
                Reaper.shared.watch(handle) { exits.continuation.yield($0) }
                return handle
            }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        var iterator = exits.stream.makeAsyncIterator()
        let exit = try #require(await iterator.next())
        return (try FileSystem.read(path), exit)
    }

    /// Polls `condition` every 20 ms until it holds or `seconds` pass.
    static func eventually(_ seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }
}

func instance(_ supervisor: Supervisor, _ service: String, _ index: Int = 0) async throws -> InstanceStatus? {
    try await supervisor.status([service]).services.first?.instances.first { $0.index == index }
}

func spec(_ name: String, _ command: [String], configure: (inout ServiceSpec) -> Void = { _ in }) -> ServiceSpec {
    var spec = ServiceSpec(name: name, command: command)
    spec.restart.startSeconds = 0.2
    spec.stop.timeout = .seconds(2)
    configure(&spec)
    return spec
}

func processExists(_ pid: Int32) -> Bool {
    guard let stat = FileSystem.readIfPresent("/proc/\(pid)/stat") else { return false }
    // A zombie has ended; only its exit status is left for a parent to collect.
    guard let close = stat.lastIndex(of: ")") else { return true }
    return !stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
}

let isRoot = geteuid() == 0
