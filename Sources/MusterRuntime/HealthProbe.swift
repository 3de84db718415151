import CMusterShims
import Glibc
import MusterCore
import Synchronization

/// One health check's outcome: healthy or not, and a short reason an operator reads in status.
public struct HealthResult: Sendable, Equatable, CustomStringConvertible {
    public var healthy: Bool
    /// "connected", "HTTP 200", "HTTP 503", "connection refused", "timed out after 1s",
    /// "exited with code 1".
    public var message: String

    public init(healthy: Bool, message: String) {
        self.healthy = healthy
        self.message = message
    }

    public static func ok(_ message: String) -> HealthResult { HealthResult(healthy: true, message: message) }
    public static func failed(_ message: String) -> HealthResult { HealthResult(healthy: false, message: message) }

    public var description: String { (healthy ? "ok: " : "failed: ") + message }
}

/// One-shot readiness probes against an instance on 127.0.0.1: a TCP connect, an HTTP GET, or an
/// operator's command. Each is bounded by its timeout and costs no thread of its own: sockets are
/// non-blocking and watched by one epoll thread shared by every probe, commands are spawned through
/// the shim and their exits observed by the reaper, and the timeout is a sleeping task.
public final class HealthProbe: Sendable {
    private let loop: EpollLoop
    private let reaper: Reaper

    /// - Parameters:
    ///   - loop: the epoll thread that watches probe sockets (one for the whole daemon; the notify
    ///     sockets may share it).
    ///   - reaper: observes exec probes' exits; it must be the daemon's only reaper, or an orphan
    ///     sweep would collect a probe's exit status before the probe sees it.
    public init(loop: EpollLoop, reaper: Reaper = .shared) {
        self.loop = loop
        self.reaper = reaper
    }

    /// Runs the probe a `[health]` table asks for; nil for checks that are not probes (none,
    /// notify).
    /// - Parameters:
    ///   - environment: the instance's environment, `KEY=value` (exec probes get it, PORT included).
    ///   - credentials: the account exec probes run as (the service's); nil runs them as the daemon.
    ///   - isolation: the instance's `[isolation]`, which exec probes get too.
    ///   - instance: the instance whose mount namespace exec probes join, when `isolation` gives
    ///     it one: the probe sees the instance's private /tmp and read-only paths.
    ///   - container: the instance is a container: exec probes run inside all its namespaces.
    public func check(_ spec: HealthSpec, port: Int, environment: [String], credentials: Credentials? = nil,
                      isolation: IsolationSpec = .unconfined, instance: ProcessHandle? = nil, container: Bool = false) async -> HealthResult? {
        switch spec.check {
        case .tcp: await tcp(port: port, timeout: spec.timeout)
        case .http: await http(port: port, path: spec.path, timeout: spec.timeout)
        case .exec: await exec(command: spec.command, environment: environment, credentials: credentials, isolation: isolation,
                               instance: instance, container: container, timeout: spec.timeout)
        case .none, .notify: nil
        }
    }

    /// Healthy when a TCP connection to 127.0.0.1:`port` is established within `timeout`.
    public func tcp(port: Int, timeout: Duration) async -> HealthResult {
        await SocketProbe(loop: loop, port: port, request: nil).run(timeout: timeout)
    }

    /// Sends `GET path HTTP/1.1` to 127.0.0.1:`port`; healthy on a 2xx or 3xx status line within
    /// `timeout`. Only the status line is read; the body is never waited for.
    public func http(port: Int, path: String, timeout: Duration) async -> HealthResult {
        guard path.hasPrefix("/"), !path.contains(where: { $0 == " " || $0.isNewline || $0 == "\t" }) else {
            return .failed("bad health path \"\(path)\" (it must start with / and hold no spaces)")
        }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: muster-health\r\n" +
            "Accept: */*\r\nConnection: close\r\n\r\n"
        return await SocketProbe(loop: loop, port: port, request: Array(request.utf8)).run(timeout: timeout)
    }

