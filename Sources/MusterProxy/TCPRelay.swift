import CMusterShims
import Glibc
import NIOCore
import Synchronization

/// The threads that accept on every proxy listener and move tcp-mode bytes: one epoll loop per
/// core, shared by all services, outside NIO.
///
/// Why not NIO for tcp mode: once both sockets are connected the whole job is "read from one,
/// write to the other", and NIO's channel pipeline (event dispatch along the handler chain, its
/// write queue, buffer retain/release) cost about 4 µs a request on top of the two system calls,
/// which left Muster at 0.85× HAProxy's tcp throughput. This loop does what HAProxy does: a read
/// into a per-thread buffer and a write straight to the other socket, memory only for bytes the
/// other side could not take yet, epoll interest changed only when backpressure starts or ends.
///
/// Each listener is in every worker's epoll set with `EPOLLEXCLUSIVE`, so the kernel wakes one
/// worker per connection and the connection stays on that worker for life. http-mode connections
/// are handed to NIO right after accept (`HTTPProxy.adopt`).
final class TCPRelay: Sendable {
    /// Started on first use; lives as long as the process (the threads sleep in `epoll_wait` with
    /// no timeout while nothing is open).
    static let shared = TCPRelay(threads: max(1, System.coreCount))

    let workers: [RelayWorker]

    private init(threads: Int) {
        workers = (0..<threads).map { RelayWorker(name: "muster-relay-\($0)") }
    }

    /// Starts accepting on `listener` on every worker.
    func add(_ listener: ProxyListener) {
        for worker in workers { worker.post(.addListener(listener)) }
    }

    /// Stops accepting on `listener`: returns once no worker will touch its descriptor again, so
    /// the caller may close it.
    func remove(_ listener: ProxyListener) async {
        for worker in workers {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                worker.post(.removeListener(listener, done))
            }
        }
    }
}

/// One relay thread: its epoll set, the connections it owns, and a mailbox other threads post to.
/// Everything but the mailbox is touched only by the worker's own thread.
final class RelayWorker: @unchecked Sendable {
    enum Command {
        case addListener(ProxyListener)
        case removeListener(ProxyListener, CheckedContinuation<Void, Never>)
        /// A queued connection's wait for a ready instance ended (`BackendSet.waitForReady`).
        case instanceChosen(slot: Int, serial: UInt64, Result<Backend, any Error>)
    }

    /// epoll tags: the mailbox, a listener (by id) or one side of a connection (slot, side).
    private enum Tag {
        static let mailbox: UInt64 = 0
        static let listenerKind: UInt64 = 1 << 62
        static let connectionKind: UInt64 = 2 << 62
        static let kindMask: UInt64 = 3 << 62
    }

    let epollFD: Int32
    private let wakeFD: Int32
    private let mailbox = Mutex<[Command]>([])

    // Thread-owned state.
    private var listeners: [UInt64: ProxyListener] = [:]
    /// Listeners taken out of the epoll set after an accept failed for want of descriptors or
    /// memory, and when to try again (a level-triggered listener would otherwise spin).
    private var pausedListeners: [UInt64: Int64] = [:]
    private var connections: [RelayConnection?] = []
    private var freeSlots: [Int] = []
    /// Slots closed during the current batch of events; reused only after it, so a later event in
    /// the same batch cannot reach a new connection through an old tag.
    private var closedSlots: [Int] = []
    private var nextSerial: UInt64 = 1
    /// The read buffer every connection of this worker shares: bytes go straight on to the other
    /// socket, and only what it cannot take yet is copied into a buffer of the connection's own.
    let scratch: UnsafeMutableRawBufferPointer
    /// CLOCK_MONOTONIC_COARSE after the last `epoll_wait`, in nanoseconds: connections stamp
    /// their last traffic with it, so the data path reads no clock.
    private(set) var now: Int64 = 0
    private var nextSweep: Int64 = .max

    static let scratchSize = 64 * 1024

