import Glibc
import MusterCore
import MusterRuntime
import Testing

/// One epoll thread for every probe and notify socket in the test process, as in the daemon.
let healthTestLoop = EpollLoop(name: "health-test")

/// A temp folder of a test's own, removed afterwards even when the test fails.
func withHealthTempDirectory(_ body: (String) async throws -> Void) async throws {
    var template = Array("/tmp/muster-health-XXXXXX".utf8CString)
    let made = try #require(mkdtemp(&template), "mkdtemp failed")
    let directory = String(cString: made)
    defer { _ = system("rm -rf '\(directory)'") }
    try await body(directory)
}

/// A TCP socket on 127.0.0.1 with a kernel-chosen port: listening (the kernel completes
/// handshakes into the backlog, but nothing is ever accepted or answered) or only bound (connects
/// are refused, and the port stays reserved for the test).
final class LoopbackSocket: Sendable {
    let fd: Int32
    let port: Int

    init(listening: Bool) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        if !bound || (listening && listen(fd, 16) != 0) {
            let code = errno
            close(fd)
            try #require(Bool(false), "bind/listen: \(code)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// Accepts one connection without blocking a thread of the cooperative pool.
    func acceptConnection() async throws -> Int32 {
        var connection: Int32 = -1
        _ = await healthEventually(20) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 0) == 1 { connection = accept(fd, nil, nil) }
            return connection >= 0
        }
        return try #require(connection >= 0 ? connection : nil, "no connection came")
    }
}

/// Reads from `fd` until `done` holds for what has arrived, without blocking.
func receiveUntil(_ fd: Int32, _ done: ([UInt8]) -> Bool) async -> [UInt8] {
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1024)
    _ = await healthEventually(20) {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { received += chunk[0..<n] }
        return done(received)
    }
    return received
}

