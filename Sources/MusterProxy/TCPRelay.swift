import Atomics
import CMusterShims
import Glibc
import NIOCore
import Synchronization

/// The threads that accept on every proxy listener and move the bytes of both modes: one epoll
/// loop per core, shared by all services, outside NIO.
///
/// Why not NIO for the data path: once both sockets are connected the job is "read from one,
/// write to the other" (with HTTP framing in http mode), and NIO's channel pipeline (event
/// dispatch along the handler chain, its write queue, buffer retain/release, futures) cost about
/// 4 µs a request on top of the system calls, which left Muster at 0.85× HAProxy's throughput in
/// both modes. This loop does what HAProxy does: a read into a per-thread buffer, the bytes written
/// on to the other socket when the event is handled, memory only for bytes the other side could
/// not take yet, epoll interest changed only when backpressure starts or ends.
///
/// Each listener is in every worker's epoll set with `EPOLLEXCLUSIVE`, so the kernel wakes one
/// worker per connection and the connection (and, in http mode, the instance connections it
/// borrows from the worker's pool) stays on that worker for life.
final class TCPRelay: Sendable {
    /// Started on first use; lives as long as the process (the threads sleep in `epoll_wait` with
    /// no timeout while nothing is open).
    static let shared = TCPRelay(threads: max(1, System.coreCount))

    let workers: [RelayWorker]

    private init(threads: Int) {
        workers = (0..<threads).map { RelayWorker(name: "muster-relay-\($0)") }
    }

    /// The worker with the fewest open client connections, `accepting` on a tie: the worker the
    /// kernel woke for an accept is whichever was idle at that instant, which under load piles
    /// long-lived connections onto one thread (60/40 on 64 keep-alive connections, seen as a worse
    /// p99), so connections are spread by count instead.
    func leastLoaded(preferring accepting: RelayWorker) -> RelayWorker {
        var chosen = accepting
        var lowest = accepting.clientCount.load(ordering: .relaxed)
        for worker in workers where worker !== accepting {
            let count = worker.clientCount.load(ordering: .relaxed)
            if count < lowest {
                chosen = worker
                lowest = count
            }
        }
        return chosen
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

/// Which socket of a slot an epoll event is for.
enum RelaySide { case client, instance }

/// What a worker's slot holds: a tcp connection (`RelayConnection`), an http client connection
/// (`HTTPRelayConnection`) or an http connection to an instance (`HTTPInstanceConnection`).
/// Only the worker's thread calls these.
protocol RelayTask: AnyObject {
    /// Tells a slot's occupants apart over time (mailbox answers name slot and serial).
    var serial: UInt64 { get }
    /// How often this task needs the worker's sweep (timeouts, counters); nil when it needs none.
    var sweepInterval: Int64? { get }
    func handle(side: RelaySide, events: UInt32)
    func sweep(now: Int64)
    /// The answer to a wait for a ready instance (`BackendSet.waitForReady`).
    func instanceChosen(_ result: Result<Backend, any Error>)
}

/// One relay thread: its epoll set, the connections it owns, and a mailbox other threads post to.
/// Everything but the mailbox is touched only by the worker's own thread.
final class RelayWorker: @unchecked Sendable {
    enum Command {
        case addListener(ProxyListener)
        /// A client connection another worker accepted, for this one to serve.
        case serve(client: Int32, ProxyListener, ProxySettings, reject: Bool)
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
    /// Client connections this worker serves (read by other workers to spread new ones).
    let clientCount = ManagedAtomic(0)
    private let mailbox = Mutex<[Command]>([])

    // Thread-owned state.
    private var listeners: [UInt64: ProxyListener] = [:]
    /// Listeners taken out of the epoll set after an accept failed for want of descriptors or
    /// memory, and when to try again (a level-triggered listener would otherwise spin).
    private var pausedListeners: [UInt64: Int64] = [:]
    private var lastPauseLog: Int64 = .min / 2
    private var pausesSinceLastLog = 0
    private var connections: [(any RelayTask)?] = []
    /// Idle http-mode connections to instances, for this worker's client connections.
    private(set) lazy var instancePool = HTTPInstancePool(worker: self)
    private var freeSlots: [Int] = []
    /// Slots closed during the current batch of events; reused only after it, so a later event in
    /// the same batch cannot reach a new connection through an old tag.
    private var closedSlots: [Int] = []
    private var nextSerial: UInt64 = 1
    private var deferred: [HTTPRelayConnection] = []
    private var completing: [HTTPRelayConnection] = []
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
            completeDeferred()
            if !closedSlots.isEmpty {
                freeSlots.append(contentsOf: closedSlots)
                closedSlots.removeAll(keepingCapacity: true)
            }
            if now >= nextSweep {
                sweep()
                completeDeferred()
            }
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
            case .serve(let fd, let listener, let settings, let reject):
                serve(client: fd, listener: listener, settings: settings, reject: reject)
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
                guard DescriptorReserve.admits(fd) else {
                    // The rest of musterd's descriptors are its own (see DescriptorReserve):
                    // this connection is refused and the others wait in the backlog.
                    Glibc.close(fd)
                    listener.context.counters.rejectedConnections.wrappingIncrement(ordering: .relaxed)
                    pause(listener, tag: tag, because: "descriptor \(fd) is at or above \(DescriptorReserve.ceiling), the ones kept for musterd")
                    return
                }
                listener.admit(fd, worker: self)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                pause(listener, tag: tag, because: String(cString: strerror(errno)))
                return
            default:
                listener.context.logger.warning("accept failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
                return
            }
        }
    }

    /// Out of descriptors or memory: stops accepting on `listener` for 100 ms. Connections wait
    /// in the backlog; the ones already open go on. Said at most once every 10 s per worker, as
    /// a flood would otherwise log ten lines a second.
    private func pause(_ listener: ProxyListener, tag: UInt64, because reason: String) {
        pausesSinceLastLog += 1
        if now - lastPauseLog >= 10_000_000_000 {
            listener.context.logger.warning(
                "cannot accept: pausing this listener for 100 ms",
                metadata: ["error": "\(reason)", "pauses": "\(pausesSinceLastLog)"])
            lastPauseLog = now
            pausesSinceLastLog = 0
        }
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, listener.fd, nil)
        pausedListeners[tag] = now + 100_000_000
        scheduleSweep(in: 100_000_000)
    }