    init(name: String) {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1: \(String(cString: strerror(errno)))")
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(wakeFD >= 0, "eventfd: \(String(cString: strerror(errno)))")
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        var event = epoll_event()
        event.events = UInt32(EPOLLIN.rawValue)
        event.data.u64 = Tag.mailbox
        precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) == 0)
        NativeThread.start(name: name) { self.run() }
    }

    /// Hands `command` to the worker's thread and wakes it.
    func post(_ command: Command) {
        mailbox.withLock { $0.append(command) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    // MARK: The loop

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        while true {
            let timeout: Int32
            if nextSweep == .max {
                timeout = -1
            } else {
                let wait = (nextSweep - Self.coarseNow() + 999_999) / 1_000_000
                timeout = Int32(clamping: max(0, wait))
            }
            let count = epoll_wait(epollFD, events, Int32(capacity), timeout)
            if count < 0 {
                if errno == EINTR { continue }
                fatalError("epoll_wait: \(String(cString: strerror(errno)))")
            }
            now = Self.coarseNow()
            for i in 0..<Int(count) {
                let tag = events[i].data.u64
                let flags = events[i].events
                switch tag & Tag.kindMask {
                case Tag.connectionKind:
                    let slot = Int((tag & ~Tag.kindMask) >> 1)
                    connections[slot]?.handle(side: tag & 1 == 0 ? .client : .instance, events: flags)
                case Tag.listenerKind:
                    if let listener = listeners[tag] { accept(on: listener, tag: tag) }
                default:
                    drainMailbox()
                }
            }
            if !closedSlots.isEmpty {
                freeSlots.append(contentsOf: closedSlots)
                closedSlots.removeAll(keepingCapacity: true)
            }
            if now >= nextSweep { sweep() }
        }
    }

    private func drainMailbox() {
        var count: UInt64 = 0
        _ = read(wakeFD, &count, 8)
        let commands = mailbox.withLock { box in
            defer { box.removeAll(keepingCapacity: true) }
            return box
        }
        for command in commands {
            switch command {
            case .addListener(let listener):
                let tag = Tag.listenerKind | listener.id
                listeners[tag] = listener
                watchListener(listener, tag: tag)
            case .removeListener(let listener, let done):
                let tag = Tag.listenerKind | listener.id
                if listeners.removeValue(forKey: tag) != nil, pausedListeners.removeValue(forKey: tag) == nil {
                    _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, listener.fd, nil)
                }
                done.resume()
            case .instanceChosen(let slot, let serial, let result):
                guard slot < connections.count, let connection = connections[slot], connection.serial == serial else { continue }
                connection.instanceChosen(result)
            }
        }
    }

    private func watchListener(_ listener: ProxyListener, tag: UInt64) {
        var event = epoll_event()
        event.events = UInt32(EPOLLIN.rawValue) | EPOLLEXCLUSIVE.rawValue
        event.data.u64 = tag
        if epoll_ctl(epollFD, EPOLL_CTL_ADD, listener.fd, &event) != 0 {
            listener.context.logger.error("cannot watch listener", metadata: ["error": "\(String(cString: strerror(errno)))"])
        }
    }

    // MARK: Accepting

    private func accept(on listener: ProxyListener, tag: UInt64) {
        // A bounded batch: other connections on this worker get their turn in between.
        for _ in 0..<64 {
            let fd = muster_accept_nonblocking(listener.fd)
            if fd >= 0 {
                listener.admit(fd, worker: self)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: stop accepting here for a moment. Connections
                // wait in the backlog; the ones already open go on.
                listener.context.logger.warning(
                    "cannot accept: pausing this listener for 100 ms",
                    metadata: ["error": "\(String(cString: strerror(errno)))"])
                _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, listener.fd, nil)
                pausedListeners[tag] = now + 100_000_000
                scheduleSweep(in: 100_000_000)
                return
            default:
                listener.context.logger.warning("accept failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
                return
            }
        }
    }

    // MARK: Connections

    /// Takes over an accepted tcp-mode client socket.
    func relay(client fd: Int32, proxy: ProxyContext, settings: ProxySettings) {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = connections.count
            connections.append(nil)
        }
        let connection = RelayConnection(
            worker: self, slot: slot, serial: nextSerial, client: fd, proxy: proxy, settings: settings)
        nextSerial &+= 1
        connections[slot] = connection
        scheduleSweep(in: Self.sweepInterval(idle: settings.idleTimeout))
        connection.start()
    }

    /// Called by a connection once both of its sockets are closed.
    func release(slot: Int) {
        connections[slot] = nil
        closedSlots.append(slot)
    }

    func tag(slot: Int, side: RelayConnection.Side) -> UInt64 {
        Tag.connectionKind | UInt64(slot) << 1 | (side == .client ? 0 : 1)
    }

    // MARK: Timers

    /// Every sweep reports byte counts, closes idle connections, fails connects past their
    /// timeout and resumes paused listeners. Sweeps run only while there is something to sweep.
    private func sweep() {
        nextSweep = .max
        var interval: Int64 = .max
        for connection in connections {
            guard let connection else { continue }
            connection.sweep(now: now)
            if connection.isOpen { interval = min(interval, Self.sweepInterval(idle: connection.settings.idleTimeout)) }
        }
        for (tag, until) in pausedListeners {
            if now >= until, let listener = listeners[tag] {
                pausedListeners[tag] = nil
                watchListener(listener, tag: tag)
            } else {
                interval = min(interval, max(until - now, 1_000_000))
            }
        }
        if interval != .max { scheduleSweep(in: interval) }
    }

    func scheduleSweep(in nanoseconds: Int64) {
        nextSweep = min(nextSweep, Self.coarseNow() + nanoseconds)
    }

    /// A quarter of the idle timeout (so a connection closes within 1¼ idle timeouts of its last
    /// byte), between 10 ms and 250 ms (which also bounds how late a connect timeout fires and
    /// how stale the byte counters get).
    static func sweepInterval(idle: TimeAmount) -> Int64 {
        min(max(idle.nanoseconds / 4, 10_000_000), 250_000_000)
    }

    static func coarseNow() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}
