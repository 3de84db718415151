import Atomics
import Glibc

/// The descriptors the proxy leaves to the rest of musterd.
///
/// A process that runs out of descriptors fails far beyond its proxy: health checks cannot open
/// a socket (and would restart healthy instances), log files and cgroup files cannot be opened,
/// and libdispatch's worker monitor crashes the whole process when it cannot open
/// `/proc/<tid>/stat` (swift-corelibs-libdispatch, `_dispatch_workq_count_runnable_workers`:
/// "workq: registered worker exited prematurely"). A flood of connections must never get there.
///
/// No count is kept: the kernel gives out the lowest free descriptor number, so a socket numbered
/// n means n descriptors below it are open. The proxy closes any socket it gets (accepted or for
/// an instance) numbered at or above `ceiling`, so all of the proxy's own are below it and the
/// `limit - ceiling` numbers above are left for the daemon. HAProxy keeps the same margin by
/// deriving its maxconn from the descriptor limit.
public enum DescriptorReserve {
    /// Descriptors kept free for the daemon under a soft limit of `limit`: a sixteenth, at least 256.
    public static func reserve(forLimit limit: Int) -> Int {
        max(256, limit / 16)
    }

    /// The lowest descriptor number the proxy may not keep. `Int32.max` until `configure` ran.
    public static func ceiling(forLimit limit: Int) -> Int32 {
        Int32(clamping: max(limit - reserve(forLimit: limit), limit / 2))
    }

    private static let current = ManagedAtomic<Int32>(.max)

    /// Called once musterd's own soft limit is final (after raising it).
    public static func configure(limit: Int) {
        current.store(ceiling(forLimit: limit), ordering: .relaxed)
    }

    public static var ceiling: Int32 { current.load(ordering: .relaxed) }

    /// false: `fd` is in the reserve; the proxy must close it.
    static func admits(_ fd: Int32) -> Bool {
        fd < current.load(ordering: .relaxed)
    }

    /// A non-blocking stream socket of `family` for a connection to an instance, or -1 with
    /// errno set; one the reserve refuses is closed and reported as EMFILE, the same as running
    /// out, which callers treat as musterd's trouble rather than the instance's.
    static func instanceSocket(family: Int32) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, !admits(fd) else { return fd }
        Glibc.close(fd)
        errno = EMFILE
        return -1
    }
}