    /// Runs `command` (argv; the program is looked up in the environment's PATH unless it holds a
    /// '/'); healthy when it exits with code 0 within `timeout`. At the timeout its whole process
    /// group is killed, and the result comes back only once it has been reaped. Its output goes to
    /// /dev/null.
    public func exec(command: [String], environment: [String], directory: String = "/", credentials: Credentials? = nil,
                     isolation: IsolationSpec = .unconfined, instance: ProcessHandle? = nil, container: Bool = false,
                     timeout: Duration) async -> HealthResult {
        guard let name = command.first, !name.isEmpty else { return .failed("no health command") }
        // A container's program is a path inside it (the manifest requires it absolute).
        guard let program = container ? name : Self.resolve(name, environment: environment) else {
            return .failed("\(name): command not found")
        }
        let run = CommandRun()
        var request = LaunchRequest(program: program, argv: command, environment: environment, directory: directory,
                                    credentials: credentials, isolation: isolation,
                                    mountNamespaceOf: isolation.needsMountNamespace || container ? instance : nil)
        request.joinContainerNamespaces = container
        do {
            try reaper.spawning { () throws(SpawnError) in
                let handle = try Spawner.spawn(request)
                run.started(handle)
                reaper.watch(handle) { status in run.exited(status) }
            }
        } catch {
            return .failed("\(error)")
        }
        return await Self.bounded(timeout) {
            await withTaskCancellationHandler { await run.result() } onCancel: { run.kill(reason: "cancelled") }
        } onTimeout: {
            run.kill(reason: "timed out after \(DurationText.format(timeout))")
        }
    }

    /// Runs `work`, calling `onTimeout` if it has not returned after `timeout`; `onTimeout` must
    /// make `work` return promptly.
    static func bounded(_ timeout: Duration, _ work: @escaping @Sendable () async -> HealthResult,
                        onTimeout: @escaping @Sendable () -> Void) async -> HealthResult {
        await withTaskGroup(of: HealthResult?.self) { group in
            group.addTask { await work() }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
                onTimeout()
                return nil
            }
            for await result in group {
                if let result {
                    group.cancelAll()
                    return result
                }
            }
            return .failed("cancelled")
        }
    }

    static func resolve(_ name: String, environment: [String]) -> String? {
        if name.contains("/") { return name }
        let path = environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? LaunchPlan.defaultPath
        for folder in path.split(separator: ":") where !folder.isEmpty {
            let candidate = folder + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    static func errorText(_ code: Int32) -> String {
        let text = FileSystem.errorText(code)
        return text.prefix(1).lowercased() + text.dropFirst()
    }
}

/// A connect (and, for HTTP, a request and its status line) on one non-blocking socket, driven by
/// epoll events. Every step runs under the lock, so an event, the timeout and a cancellation can
/// race freely: whichever finishes first closes the socket, and the rest find a result and stop.
private final class SocketProbe: Sendable {
    private enum Phase { case connecting, sending, receiving }

    private struct State {
        var fd: Int32 = -1
        var phase = Phase.connecting
        var sent = 0
        var received: [UInt8] = []
        var result: HealthResult?
        var continuation: CheckedContinuation<HealthResult, Never>?
    }

    private let loop: EpollLoop
    private let port: Int
    /// nil: a TCP probe, done once connected.
    private let request: [UInt8]?
    private let state = Mutex(State())
    private static let statusLineLimit = 1024

    init(loop: EpollLoop, port: Int, request: [UInt8]?) {
        self.loop = loop
        self.port = port
        self.request = request
    }

    func run(timeout: Duration) async -> HealthResult {
        await HealthProbe.bounded(timeout) {
            await withTaskCancellationHandler {
                await withCheckedContinuation { self.start($0) }
            } onCancel: {
                self.step { _ in .failed("cancelled") }
            }
        } onTimeout: {
            self.step { s in
                .failed("timed out after \(DurationText.format(timeout))" + (s.phase == .receiving ? " waiting for a response" : ""))
            }
        }
    }

    private func start(_ continuation: CheckedContinuation<HealthResult, Never>) {
        let early = state.withLock { s -> HealthResult? in
            if let result = s.result { return result }
            s.continuation = continuation
            return nil
        }
        if let early { return continuation.resume(returning: early) }
        step { s in self.open(&s) }
    }

    /// Runs `body` under the lock unless a result is in; a result it returns is final: the socket is
    /// closed and the waiter resumed (after the lock is released).
    private func step(_ body: (inout State) -> HealthResult?) {
        let wake = state.withLock { s -> (CheckedContinuation<HealthResult, Never>, HealthResult)? in
            guard s.result == nil, let result = body(&s) else { return nil }
            s.result = result
            if s.fd >= 0 {
                loop.remove(s.fd)
                close(s.fd)
                s.fd = -1
            }
            guard let continuation = s.continuation else { return nil }
            s.continuation = nil
            return (continuation, result)
        }
        if let (continuation, result) = wake { continuation.resume(returning: result) }
    }

    private func open(_ s: inout State) -> HealthResult? {
        guard (1...65_535).contains(port) else { return .failed("no port") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failed("socket: \(HealthProbe.errorText(errno))") }
        s.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc < 0 && errno != EINPROGRESS { return .failed(HealthProbe.errorText(errno)) }
        return watch(&s, events: UInt32(EPOLLOUT.rawValue))
    }

    private func watch(_ s: inout State, events: UInt32) -> HealthResult? {
        loop.remove(s.fd)
        do {
            try loop.add(s.fd, events: events) { [self] events in self.step { s in self.ready(&s, events: events) } }
        } catch {
            return .failed(error.description)
        }
        return nil
    }

    /// The socket is writable or readable, or the event is stale (a descriptor number reused after
    /// another probe closed it): every call below is non-blocking and tolerates a spurious wake-up.
    private func ready(_ s: inout State, events: UInt32) -> HealthResult? {
        guard s.fd >= 0 else { return nil }
        switch s.phase {
        case .connecting:
            var code: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &code, &length) < 0 { code = errno }
            if code != 0 { return .failed(HealthProbe.errorText(code)) }
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let connected = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(s.fd, $0, &peerLength) == 0 }
            }
            guard connected else { return nil }
            guard request != nil else { return .ok("connected") }
            s.phase = .sending
            return send(&s)
        case .sending:
            return send(&s)
        case .receiving:
            return receive(&s)
        }
    }

    private func send(_ s: inout State) -> HealthResult? {
        guard let request else { return nil }
        while s.sent < request.count {
            let n = request.withUnsafeBytes { Glibc.send(s.fd, $0.baseAddress! + s.sent, $0.count - s.sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
                return .failed("send: \(HealthProbe.errorText(errno))")
            }
            s.sent += n
        }
        s.phase = .receiving
        return watch(&s, events: UInt32(EPOLLIN.rawValue))
    }

    private func receive(_ s: inout State) -> HealthResult? {
        var chunk = [UInt8](repeating: 0, count: Self.statusLineLimit)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(s.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
                return .failed(HealthProbe.errorText(errno))
            }
            if n == 0 {
                return s.received.isEmpty ? .failed("connection closed without a response") : .failed("not an HTTP response")
            }
            s.received.append(contentsOf: chunk[0..<n])
            if let result = Self.statusResult(s.received) { return result }
            if s.received.count >= Self.statusLineLimit { return .failed("not an HTTP response") }
        }
    }

    /// "HTTP/1.1 503 Service Unavailable" → failed "HTTP 503"; nil until a whole line is in.
    static func statusResult(_ bytes: [UInt8]) -> HealthResult? {
        guard let end = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = String(decoding: bytes[..<end], as: UTF8.self)
        let fields = line.split(separator: " ", maxSplits: 2)
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/"), fields[1].count == 3, let code = Int(fields[1]) else {
            return .failed("not an HTTP response")
        }
        return HealthResult(healthy: (200..<400).contains(code), message: "HTTP \(code)")
    }
}

