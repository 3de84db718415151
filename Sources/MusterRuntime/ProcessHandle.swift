import CMusterShims
import Glibc
import MusterCore
import Synchronization

/// A started process, held by its pidfd. Signals go through `pidfd_send_signal`, so a signal can
/// only ever reach this process: once it has been reaped the handle is closed, and a PID the kernel
/// has since given to someone else is never addressed.
public final class ProcessHandle: Sendable {
    public let pid: Int32
    private let descriptor: Mutex<Int32>

    public init(pid: Int32, pidfd: Int32) {
        self.pid = pid
        self.descriptor = Mutex(pidfd)
    }

    /// The pidfd while the process is not yet reaped; nil after.
    public var pidfd: Int32? { descriptor.withLock { $0 >= 0 ? $0 : nil } }

    /// Runs `body` with the pidfd (nil once reaped), which stays open until `body` returns.
    func withPidfd<R, E: Error>(_ body: (Int32?) throws(E) -> R) throws(E) -> R {
        try descriptor.withLock { fd throws(E) -> R in try body(fd >= 0 ? fd : nil) }
    }

    /// Sends `signal`. Returns false when the process is already gone (reaped or exited).
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        descriptor.withLock { fd in fd >= 0 && muster_pidfd_send_signal(fd, signal) == 0 }
    }

    /// Sends `signal` to the process group this process leads (the spawn shim makes every child a
    /// session and group leader). Only while it is not yet reaped: reaping takes the same lock, and
    /// until then the group id cannot have been given to anyone else.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        descriptor.withLock { fd in fd >= 0 && Glibc.kill(-pid, signal) == 0 }
    }

    /// Collects the exit status if the process has ended, and closes the pidfd.
    func reap() -> ExitStatus? {
        descriptor.withLock { fd -> ExitStatus? in
            guard fd >= 0 else { return nil }
            var code: Int32 = 0, status: Int32 = 0
            let rc = muster_pidfd_wait(fd, 1, &code, &status)
            if rc == 1 { return nil }
            close(fd)
            fd = -1
            if rc < 0 { return .killed(signal: SIGKILL, coreDumped: false) }
            switch code {
            case Int32(CLD_EXITED): return .exited(code: status)
            case Int32(CLD_DUMPED): return .killed(signal: status, coreDumped: true)
            default: return .killed(signal: status, coreDumped: false)
            }
        }
    }

    deinit {
        let fd = descriptor.withLock { $0 }
        if fd >= 0 { close(fd) }
    }
}
