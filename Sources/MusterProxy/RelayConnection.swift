import CMusterShims
import Glibc
import NIOCore

/// One tcp-mode connection on a relay worker: picks the instance (round robin, queueing while none
/// is ready), connects with retries, then moves bytes both ways with backpressure and half-close,
/// and keeps the books (in-flight, bytes, connect latency and failures, idle timeout).
///
/// Only its worker's thread touches it.
final class RelayConnection: RelayTask {
    typealias Side = RelaySide

    private enum Phase {
        /// No instance is ready; `BackendSet.waitForReady` will answer through the worker's mailbox.
        case waiting
        /// A non-blocking connect to `backend` is under way.
        case connecting
        case relaying
        case closed
    }

    /// Bytes one way: read from `source`, written to the other side. `pending` holds what the
    /// other side could not take yet; while it does, the source is not read (backpressure).
    /// A class, not a struct: the data path hands a direction to helpers that also settle the
    /// books on the whole connection, and an `inout` struct field would overlap those accesses.
    private final class Direction {
        var pending: UnsafeMutableRawPointer?
        var pendingStart = 0
        var pendingEnd = 0
        /// The source sent EOF.
        var sourceEnded = false
        /// EOF was passed on (`shutdown(SHUT_WR)` of the other side).
        var shutdownSent = false
        /// Bytes moved and not yet added to the shared counter.
        var unreported = 0

        var hasPending: Bool { pendingEnd > pendingStart }
    }

    unowned let worker: RelayWorker
    let slot: Int
    let serial: UInt64
    let proxy: ProxyContext
    let settings: ProxySettings

    private var phase = Phase.waiting
    private var clientFD: Int32
    private var instanceFD: Int32 = -1
    /// Events each socket is registered for (0: not in the epoll set).
    private var clientInterest: UInt32 = 0
    private var instanceInterest: UInt32 = 0
    private let toInstance = Direction()
    private let toClient = Direction()

    /// The instance being connected to, then the one this connection was handed to.
    private var backend: Backend?
    /// Instances this connection failed to connect to, in order.
    private var failed: [Backend] = []
    private var connectStarted: NIODeadline = .uptimeNanoseconds(0)
    private var connectDeadline: Int64 = .max
    private var queueDeadline: NIODeadline?
    private var lastTraffic: Int64
    /// A tcp connection counts as one response when it closes; an upgraded http request was
    /// counted already (as its 101).
    private var countsResponse = true

    private static let reportThreshold = 64 * 1024

    init(worker: RelayWorker, slot: Int, serial: UInt64, client: Int32, proxy: ProxyContext, settings: ProxySettings) {
        self.worker = worker
        self.slot = slot
        self.serial = serial
        self.clientFD = client
        self.proxy = proxy
        self.settings = settings
        self.lastTraffic = worker.now
    }

    var sweepInterval: Int64? {
        phase == .closed ? nil : RelayWorker.sweepInterval(shortest: settings.idleTimeout)
    }

    /// An http connection upgraded (a 101 went to the client): both sockets are connected and
    /// carry raw bytes from here on. `toClient` and `toInstance` are bytes the http side had read
    /// or queued and not written yet; they go first. The request stays in flight on `backend`
    /// (counted when it was sent) until this closes; its response was counted as the 101.
    init(
        upgradedBy worker: RelayWorker, slot: Int, serial: UInt64, client: Int32, instance: Int32, backend: Backend,
        toClient: ByteBuffer, toInstance: ByteBuffer, clientEnded: Bool, proxy: ProxyContext, settings: ProxySettings
    ) {
        self.worker = worker
        self.slot = slot
        self.serial = serial
        self.clientFD = client
        self.instanceFD = instance
        self.proxy = proxy
        self.settings = settings
        self.lastTraffic = worker.now
        self.backend = backend
        self.countsResponse = false
        phase = .relaying
        Self.hold(toClient, in: self.toClient)
        Self.hold(toInstance, in: self.toInstance)
        self.toInstance.sourceEnded = clientEnded
    }