    // MARK: Connections

    /// Puts the task `make` builds into a free slot (its epoll tags name the slot).
    @discardableResult
    func occupy<Task: RelayTask>(_ make: (_ slot: Int, _ serial: UInt64) -> Task) -> Task {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = connections.count
            connections.append(nil)
        }
        let task = make(slot, nextSerial)
        nextSerial &+= 1
        connections[slot] = task
        if let interval = task.sweepInterval { scheduleSweep(in: interval) }
        return task
    }

    /// Takes over an accepted client socket (already counted against `max_connections` and in
    /// this worker's `clientCount`, unless a tcp one that is closed at once); `reject`: over that
    /// limit.
    func serve(client fd: Int32, listener: ProxyListener, settings: ProxySettings, reject: Bool) {
        let proxy = listener.context
        switch settings.mode {
        case .tcp where reject:
            Glibc.close(fd)
            proxy.counters.openConnections.wrappingDecrement(ordering: .relaxed)
        case .tcp:
            occupy { slot, serial in
                RelayConnection(worker: self, slot: slot, serial: serial, client: fd, proxy: proxy, settings: settings)
            }.start()
        case .http:
            occupy { slot, serial in
                HTTPRelayConnection(worker: self, slot: slot, serial: serial, client: fd, proxy: proxy, settings: settings)
            }.start(reject: reject)
        }
    }

    /// A client connection of this worker closed.
    func clientClosed() {
        clientCount.wrappingDecrement(ordering: .relaxed)
    }

    /// Called by a task once its sockets are closed (or handed to another task).
    func release(slot: Int) {
        connections[slot] = nil
        closedSlots.append(slot)
    }

    func tag(slot: Int, side: RelaySide) -> UInt64 {
        Tag.connectionKind | UInt64(slot) << 1 | (side == .client ? 0 : 1)
    }

    static let readable = UInt32(EPOLLIN.rawValue)
    static let writable = UInt32(EPOLLOUT.rawValue)

    /// Moves a connection's socket from the epoll interest `current` to `wanted` (0: out of the
    /// set). A socket with nothing to wait for leaves the set: a hang-up it reports meanwhile
    /// could not be acted on and would wake the loop again and again.
    func changeInterest(of fd: Int32, slot: Int, side: RelaySide, from current: UInt32, to wanted: UInt32) {
        guard fd >= 0, wanted != current else { return }
        if wanted == 0 {
            _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        } else {
            var event = epoll_event()
            event.events = wanted
            event.data.u64 = tag(slot: slot, side: side)
            _ = epoll_ctl(epollFD, current == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event)
        }
    }

    // MARK: Deferred writes

    /// http connections whose event left bytes to write or changed what they wait for: they
    /// write and re-arm once the whole batch of events has been read (as HAProxy does), so the
    /// peers woken by those writes do not preempt this thread while events are still waiting,
    /// and more events gather for the next `epoll_wait`.
    func deferCompletion(of connection: HTTPRelayConnection) {
        deferred.append(connection)
    }

    private func completeDeferred() {
        // Completing can queue more (a failed write to an instance ends in a 502 to write).
        while !deferred.isEmpty {
            swap(&deferred, &completing)
            for connection in completing { connection.completeEvent() }
            completing.removeAll(keepingCapacity: true)
        }
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
            if let wanted = connection.sweepInterval { interval = min(interval, wanted) }
        }
        instancePool.purge(now: now)
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

    /// A quarter of the shortest timeout (so a connection closes within 1¼ idle timeouts of its
    /// last byte), between 10 ms and 250 ms (which also bounds how late a connect timeout fires
    /// and how stale the byte counters get).
    static func sweepInterval(shortest timeout: TimeAmount) -> Int64 {
        min(max(timeout.nanoseconds / 4, 10_000_000), 250_000_000)
    }

    static func coarseNow() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}
