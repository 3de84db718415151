import CMusterShims
import Glibc
import MusterCore
import Synchronization

/// Observes process exits through pidfds on one thread, and reaps the orphans that land on the
/// daemon as a child subreaper (double-forked grandchildren of services).
///
/// Spawning and the orphan sweep share one lock: between clone and registration a child is not yet
/// known, and the sweep must not reap it as an orphan and lose its exit status. Reaping is a
/// property of the whole process, so there is exactly one reaper: `Reaper.shared`.
public final class Reaper: Sendable {
    public static let shared = Reaper()

    public typealias ExitHandler = @Sendable (ExitStatus) -> Void

    private struct Watch {
        let handle: ProcessHandle
        let onExit: ExitHandler
    }

    private let watched = Mutex<[Int32: Watch]>([:])
    private let spawnLock = Mutex<Void>(())
    private let loop: EpollLoop

    private init() {
        // Orphans give no notice when they die (the sweeps after each exit and during cgroup
        // clean-up catch most); a sweep every 5 s bounds how long the rest linger as zombies.
        // Each sweep walks all children in the kernel, so once a second was a fifth of the
        // daemon's idle CPU with 200 instances.
        loop = EpollLoop(name: "muster-reaper", idleIntervalMilliseconds: 5000)
        loop.setIdleHandler { [weak self] in self?.sweepOrphans() }
    }

    /// Makes this process the reaper of its descendants' orphans.
    public static func becomeSubreaper() -> Bool { muster_set_child_subreaper() == 0 }

    /// Runs `body` (a spawn) so that no orphan sweep runs at the same time, and registers what it
    /// started before the sweep can see it.
    public func spawning<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try spawnLock.withLock { _ throws(E) -> T in try body() }
    }

    /// Calls `onExit` once, on the reaper's thread, when the process ends.
    public func watch(_ handle: ProcessHandle, onExit: @escaping ExitHandler) {
        guard let fd = handle.pidfd else { return }
        watched.withLock { $0[handle.pid] = Watch(handle: handle, onExit: onExit) }
        do {
            try loop.add(fd) { [self] _ in self.processReady(pid: handle.pid, fd: fd) }
        } catch {
            // Cannot happen for a fresh pidfd; if it did, poll once so the exit is not lost.
            processReady(pid: handle.pid, fd: fd)
        }
    }

    private func processReady(pid: Int32, fd: Int32) {
        guard let watch = watched.withLock({ $0[pid] }) else { loop.remove(fd); return }
        loop.remove(fd)
        guard let status = spawnLock.withLock({ _ in watch.handle.reap() }) else {
            // Spurious wake-up: watch again.
            try? loop.add(fd) { [self] _ in self.processReady(pid: pid, fd: fd) }
            return
        }
        watched.withLock { _ = $0.removeValue(forKey: pid) }
        watch.onExit(status)
        sweepOrphans()
    }

    /// Reaps exited children that nobody watches: orphans re-parented to the subreaper.
    public func sweepOrphans() {
        spawnLock.withLock { _ in
            while true {
                let pid = muster_peek_exited_child()
                guard pid > 0 else { return }
                // A watched child is reaped through its pidfd by its own handler.
                if watched.withLock({ $0[pid] != nil }) { return }
                _ = muster_reap(pid)
            }
        }
    }
}