/// An exec probe's process from spawn to reap. The exit arrives on the reaper's thread, possibly
/// before anyone waits for it.
private final class CommandRun: Sendable {
    private struct State {
        var handle: ProcessHandle?
        var status: ExitStatus?
        /// Why it was killed (timeout, cancellation): the result, whatever the exit status says.
        var killedBecause: String?
        var continuation: CheckedContinuation<HealthResult, Never>?
    }

    private let state = Mutex(State())

    func started(_ handle: ProcessHandle) {
        state.withLock { $0.handle = handle }
    }

    func exited(_ status: ExitStatus) {
        let wake = state.withLock { s -> (CheckedContinuation<HealthResult, Never>, HealthResult)? in
            s.status = status
            s.handle = nil
            guard let continuation = s.continuation else { return nil }
            s.continuation = nil
            return (continuation, Self.result(s))
        }
        if let (continuation, result) = wake { continuation.resume(returning: result) }
    }

    func result() async -> HealthResult {
        await withCheckedContinuation { continuation in
            let done = state.withLock { s -> HealthResult? in
                if s.status != nil { return Self.result(s) }
                s.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Kills the probe's process group (a shell's children too); the result follows its reaping.
    func kill(reason: String) {
        state.withLock { s in
            guard s.status == nil, s.killedBecause == nil, let handle = s.handle else { return }
            s.killedBecause = reason
            // The whole group: a shell probe's children too.
            handle.signalGroup(SIGKILL)
            handle.signal(SIGKILL)
        }
    }

    private static func result(_ s: State) -> HealthResult {
        if let reason = s.killedBecause { return .failed(reason) }
        guard let status = s.status else { return .failed("no exit status") }
        return HealthResult(healthy: status == .exited(code: 0), message: status.description)
    }
}
