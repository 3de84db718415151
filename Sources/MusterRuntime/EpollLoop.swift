import CMusterShims
import Glibc
import MusterProxy
import Synchronization

/// One thread waiting on many file descriptors with epoll, calling each one's handler when it is
/// ready. Used twice: for process exits (pidfds) and for instance output (pipes). Handlers run on
/// the loop's thread, one at a time.
public final class EpollLoop: Sendable {
    public typealias Handler = @Sendable (_ events: UInt32) -> Void

    private let epollFD: Int32
    private let handlers = Mutex<[Int32: Handler]>([:])
    private let idleInterval: Int32
    private let idleHandler = Mutex<(@Sendable () -> Void)?>(nil)

    /// - Parameters:
    ///   - name: the thread's name, as `top -H` shows it.
    ///   - idleIntervalMilliseconds: how often the idle handler runs (-1: never).
    public init(name: String, idleIntervalMilliseconds: Int32 = -1) {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1: \(FileSystem.errorText(errno))")
        idleInterval = idleIntervalMilliseconds
        // The loop lives as long as the daemon: the thread keeps it alive on purpose.
        NativeThread.start(name: name) { self.run() }
    }

    /// Runs `handler` on the loop's thread every idle interval.
    public func setIdleHandler(_ handler: @escaping @Sendable () -> Void) {
        idleHandler.withLock { $0 = handler }
    }

    /// Starts watching `fd` for `events` (EPOLLIN by default; level-triggered).
    public func add(_ fd: Int32, events: UInt32 = UInt32(EPOLLIN.rawValue), handler: @escaping Handler) throws(FileSystem.Failure) {
        handlers.withLock { $0[fd] = handler }
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        if epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) < 0 {
            let code = errno
            handlers.withLock { $0[fd] = nil }
            throw FileSystem.Failure(operation: "epoll_ctl add", path: "fd \(fd)", errno: code)
        }
    }

    /// Stops watching `fd`; its handler is not called after this returns (except when called from
    /// the handler itself, which is the usual place).
    public func remove(_ fd: Int32) {
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        handlers.withLock { $0[fd] = nil }
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        var lastIdle = MonotonicMilliseconds.now()
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, Int32($0.count), idleInterval) }
            if count < 0 {
                if errno == EINTR { continue }
                fatalError("epoll_wait: \(FileSystem.errorText(errno))")
            }
            for i in 0..<Int(count) {
                let fd = events[i].data.fd
                if let handler = handlers.withLock({ $0[fd] }) { handler(events[i].events) }
            }
            if idleInterval >= 0, let onIdle = idleHandler.withLock({ $0 }) {
                let now = MonotonicMilliseconds.now()
                if count == 0 || now - lastIdle >= Int64(idleInterval) {
                    lastIdle = now
                    onIdle()
                }
            }
        }
    }
}

enum MonotonicMilliseconds {
    static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