    private static func hold(_ bytes: ByteBuffer, in direction: Direction) {
        guard bytes.readableBytes > 0 else { return }
        let pending = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.readableBytes, RelayWorker.scratchSize), alignment: 16)
        bytes.withUnsafeReadableBytes { pending.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        direction.pending = pending
        direction.pendingEnd = bytes.readableBytes
    }

    /// Registers an upgraded connection's sockets and writes what it holds.
    func startUpgraded() {
        if toClient.hasPending { flush(toClient, to: clientFD) }
        if toInstance.hasPending { flush(toInstance, to: instanceFD) }
        guard phase == .relaying else { return }
        if toInstance.sourceEnded { passEOF(toInstance, to: instanceFD) }
        updateInterest()
    }

    func start() {
        pickInstance()
    }

    // MARK: Choosing and connecting

    private func pickInstance() {
        if let next = proxy.backends.next() {
            connect(to: next)
        } else {
            waitForInstance()
        }
    }

    /// No instance is ready: hold the client (nothing is read from it) until one is, or until
    /// `queue_timeout`.
    private func waitForInstance() {
        phase = .waiting
        let deadline = queueDeadline ?? .now() + settings.queueTimeout
        queueDeadline = deadline
        let worker = self.worker, slot = self.slot, serial = self.serial
        proxy.backends.waitForReady(on: proxy.eventLoopGroup.next(), timeout: deadline - .now())
            .whenComplete { result in
                worker.post(.instanceChosen(slot: slot, serial: serial, result))
            }
    }

    /// The answer to `waitForInstance`, on the worker's thread.
    func instanceChosen(_ result: Result<Backend, any Error>) {
        guard phase == .waiting else { return }
        switch result {
        case .success(let backend):
            connect(to: backend)
        case .failure(ProxyError.noReadyInstance) where NIODeadline.now() < (queueDeadline ?? .now()):
            // The rotation emptied again before this connection's turn: keep waiting.
            waitForInstance()
        case .failure(let error):
            if error as? ProxyError != .closing {
                proxy.counters.queueTimeouts.wrappingIncrement(ordering: .relaxed)
            }
            proxy.logger.debug("tcp connection: no instance became ready", metadata: ["error": "\(error)"])
            close()
        }
    }

    private func connect(to next: Backend) {
        phase = .connecting
        backend = next
        connectStarted = .now()
        connectDeadline = worker.now + settings.connectTimeout.nanoseconds
        let fd = DescriptorReserve.instanceSocket(family: Int32(next.address.protocol.rawValue))
        guard fd >= 0 else {
            let code = errno
            if code == EMFILE || code == ENFILE { outOfDescriptors() } else { connectFailed(errno: code) }
            return
        }
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        instanceFD = fd
        let result = next.address.withSockAddr { address, length in Glibc.connect(fd, address, socklen_t(length)) }
        if result == 0 {
            connected()
        } else if errno == EINPROGRESS {
            setInterest(.instance, RelayWorker.writable)
        } else {
            connectFailed(errno: errno)
        }
    }

    private func finishConnect() {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(instanceFD, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
        if error == 0 { connected() } else { connectFailed(errno: error) }
    }

    /// No descriptor for the instance's side: musterd's trouble, not the instance's, so it is not
    /// counted against the instance (no ejection) and no other instance is tried; the client's
    /// connection is closed.
    private func outOfDescriptors() {
        backend = nil
        connectDeadline = .max
        proxy.counters.failedRequests.wrappingIncrement(ordering: .relaxed)
        proxy.logger.debug("tcp connection closed: no descriptor left for the instance's side")
        close()
    }

    private func connectFailed(errno code: Int32) {
        guard let failedBackend = backend else { return }
        if instanceFD >= 0 {
            setInterest(.instance, 0)
            Glibc.close(instanceFD)
            instanceFD = -1
        }
        connectDeadline = .max
        failedBackend.counters.connectFailures.wrappingIncrement(ordering: .relaxed)
        proxy.backends.reportFailure(failedBackend, .connect)
        failed.append(failedBackend)
        backend = nil
        proxy.logger.debug(
            "tcp connect failed",
            metadata: ["instance": "\(failedBackend)", "error": "\(code == ETIMEDOUT ? "timed out" : String(cString: strerror(code)))"])
        if failed.count <= settings.retries, let next = proxy.backends.next(excluding: failed) {
            connect(to: next)
            return
        }
        failedBackend.counters.countResponse(status: 0)
        proxy.counters.failedRequests.wrappingIncrement(ordering: .relaxed)
        close()
    }

    private func connected() {
        guard let backend else { return }
        phase = .relaying
        connectDeadline = .max
        lastTraffic = worker.now
        backend.counters.inFlight.wrappingIncrement(ordering: .relaxed)
        backend.counters.latency.record(nanoseconds: (NIODeadline.now() - connectStarted).nanoseconds)
        proxy.backends.reportSuccess(backend)
        updateInterest()
    }

    // MARK: Data path

    /// An epoll event for one of this connection's sockets.
    func handle(side: Side, events: UInt32) {
        switch phase {
        case .relaying:
            break
        case .connecting where side == .instance:
            finishConnect()
            return
        default:
            return
        }
        if events & RelayWorker.writable != 0 {
            if side == .client { flush(toClient, to: clientFD) } else { flush(toInstance, to: instanceFD) }
        }
        // Readable, or a hang-up or error that the read will report.
        if phase == .relaying, events & ~RelayWorker.writable != 0 {
            if side == .client { pump(toInstance, from: clientFD, to: instanceFD) }
            else { pump(toClient, from: instanceFD, to: clientFD) }
        }
        guard phase == .relaying else { return }
        if toInstance.shutdownSent && toClient.shutdownSent && !toInstance.hasPending && !toClient.hasPending {
            close()
        } else {
            updateInterest()
        }
    }

    /// One read from `source`, written on at once; what the other side cannot take waits in the
    /// direction's own buffer and stops reads from `source` until it is written.
    private func pump(_ direction: Direction, from source: Int32, to destination: Int32) {
        guard !direction.sourceEnded, !direction.hasPending else { return }
        let count = recv(source, worker.scratch.baseAddress, worker.scratch.count, 0)
        if count > 0 {
            lastTraffic = worker.now
            direction.unreported &+= count
            if direction.unreported >= Self.reportThreshold { report() }
            let written = send(destination, worker.scratch.baseAddress, count, Int32(MSG_NOSIGNAL))
            if written == count { return }
            if written < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                fail("write", errno: errno)
                return
            }
            let sent = max(written, 0)
            if direction.pending == nil {
                direction.pending = .allocate(byteCount: RelayWorker.scratchSize, alignment: 16)
            }
            direction.pending!.copyMemory(from: worker.scratch.baseAddress! + sent, byteCount: count - sent)
            direction.pendingStart = 0
            direction.pendingEnd = count - sent
        } else if count == 0 {
            direction.sourceEnded = true
            passEOF(direction, to: destination)
        } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            fail("read", errno: errno)
        }
    }

    /// Writes what `direction` holds for `destination`, now that it is writable.
    private func flush(_ direction: Direction, to destination: Int32) {
        guard direction.hasPending, let pending = direction.pending else { return }
        let written = send(destination, pending + direction.pendingStart, direction.pendingEnd - direction.pendingStart, Int32(MSG_NOSIGNAL))
        if written < 0 {
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { fail("write", errno: errno) }
            return
        }
        direction.pendingStart += written
        if !direction.hasPending {
            // The buffer is only for a peer that is slow right now: give it back.
            pending.deallocate()
            direction.pending = nil
            direction.pendingStart = 0
            direction.pendingEnd = 0
            if direction.sourceEnded { passEOF(direction, to: destination) }
        }
    }

    /// The source sent EOF: send ours once everything it sent before is written.
    private func passEOF(_ direction: Direction, to destination: Int32) {
        guard !direction.hasPending, !direction.shutdownSent else { return }
        direction.shutdownSent = true
        _ = shutdown(destination, Int32(SHUT_WR))
    }

    private func fail(_ operation: String, errno code: Int32) {
        proxy.logger.debug(
            "tcp connection failed",
            metadata: ["operation": "\(operation)", "instance": "\(backend.map { "\($0)" } ?? "-")", "error": "\(String(cString: strerror(code)))"])
        close()
    }

    // MARK: epoll interest

    /// Reads from a socket while its direction holds nothing back and it has not ended; waits
    /// for writability while bytes for it are held.
    private func updateInterest() {
        var client: UInt32 = 0, instance: UInt32 = 0
        if !toInstance.sourceEnded && !toInstance.hasPending { client |= RelayWorker.readable }
        if toClient.hasPending { client |= RelayWorker.writable }
        if !toClient.sourceEnded && !toClient.hasPending { instance |= RelayWorker.readable }
        if toInstance.hasPending { instance |= RelayWorker.writable }
        if client != clientInterest { setInterest(.client, client) }
        if instance != instanceInterest { setInterest(.instance, instance) }
    }

    private func setInterest(_ side: Side, _ events: UInt32) {
        let fd = side == .client ? clientFD : instanceFD
        guard fd >= 0 else { return }
        worker.changeInterest(of: fd, slot: slot, side: side, from: side == .client ? clientInterest : instanceInterest, to: events)
        if side == .client { clientInterest = events } else { instanceInterest = events }
    }

    // MARK: Timers and closing

    /// The worker's periodic look: byte counts reported, a connect past its timeout failed, an
    /// idle connection closed on both sides.
    func sweep(now: Int64) {
        switch phase {
        case .connecting where now >= connectDeadline:
            connectFailed(errno: ETIMEDOUT)
        case .relaying:
            report()
            if now - lastTraffic >= settings.idleTimeout.nanoseconds {
                proxy.logger.debug("tcp connection idle: closing", metadata: ["instance": "\(backend.map { "\($0)" } ?? "-")"])
                close()
            }
        default:
            break
        }
    }

    private func report() {
        guard let backend else { return }
        if toInstance.unreported != 0 {
            backend.counters.bytesToInstance.wrappingIncrement(by: toInstance.unreported, ordering: .relaxed)
            toInstance.unreported = 0
        }
        if toClient.unreported != 0 {
            backend.counters.bytesFromInstance.wrappingIncrement(by: toClient.unreported, ordering: .relaxed)
            toClient.unreported = 0
        }
    }

    /// Closes both sockets, dropping what was not written yet, and settles the books.
    func close() {
        guard phase != .closed else { return }
        if phase == .relaying, let backend {
            report()
            if countsResponse { backend.counters.countResponse(status: 200) }
            backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
        }
        phase = .closed
        for fd in [clientFD, instanceFD] where fd >= 0 { Glibc.close(fd) }
        clientFD = -1
        instanceFD = -1
        toInstance.pending?.deallocate()
        toClient.pending?.deallocate()
        toInstance.pending = nil
        toClient.pending = nil
        proxy.counters.openConnections.wrappingDecrement(ordering: .relaxed)
        worker.clientClosed()
        worker.release(slot: slot)
    }
}
