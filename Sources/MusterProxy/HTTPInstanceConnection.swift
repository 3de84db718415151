import CMusterShims
import Glibc
import NIOCore

/// An http-mode connection to one instance, on a relay worker. Between requests it rests in the
/// worker's `HTTPInstancePool`; while a client connection's exchange holds it (`owner`), the bytes
/// it reads go straight to that client connection, which frames them, and the client connection
/// decides when it reads (not while the client is slow to take what came before).
final class HTTPInstanceConnection: RelayTask {
    unowned let worker: RelayWorker
    let slot: Int
    let serial: UInt64
    let backend: Backend
    let idleTimeout: Int64

    private(set) var fd: Int32 = -1
    private(set) var isConnected = false
    private var connectDeadline: Int64 = .max
    /// The client connection this serves now, or is being connected for; nil while pooled.
    var owner: HTTPRelayConnection?
    /// Which of the owner's exchanges a connect under way is for.
    var connectingFor: UInt64 = 0
    /// Requests handed to this connection so far; more than one means it came from the pool.
    var requestsServed = 0
    var idleSince: Int64 = 0
    var isPooled = false
    /// Set by the owner while its client has bytes it has not taken yet.
    var readPaused = false
    private var outbox = RelayOutbox()
    private var inbound = ByteBuffer()
    private var interest: UInt32 = 0
    /// The slot was given back (closed, or handed to a tunnel); a socket() that failed has no
    /// descriptor but still held a slot.
    private var released = false


    init(worker: RelayWorker, slot: Int, serial: UInt64, backend: Backend, idleTimeout: TimeAmount) {
        self.worker = worker
        self.slot = slot
        self.serial = serial
        self.backend = backend
        self.idleTimeout = idleTimeout.nanoseconds
    }

    var isOpen: Bool { fd >= 0 }
    var hasQueuedBytes: Bool { !outbox.isEmpty }

    var sweepInterval: Int64? {
        guard isOpen else { return nil }
        return isConnected ? RelayWorker.sweepInterval(shortest: .nanoseconds(idleTimeout)) : 10_000_000
    }

    // MARK: Connecting

    /// Starts a non-blocking connect; the owner hears how it went through
    /// `instanceConnectFinished`, possibly before this returns.
    func connect(timeout: TimeAmount) {
        connectDeadline = worker.now + timeout.nanoseconds
        let address = backend.address
        fd = DescriptorReserve.instanceSocket(family: Int32(address.protocol.rawValue))
        guard fd >= 0 else {
            // EMFILE (out of descriptors, or in the reserve): the owner answers 503 without
            // blaming the instance.
            connectFailed(errno)
            return
        }
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, length in Glibc.connect(fd, pointer, socklen_t(length)) }
        if result == 0 {
            connected()
        } else if errno == EINPROGRESS {
            setInterest(RelayWorker.writable)
            worker.scheduleSweep(in: 10_000_000)
        } else {
            connectFailed(errno)
        }
    }

    private func connected() {
        isConnected = true
        connectDeadline = .max
        updateInterest()
        owner?.instanceConnectFinished(self, error: 0)
    }

    private func connectFailed(_ code: Int32) {
        let owner = self.owner
        self.owner = nil
        close()
        owner?.instanceConnectFinished(self, error: code)
    }

    // MARK: Data

    /// Queues bytes for the instance; written when the current event has been handled.
    func send(_ bytes: ByteBuffer) {
        outbox.append(bytes)
    }

    /// Writes what is queued. false: the connection failed (and is closed; the owner was told).
    @discardableResult
    func flush() -> Bool {
        guard isConnected, isOpen, !outbox.isEmpty else { return isOpen }
        let error = outbox.flush(to: fd)
        if error != 0 {
            closedUnderOwner()
            return false
        }
        return true
    }

    func handle(side: RelaySide, events: UInt32) {
        guard isOpen else { return }
        let owner = self.owner
        if !isConnected {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
            if error == 0 { connected() } else { connectFailed(error) }
            owner?.finishEvent()
            return
        }
        if events & RelayWorker.writable != 0 {
            guard flush() else {
                owner?.finishEvent()
                return
            }
        }
        if isOpen, events & ~RelayWorker.writable != 0, !readPaused || owner == nil {
            read()
        }
        if let owner = self.owner ?? owner {
            owner.finishEvent()
        } else {
            updateInterest()
        }
    }

    private func read() {
        let count = recv(fd, worker.scratch.baseAddress, worker.scratch.count, 0)
        if count > 0 {
            guard let owner else {
                // An idle instance connection has nothing to say; anything it does say means the
                // connection is no longer in a state that can be reused.
                close()
                return
            }
            inbound.clear()
            inbound.writeBytes(UnsafeRawBufferPointer(start: worker.scratch.baseAddress, count: count))
            owner.instanceBytes(inbound, from: self)
        } else if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            closedUnderOwner()
        }
    }

    /// The instance closed the connection (or it failed): closed here, and the owner told.
    private func closedUnderOwner() {
        let owner = self.owner
        self.owner = nil
        close()
        owner?.instanceClosed(self)
    }

    // MARK: epoll interest

    /// Readable unless the owner paused reads; writable while bytes wait.
    func updateInterest() {
        guard isOpen, isConnected else { return }
        var wanted: UInt32 = 0
        if !readPaused || owner == nil { wanted |= RelayWorker.readable }
        if !outbox.isEmpty { wanted |= RelayWorker.writable }
        setInterest(wanted)
    }

    private func setInterest(_ events: UInt32) {
        guard fd >= 0, events != interest else { return }
        worker.changeInterest(of: fd, slot: slot, side: .instance, from: interest, to: events)
        interest = events
    }

    // MARK: Timers and closing

    func sweep(now: Int64) {
        guard isOpen else { return }
        if !isConnected {
            if now >= connectDeadline {
                let owner = self.owner
                connectFailed(ETIMEDOUT)
                owner?.finishEvent()
            }
            return
        }
        if isPooled && (now - idleSince >= idleTimeout || backend.retired.load(ordering: .relaxed)) {
            close()
        }
    }

    func instanceChosen(_ result: Result<Backend, any Error>) {}

    /// Closes the socket and gives up the slot; queued bytes are dropped.
    func close() {
        guard !released else { return }
        released = true
        if isPooled { worker.instancePool.remove(self) }
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        interest = 0
        outbox.removeAll()
        worker.release(slot: slot)
    }

    /// The socket, for a connection that becomes a tunnel: out of the epoll set and the slot, not
    /// closed. What was queued for the instance comes first.
    func handOver() -> (fd: Int32, queued: ByteBuffer?) {
        let handed = fd
        setInterest(0)
        fd = -1
        owner = nil
        released = true
        worker.release(slot: slot)
        return (handed, outbox.take())
    }
}