/// Starts `argv` (absolute program) with the test process's environment plus `extra`, watched by
/// the reaper; `exited` is called with the status.
func startHealthChild(_ argv: [String], extra: [String] = [], directory: String = "/",
                      exited: @escaping @Sendable (MusterCore.ExitStatus) -> Void = { _ in }) throws -> ProcessHandle {
    var environment: [String] = []
    var entry = environ
    while let pointer = entry.pointee {
        environment.append(String(cString: pointer))
        entry += 1
    }
    let request = LaunchRequest(program: argv[0], argv: argv, environment: environment + extra, directory: directory, credentials: nil)
    return try Reaper.shared.spawning { () throws(SpawnError) -> ProcessHandle in
        let handle = try Spawner.spawn(request)
        Reaper.shared.watch(handle, onExit: exited)
        return handle
    }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
func healthEventually(_ seconds: Double = 10, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}

/// A real HTTP server (python3's http.server) on a free port: /ok answers 200, /fail 503,
/// /moved 302, anything else 404.
final class PythonHTTPServer: Sendable {
    let handle: ProcessHandle
    let port: Int

    static let script = """
        import http.server, sys
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                code = {"/ok": 200, "/fail": 503, "/moved": 302}.get(self.path, 404)
                body = b"health"
                self.send_response(code)
                if code == 302: self.send_header("Location", "/ok")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args): pass
        server = http.server.HTTPServer(("127.0.0.1", 0), H)
        open(sys.argv[1] + ".tmp", "w").write(str(server.server_port))
        import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        server.serve_forever()
        """

    init(directory: String) async throws {
        try FileSystem.writeAtomically(Array(Self.script.utf8), to: directory + "/server.py")
        let portFile = directory + "/port"
        handle = try startHealthChild(["/bin/sh", "-c", "exec python3 '\(directory)/server.py' '\(portFile)'"])
        let started = await healthEventually { FileSystem.exists(portFile) }
        try #require(started, "python3 http.server did not start")
        port = try #require(Int(FileSystem.read(portFile)))
    }

    func stop() { handle.signal(SIGKILL) }
}

@Suite("Health probes against real sockets and processes")
struct HealthProbeTests {
    let probe = HealthProbe(loop: healthTestLoop)

    @Test func tcpIsHealthyWhenSomethingListens() async throws {
        let server = try LoopbackSocket(listening: true)
        let result = await probe.tcp(port: server.port, timeout: .seconds(2))
        #expect(result == .ok("connected"))
    }

    @Test func tcpFailsWithConnectionRefusedOnAClosedPort() async throws {
        let closed = try LoopbackSocket(listening: false)
        let result = await probe.tcp(port: closed.port, timeout: .seconds(2))
        #expect(result == .failed("connection refused"))
    }

    @Test func httpIsJudgedByTheStatusLine() async throws {
        try await withHealthTempDirectory { directory in
            let server = try await PythonHTTPServer(directory: directory)
            defer { server.stop() }
            #expect(await probe.http(port: server.port, path: "/ok", timeout: .seconds(5)) == .ok("HTTP 200"))
            #expect(await probe.http(port: server.port, path: "/moved", timeout: .seconds(5)) == .ok("HTTP 302"))
            #expect(await probe.http(port: server.port, path: "/fail", timeout: .seconds(5)) == .failed("HTTP 503"))
            #expect(await probe.http(port: server.port, path: "/missing?x=1", timeout: .seconds(5)) == .failed("HTTP 404"))
        }
    }

    @Test func httpSendsHostAndUserAgent() async throws {
        // Read raw off the socket: the request exactly as the probe sends it.
        let server = try LoopbackSocket(listening: true)
        async let result = probe.http(port: server.port, path: "/health", timeout: .seconds(2))
        let connection = try await server.acceptConnection()
        defer { close(connection) }
        let request = await receiveUntil(connection) { String(decoding: $0, as: UTF8.self).hasSuffix("\r\n\r\n") }
        let reply = Array("HTTP/1.0 204 No Content\r\n\r\n".utf8)
        _ = reply.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let text = String(decoding: request, as: UTF8.self)
        #expect(text.hasPrefix("GET /health HTTP/1.1\r\n"))
        #expect(text.contains("\r\nHost: 127.0.0.1:\(server.port)\r\n"))
        #expect(text.contains("\r\nUser-Agent: muster-health\r\n"))
        #expect(text.contains("\r\nConnection: close\r\n"))
        #expect(await result == .ok("HTTP 204"))
    }

    @Test func httpFailsWithConnectionRefusedWhenNothingListens() async throws {
        let closed = try LoopbackSocket(listening: false)
        #expect(await probe.http(port: closed.port, path: "/", timeout: .seconds(2)) == .failed("connection refused"))
    }

    @Test func httpTimesOutPromptlyOnAServerThatNeverAnswers() async throws {
        let silent = try LoopbackSocket(listening: true)
        let started = ContinuousClock.now
        let result = await probe.http(port: silent.port, path: "/", timeout: .milliseconds(300))
        let elapsed = ContinuousClock.now - started
        #expect(result == .failed("timed out after 300ms waiting for a response"))
        // No upper bound on time: the machines are shared and noisy. The message proves the timeout
        // ended it, and it cannot end before the timeout.
        #expect(elapsed >= .milliseconds(290), "took \(elapsed)")
    }

    @Test func httpRejectsAnAnswerThatIsNotHTTP() async throws {
        let server = try LoopbackSocket(listening: true)
        async let result = probe.http(port: server.port, path: "/", timeout: .seconds(2))
        let connection = try await server.acceptConnection()
        let reply = Array("SSH-2.0-OpenSSH_9.2\r\n".utf8)
        _ = reply.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(await result == .failed("not an HTTP response"))
        close(connection)
    }

    @Test func httpRefusesAPathThatWouldBreakTheRequest() async throws {
        let result = await probe.http(port: 1, path: "/a b\r\nX: y", timeout: .seconds(1))
        #expect(!result.healthy)
        #expect(result.message.hasPrefix("bad health path"))
    }

    @Test func execIsHealthyOnExitCodeZero() async {
        #expect(await probe.exec(command: ["/bin/true"], environment: [], timeout: .seconds(5)) == .ok("exited with code 0"))
        #expect(await probe.exec(command: ["/bin/false"], environment: [], timeout: .seconds(5)) == .failed("exited with code 1"))
    }

    @Test func execLooksUpTheProgramInPathAndPassesTheEnvironment() async {
        let environment = ["PATH=/usr/bin:/bin", "PORT=8123"]
        let result = await probe.exec(command: ["sh", "-c", "test \"$PORT\" = 8123"], environment: environment, timeout: .seconds(5))
        #expect(result == .ok("exited with code 0"))
        let missing = await probe.exec(command: ["no-such-probe-command"], environment: environment, timeout: .seconds(5))
        #expect(missing == .failed("no-such-probe-command: command not found"))
    }

    @Test func execIsKilledAtTheTimeoutWithItsChildrenAndReaped() async throws {
        try await withHealthTempDirectory { directory in
            let pids = directory + "/pids"
            let started = ContinuousClock.now
            // The shell stays (it waits), so both it and its background child must be killed.
            let result = await probe.exec(command: ["/bin/sh", "-c", "sleep 60 & echo $$ $! > \(pids).tmp; mv \(pids).tmp \(pids); wait"],
                                          environment: ["PATH=/usr/bin:/bin"], timeout: .milliseconds(300))
            let elapsed = ContinuousClock.now - started
            // "timed out" (not "exited") proves the probe was killed before `sleep 60` could end.
            #expect(result == .failed("timed out after 300ms"))
            #expect(elapsed >= .milliseconds(290), "took \(elapsed)")
            let numbers = try FileSystem.read(pids).split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
            try #require(numbers.count == 2)
            // The probe's own process is reaped before the result comes back: not even a zombie.
            #expect(!FileSystem.exists("/proc/\(numbers[0])"), "the probe process is left as a zombie or alive")
            // Its background child was killed with the group (an orphan: reaped by whoever adopts it).
            let childGone = await healthEventually(2) { !processExists(numbers[1]) }
            #expect(childGone, "sleep survived the probe's timeout")
        }
    }

    @Test func checkRunsWhatTheHealthTableAsksFor() async throws {
        let server = try LoopbackSocket(listening: true)
        var spec = HealthSpec(check: .tcp)
        spec.timeout = .seconds(2)
        #expect(await probe.check(spec, port: server.port, environment: []) == .ok("connected"))
        spec.check = .exec
        spec.command = ["/bin/sh", "-c", "test \"$PORT\" = \(server.port)"]
        #expect(await probe.check(spec, port: server.port, environment: ["PORT=\(server.port)"]) == .ok("exited with code 0"))
        #expect(await probe.check(HealthSpec(check: .notify), port: server.port, environment: []) == nil)
        #expect(await probe.check(HealthSpec(check: .none), port: server.port, environment: []) == nil)
    }

    @Test func aCancelledProbeReturnsAtOnce() async throws {
        let silent = try LoopbackSocket(listening: true)
        let task = Task { await probe.http(port: silent.port, path: "/", timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        task.cancel()
        let result = await task.value
        #expect(result == .failed("cancelled"))
        // Well before the 30 s timeout: the cancellation ended it, not the timeout. (No tighter
        // bound: the machines are shared and noisy.)
        #expect(ContinuousClock.now - started < .seconds(20))
    }
}
