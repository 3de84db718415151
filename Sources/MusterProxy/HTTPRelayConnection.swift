import CMusterShims
import Glibc
import NIOCore
import NIOHTTP1

/// One client connection in http mode, on a relay worker: HTTP/1.1 with keep-alive, per-request
/// round robin over the service's ready instances through the worker's pool of instance
/// connections. Request heads are scanned by `H1RequestHead` and forwarded rewritten by
/// `H1Rewrite`; bodies pass through as the slices they arrived in, with `H1BodyFramer` tracking
/// where each ends. Responses likewise. (NIOHTTP1's codecs did the same job at about 40 µs of CPU
/// a request against HAProxy's 20: decoding every head into Strings and encoding it again was
/// most of it.) After a 101 the connection becomes a tcp
/// `RelayConnection` (a tunnel).
///
/// Bytes read or produced while handling an event are queued (`RelayOutbox`) and written once the
/// worker has handled its batch of events (`finishEvent`, `completeEvent`), so a request costs one
/// read and one write each way. Reads stop while bytes cannot move on (no instance yet, the
/// instance or the client not taking what came before): memory per connection stays at about
/// one read.
///
/// Only its worker's thread touches it.
final class HTTPRelayConnection: RelayTask {
    unowned let worker: RelayWorker
    let slot: Int
    let serial: UInt64
    let proxy: ProxyContext
    let settings: ProxySettings
    private let rewrite: H1Rewrite
    private static let allocator = ByteBufferAllocator()

    private var fd: Int32
    private var outbox = RelayOutbox()
    private var interest: UInt32 = 0

    private var exchange: H1Exchange?
    private var exchangeCount: UInt64 = 0
    /// Client bytes not handled yet: a partial head, the body of a request waiting for an
    /// instance, or requests pipelined behind the one in progress.
    private var pending = ByteBuffer()
    private var requestHeadFinder: H1HeadFinder
    /// Instance bytes not handled yet: a partial response head.
    private var instancePending = ByteBuffer()
    private var responseHeadFinder: H1HeadFinder
    private var processing = false
    /// Waiting in the worker's list for `completeEvent`.
    private var completionDeferred = false

    /// The client sent EOF.
    private var inputClosed = false
    /// Answered for the last time: the socket closes once everything queued is written.
    private var closing = false
    private var isClosed = false
    /// Over `max_connections`: a 503 went out; what the client sends is read and dropped until it
    /// closes or `closeBy` (closing with unread bytes would reset the connection and could destroy
    /// the 503 before the client reads it).
    private var rejecting = false
    private var outputShut = false
    /// When a closing or rejecting connection closes even if the client has not taken everything.
    private var closeBy: Int64 = .max
    /// The header timeout (answered with 408) or the keep-alive idle timeout (closed quietly).
    private var deadline: Int64?
    private var deadlineAnswers408 = false
    /// The exchange waiting in the rotation's queue for a ready instance, and until when.
    private var queuedExchange: UInt64 = 0
    private var queueDeadline: NIODeadline?

    private static let rejectLinger: Int64 = 1_000_000_000
    /// Body bytes up to this many, arriving with their head, are copied behind the head.
    private static let coalesceLimit = 4096

    init(worker: RelayWorker, slot: Int, serial: UInt64, client: Int32, proxy: ProxyContext, settings: ProxySettings) {
        self.worker = worker
        self.slot = slot
        self.serial = serial
        self.fd = client
        self.proxy = proxy
        self.settings = settings
        self.rewrite = H1Rewrite(client: HTTPClientIdentity(SocketAddress.of(client, peer: true)))
        self.requestHeadFinder = H1HeadFinder(limit: settings.maxHeaderBytes)
        self.responseHeadFinder = H1HeadFinder(limit: max(settings.maxHeaderBytes, 64 * 1024))
    }

    var sweepInterval: Int64? {
        isClosed ? nil : RelayWorker.sweepInterval(shortest: min(settings.idleTimeout, settings.headerTimeout))
    }

    func start(reject: Bool) {
        if reject {
            rejecting = true
            closeBy = worker.now + Self.rejectLinger
            outbox.append(Self.tooManyConnections)
        } else {
            deadline = worker.now + settings.headerTimeout.nanoseconds
            deadlineAnswers408 = true
        }
        finishEvent()
    }

    private static let tooManyConnections: ByteBuffer = {
        let body = "503 Service Unavailable: too many connections\n"
        return ByteBuffer(
            string: "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)")
    }()

    // MARK: Events

    func handle(side: RelaySide, events: UInt32) {
        guard !isClosed else { return }
        if events & RelayWorker.writable != 0 {
            flushClient()
        }
        if !isClosed, events & ~RelayWorker.writable != 0, clientReadAllowed {
            readClient()
        }
        finishEvent()
    }

    /// Every path that queues bytes or changes what may be read ends here: `completeEvent` runs
    /// once the worker has handled its current batch of events.
    func finishEvent() {
        guard !isClosed, !completionDeferred else { return }
        completionDeferred = true
        worker.deferCompletion(of: self)
    }

    /// Writes what was queued (to the instance first, then to the client), closes when a last
    /// answer is out, and brings epoll interest in line.
    func completeEvent() {
        completionDeferred = false
        guard !isClosed else { return }
        if let connection = exchange?.connection, connection.hasQueuedBytes {
            connection.flush()
        }
        flushClient()
        guard !isClosed else { return }
        if outbox.isEmpty {
            if closing {
                close()
                return
            }
            if rejecting && !outputShut {
                outputShut = true
                _ = shutdown(fd, Int32(SHUT_WR))
            }
        }
        updateInterest()
    }

    private func flushClient() {
        guard !outbox.isEmpty else { return }
        if outbox.flush(to: fd) != 0 {
            close()
        }
    }

    private func readClient() {
        let count = recv(fd, worker.scratch.baseAddress, worker.scratch.count, 0)
        if count > 0 {
            if rejecting { return }
            pending.writeBytes(UnsafeRawBufferPointer(start: worker.scratch.baseAddress, count: count))
            processInput()
            if exchange == nil && !deadlineAnswers408 && !closing && !isClosed {
                // Bytes of the next request arrived, but not its whole header block.
                let headerDeadline = worker.now + settings.headerTimeout.nanoseconds
                deadline = min(deadline ?? headerDeadline, headerDeadline)
                deadlineAnswers408 = true
            }
        } else if count == 0 {
            inputClosed = true
            if rejecting || exchange == nil {
                close()
            } else {
                exchange!.closeClient = true
            }
        } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
            close()
        }
    }

    private var clientReadAllowed: Bool {
        if isClosed || inputClosed { return false }
        if rejecting { return true }
        if closing { return false }
        guard let phase = exchange?.requestPhase else { return true }
        switch phase {
        case .waitingForInstance: return false
        case .streaming: return exchange!.connection?.hasQueuedBytes == false
        case .sent: return pending.readableBytes == 0
        }
    }

    private func updateInterest() {
        var wanted: UInt32 = 0
        if clientReadAllowed { wanted |= RelayWorker.readable }
        if !outbox.isEmpty { wanted |= RelayWorker.writable }
        if wanted != interest {
            // Checked here too: this runs once per request, and reaching the worker costs a retain.
            worker.changeInterest(of: fd, slot: slot, side: .client, from: interest, to: wanted)
            interest = wanted
        }
        if let connection = exchange?.connection, connection.isConnected {
            // The instance's bytes wait in its socket while the client has not taken the last ones.
            connection.readPaused = !outbox.isEmpty
            connection.updateInterest()
        }
    }

    // MARK: Requests

    /// Frames what `pending` holds: starts requests, streams bodies. Stops where bytes have to
    /// wait (an instance to connect, a response before the next pipelined request).
    private func processInput() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        while !closing && !isClosed {
            guard exchange != nil else {
                if requestHeadFinder.scanned == 0 { skipEmptyLines() }
                guard pending.readableBytes > 0 else { break }
                let length: Int
                let head: H1RequestHead
                do throws(H1FramingError) {
                    guard let found = try requestHeadFinder.find(in: pending) else { break }
                    length = found
                    requestHeadFinder.reset()
                    head = try H1RequestHead.parse(pending, length: length)
                } catch {
                    badRequest(error)
                    return
                }
                begin(head)
                continue
            }
            guard exchange!.requestPhase == .streaming, let connection = exchange!.connection else { break }
            if exchange!.requestBody.isComplete {
                exchange!.requestEnded = true
                exchange!.requestPhase = .sent
                break
            }
            guard pending.readableBytes > 0 else { break }
            let count: Int
            do throws(H1FramingError) {
                count = try exchange!.requestBody.advance(over: pending)
            } catch {
                badRequest(error)
                return
            }
            if count > 0 {
                let slice = pending.readSlice(length: count)!
                exchange!.bytesToInstance += count
                connection.send(slice)
            }
            if exchange!.requestBody.isComplete {
                exchange!.requestEnded = true
                exchange!.requestPhase = .sent
            }
        }
        if pending.readableBytes == 0 {
            // Keeps the storage for the next read unless a large body grew it.
            if pending.capacity > 16 * 1024 { pending = ByteBuffer() } else { pending.clear() }
        }
    }

    /// CRLFs between requests are ignored (RFC 9112 §2.2).
    private func skipEmptyLines() {
        while pending.readableBytes >= 2, pending.getInteger(at: pending.readerIndex, as: UInt16.self) == 0x0D0A {
            pending.moveReaderIndex(forwardBy: 2)
        }
    }

    private func badRequest(_ error: H1FramingError) {
        proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
        if error == .tooLarge {
            rejectAndClose(.requestHeaderFieldsTooLarge, "431 Request Header Fields Too Large: the header block is over \(settings.maxHeaderBytes) bytes\n")
        } else {
            rejectAndClose(.badRequest, "400 Bad Request: malformed HTTP request\n")
        }
    }

    // MARK: Choosing an instance

    private func begin(_ head: H1RequestHead) {
        deadline = nil
        if head.method == .connect {
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            rejectAndClose(.methodNotAllowed, "405 Method Not Allowed: CONNECT is not proxied\n")
            return
        }
        let forwarded = rewrite.request(head, in: pending, allocator: Self.allocator)
        pending.moveReaderIndex(forwardBy: head.length)
        let body = head.facts.chunked ? H1BodyFramer.chunked() : H1BodyFramer(length: head.facts.contentLength ?? 0)
        exchangeCount &+= 1
        exchange = H1Exchange(
            id: exchangeCount, head: forwarded, clientMinor: head.versionMinor, isHEAD: head.method == .head,
            isUpgrade: head.isUpgrade, isRetryable: !head.hasBody && head.method.isIdempotent,
            closeClient: !head.keepAlive || inputClosed, requestBody: body)
        exchange!.requestEnded = body.isComplete
        dispatch()
    }

    private func dispatch() {
        guard let current = exchange else { return }
        if let backend = proxy.backends.next(excluding: current.tried) {
            use(backend)
            return
        }
        guard current.tried.isEmpty else {
            failBadGateway()
            return
        }
        queueDeadline = .now() + settings.queueTimeout
        waitForInstance()
    }

    /// No instance is ready: the request waits (nothing more is read from the client) until one
    /// is, or until `queue_timeout`.
    private func waitForInstance() {
        guard let current = exchange, let queueDeadline else { return }
        queuedExchange = current.id
        let worker = self.worker, slot = self.slot, serial = self.serial
        proxy.backends.waitForReady(on: proxy.eventLoopGroup.next(), timeout: queueDeadline - .now())
            .whenComplete { result in
                worker.post(.instanceChosen(slot: slot, serial: serial, result))
            }
    }

    /// The answer to `waitForInstance`, on the worker's thread.
    func instanceChosen(_ result: Result<Backend, any Error>) {
        guard !isClosed, let current = exchange, current.id == queuedExchange, current.backend == nil else { return }
        queuedExchange = 0
        switch result {
        case .success(let backend):
            use(backend)
        case .failure(ProxyError.noReadyInstance) where NIODeadline.now() < (queueDeadline ?? .now()):
            // The rotation emptied again before this request's turn: keep waiting.
            waitForInstance()
        case .failure(let error):
            if error as? ProxyError != .closing {
                proxy.counters.queueTimeouts.wrappingIncrement(ordering: .relaxed)
            }
            failExchange(.serviceUnavailable, "503 Service Unavailable: no instance of \(proxy.service) is ready\n")
        }
        finishEvent()
    }

    private func use(_ backend: Backend) {
        exchange!.backend = backend
        exchange!.attempts += 1
        if let connection = worker.instancePool.take(for: backend) {
            attach(connection)
            return
        }
        let id = exchange!.id
        let connection = worker.occupy { slot, serial in
            HTTPInstanceConnection(worker: worker, slot: slot, serial: serial, backend: backend, idleTimeout: settings.idleTimeout)
        }
        connection.owner = self
        connection.connectingFor = id
        connection.connect(timeout: settings.connectTimeout)
    }

    /// A connect `use` started has finished (`error` 0) or failed.
    func instanceConnectFinished(_ connection: HTTPInstanceConnection, error: Int32) {
        let id = connection.connectingFor
        if error == EMFILE || error == ENFILE {
            // No descriptor for the instance's side (see DescriptorReserve): musterd's trouble,
            // not the instance's, so it is not counted against it and no other one is tried.
            guard exchange?.id == id, !isClosed else { return }
            failExchange(.serviceUnavailable, "503 Service Unavailable: the proxy has no file descriptor left for \(proxy.service)\n")
            return
        }
        guard error == 0 else {
            connection.backend.counters.connectFailures.wrappingIncrement(ordering: .relaxed)
            proxy.backends.reportFailure(connection.backend, .connect)
            guard exchange?.id == id, !isClosed else { return }
            exchange!.tried.append(connection.backend)
            guard exchange!.attempts <= settings.retries, let next = proxy.backends.next(excluding: exchange!.tried) else {
                failBadGateway()
                return
            }
            use(next)
            return
        }
        guard exchange?.id == id, exchange?.connection == nil, !isClosed else {
            worker.instancePool.park(connection)
            return
        }
        attach(connection)
    }

    private func attach(_ connection: HTTPInstanceConnection) {
        guard let backend = exchange?.backend else { return }
        connection.owner = self
        connection.requestsServed += 1
        exchange!.connection = connection
        exchange!.isInFlight = true
        backend.counters.inFlight.wrappingIncrement(ordering: .relaxed)
        exchange!.sentAt = NIODeadline.now().uptimeNanoseconds
        exchange!.responseBody = nil
        responseHeadFinder.reset()
        instancePending.clear()
        connection.send(exchange!.head)
        exchange!.requestPhase = exchange!.requestEnded ? .sent : .streaming
        processInput()
    }

    private func detachConnection() -> HTTPInstanceConnection? {
        guard exchange != nil else { return nil }
        if exchange!.isInFlight, let backend = exchange!.backend {
            exchange!.isInFlight = false
            backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
        }
        guard let connection = exchange!.connection else { return nil }
        exchange!.connection = nil
        connection.owner = nil
        return connection
    }

    // MARK: Responses (called by HTTPInstanceConnection)

    func instanceBytes(_ received: ByteBuffer, from connection: HTTPInstanceConnection) {
        guard exchange?.connection === connection, !isClosed else {
            connection.close()
            return
        }
        var bytes = received
        if instancePending.readableBytes > 0 {
            instancePending.writeBuffer(&bytes)
            bytes = instancePending
            instancePending.clear()
        }
        while bytes.readableBytes > 0 && exchange?.connection === connection {
            if var body = exchange!.responseBody {
                let count: Int
                do throws(H1FramingError) {
                    if exchange!.dechunk {
                        count = try body.advance(over: bytes) { [self] data in
                            outbox.append(data)
                        }
                    } else {
                        count = try body.advance(over: bytes)
                        if count > 0 { outbox.append(bytes.getSlice(at: bytes.readerIndex, length: count)!) }
                    }
                } catch {
                    closeBroken(connection)
                    return
                }
                exchange!.responseBody = body
                exchange!.bytesFromInstance += count
                bytes.moveReaderIndex(forwardBy: count)
                if body.isComplete {
                    responseEnd(connection, leftover: bytes.readableBytes > 0)
                }
                return
            }
            let length: Int
            let head: H1ResponseHead
            do throws(H1FramingError) {
                guard let found = try responseHeadFinder.find(in: bytes) else {
                    instancePending = bytes
                    return
                }
                length = found
                responseHeadFinder.reset()
                head = try H1ResponseHead.parse(bytes, length: length)
            } catch {
                closeBroken(connection)
                return
            }
            guard let forwardedHead = responseHead(head, in: bytes, from: connection) else { return }
            bytes.moveReaderIndex(forwardBy: length)
            if exchange!.upgrading {
                becomeTunnel(connection, leftover: bytes)
                return
            }
            guard var out = forwardedHead else { continue }
            // A final head: sent together with as much of a small body as is here, in one write.
            var body = exchange!.responseBody!
            if !body.isComplete && !exchange!.dechunk && bytes.readableBytes > 0 && bytes.readableBytes <= Self.coalesceLimit {
                let count: Int
                do throws(H1FramingError) {
                    count = try body.advance(over: bytes)
                } catch {
                    closeBroken(connection)
                    return
                }
                exchange!.responseBody = body
                exchange!.bytesFromInstance += count
                out.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex, length: count)!)
                bytes.moveReaderIndex(forwardBy: count)
            }
            outbox.append(out)
            if body.isComplete {
                responseEnd(connection, leftover: bytes.readableBytes > 0)
                return
            }
        }
    }

    /// The instance sent something that is not HTTP: its connection goes, and the exchange ends
    /// as if the instance had closed it.
    private func closeBroken(_ connection: HTTPInstanceConnection) {
        connection.owner = nil
        connection.close()
        instanceClosed(connection)
    }

    /// The instance connection closed while this exchange held it.
    func instanceClosed(_ connection: HTTPInstanceConnection) {
        guard exchange?.connection === connection, let backend = exchange?.backend else { return }
        if exchange!.responseStarted, exchange!.responseBody?.isUntilClose == true {
            // The close is how this response ends.
            responseEnd(connection, leftover: true)
            return
        }
        _ = detachConnection()
        let current = exchange!
        if !current.sawResponseHead && current.isRetryable {
            if connection.requestsServed > 1 {
                // A pooled connection the instance closed as the request went out (the keep-alive
                // race): not the instance failing, so it costs no retry.
                exchange!.attempts -= 1
                use(proxy.backends.next(excluding: current.tried + [backend]) ?? backend)
                return
            }
            // A fresh connection closed before any answer: the instance died with the request
            // (kill -9, a crash). Idempotent and bodiless, so the next ready instance may take it,
            // within `retries` like a failed connect.
            exchange!.tried.append(backend)
            if exchange!.attempts <= settings.retries, let next = proxy.backends.next(excluding: exchange!.tried) {
                backend.counters.countResponse(status: 0)
                use(next)
                return
            }
        }
        if !current.sawResponseHead {
            backend.counters.countResponse(status: 0)
            failBadGateway()
            return
        }
        if current.responseStarted {
            closeAfterWrites()
        } else {
            failBadGateway()
        }
    }

    /// Handles a response head: nil when the connection was closed instead; otherwise a final
    /// head to write (after it the body framer is set), or nil inside when there is nothing more to
    /// write (an interim response, already queued, or a 101).
    private func responseHead(_ head: H1ResponseHead, in bytes: ByteBuffer, from connection: HTTPInstanceConnection) -> ByteBuffer?? {
        guard let backend = exchange?.backend else { return nil }
        if !exchange!.sawResponseHead {
            exchange!.sawResponseHead = true
            let elapsed = NIODeadline.now().uptimeNanoseconds &- exchange!.sentAt
            backend.counters.latency.record(nanoseconds: Int64(truncatingIfNeeded: elapsed))
        }
        let code = head.status
        let clientMinor = exchange!.clientMinor
        if code < 200 && code != 101 {
            // 100 Continue and the like pass through; HTTP/1.0 clients never asked for them.
            if clientMinor >= 1 {
                outbox.append(H1Rewrite.response(head, in: bytes, clientMinor: 1, close: false, dechunk: false, allocator: Self.allocator))
            }
            return .some(nil)
        }
        if code == 101 {
            guard exchange!.isUpgrade else {
                closeBroken(connection)
                return nil
            }
            backend.counters.countResponse(status: 101)
            proxy.backends.reportSuccess(backend)
            exchange!.upgrading = true
            exchange!.responseStarted = true
            outbox.append(H1Rewrite.response(head, in: bytes, clientMinor: clientMinor, close: false, dechunk: false, allocator: Self.allocator))
            return .some(nil)
        }
        backend.counters.countResponse(status: code)
        if code >= 500 { proxy.backends.reportFailure(backend, .status(code)) } else { proxy.backends.reportSuccess(backend) }
        exchange!.responseStarted = true
        exchange!.instanceKeepAlive = head.keepAlive
        if exchange!.isUpgrade || exchange!.requestPhase != .sent || inputClosed {
            exchange!.closeClient = true
        }
        let body = head.bodyFraming(requestWasHEAD: exchange!.isHEAD)
        var close = exchange!.closeClient
        if clientMinor == 0 {
            // 1.0 clients know neither chunked encoding nor keep-alive without a length.
            exchange!.dechunk = body.isChunked
            let hasBody = !exchange!.isHEAD && code != 204 && code != 304
            if hasBody && head.facts.contentLength == nil { close = true }
        }
        if body.isUntilClose {
            close = true
            exchange!.instanceKeepAlive = false
        }
        exchange!.closeClient = close
        exchange!.responseBody = body
        // Room for a small body arriving with the head (see `instanceBytes`).
        let following = bytes.readableBytes - head.length
        return H1Rewrite.response(
            head, in: bytes, clientMinor: clientMinor, close: close, dechunk: clientMinor == 0, allocator: Self.allocator,
            reserve: following <= Self.coalesceLimit ? following : 0)
    }

    private func responseEnd(_ connection: HTTPInstanceConnection, leftover: Bool) {
        guard exchange != nil else { return }
        let reusable = exchange!.instanceKeepAlive && exchange!.requestPhase == .sent && !exchange!.isUpgrade && !leftover
        if let connection = detachConnection() {
            if reusable { worker.instancePool.park(connection) } else { connection.close() }
        }
        instancePending.clear()
        finishExchange()
    }

    private func finishExchange() {
        guard let finished = exchange else { return }
        exchange = nil
        if let backend = finished.backend {
            if finished.bytesToInstance > 0 {
                backend.counters.bytesToInstance.wrappingIncrement(by: finished.bytesToInstance, ordering: .relaxed)
            }
            if finished.bytesFromInstance > 0 {
                backend.counters.bytesFromInstance.wrappingIncrement(by: finished.bytesFromInstance, ordering: .relaxed)
            }
        }
        if finished.closeClient || inputClosed {
            closeAfterWrites()
            return
        }
        guard !isClosed else { return }
        processInput()
        if exchange == nil && !isClosed && !closing {
            deadline = worker.now + settings.idleTimeout.nanoseconds
            deadlineAnswers408 = false
        }
    }

    // MARK: Tunnel

    /// A 101 is queued for the client: from here on both sockets carry raw bytes, moved by a tcp
    /// `RelayConnection` that takes over both. `leftover` is what the instance sent after its 101;
    /// `pending` what the client sent after its request.
    private func becomeTunnel(_ connection: HTTPInstanceConnection, leftover: ByteBuffer) {
        guard let finished = exchange, let backend = finished.backend else { return }
        // The request stays in flight on the instance until the tunnel closes.
        finished.isInFlight = false
        finished.connection = nil
        exchange = nil
        outbox.append(leftover)
        var toInstance = pending
        pending = ByteBuffer()
        backend.counters.bytesFromInstance.wrappingIncrement(by: finished.bytesFromInstance + leftover.readableBytes, ordering: .relaxed)
        backend.counters.bytesToInstance.wrappingIncrement(by: finished.bytesToInstance + toInstance.readableBytes, ordering: .relaxed)
        let (instanceFD, queued) = connection.handOver()
        if var queued {
            queued.writeBuffer(&toInstance)
            toInstance = queued
        }
        let toClient = outbox.take() ?? ByteBuffer()
        // This connection leaves the worker without closing the client socket (or counting the
        // connection as closed): the tunnel does both when it ends.
        worker.changeInterest(of: fd, slot: slot, side: .client, from: interest, to: 0)
        interest = 0
        let clientFD = fd
        fd = -1
        isClosed = true
        worker.release(slot: slot)
        let proxy = self.proxy, settings = self.settings, clientEnded = inputClosed, worker = self.worker
        worker.occupy { slot, serial in
            RelayConnection(
                upgradedBy: worker, slot: slot, serial: serial, client: clientFD, instance: instanceFD, backend: backend,
                toClient: toClient, toInstance: toInstance, clientEnded: clientEnded, proxy: proxy, settings: settings)
        }.startUpgraded()
    }

    // MARK: Answers of the proxy's own

    private func failBadGateway() {
        proxy.counters.failedRequests.wrappingIncrement(ordering: .relaxed)
        failExchange(.badGateway, "502 Bad Gateway: no instance of \(proxy.service) answered\n")
    }

    private func failExchange(_ status: HTTPResponseStatus, _ message: String) {
        guard exchange != nil else { return }
        if exchange!.responseStarted {
            closeAfterWrites()
            return
        }
        detachConnection()?.close()
        if !exchange!.requestEnded {
            // Skip what is here of the request's body; if its end is not here, the rest is on its
            // way and the connection has to close after the answer.
            if let count = try? exchange!.requestBody.advance(over: pending) {
                pending.moveReaderIndex(forwardBy: count)
                exchange!.requestEnded = exchange!.requestBody.isComplete
            }
        }
        if !exchange!.requestEnded || inputClosed { exchange!.closeClient = true }
        respond(status, message, minor: exchange!.clientMinor, close: exchange!.closeClient, withBody: !exchange!.isHEAD)
        finishExchange()
    }

    private func rejectAndClose(_ status: HTTPResponseStatus, _ message: String) {
        guard !isClosed, !closing else { return }
        if exchange?.responseStarted == true {
            closeAfterWrites()
            return
        }
        if exchange != nil {
            detachConnection()?.close()
            exchange = nil
        }
        pending.clear()
        respond(status, message, minor: 1, close: true, withBody: true)
        closeAfterWrites()
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, minor: Int, close: Bool, withBody: Bool) {
        var text = "HTTP/1.\(minor) \(status.code) \(status.reasonPhrase)\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(message.utf8.count)\r\n"
        if close {
            text += "connection: close\r\n"
        } else if minor == 0 {
            text += "connection: keep-alive\r\n"
        }
        text += "\r\n"
        if withBody { text += message }
        outbox.append(ByteBuffer(string: text))
    }

    /// The client gets what is queued, then the connection closes (`finishEvent`); a client that
    /// does not take it within the idle timeout is closed anyway.
    private func closeAfterWrites() {
        guard !isClosed, !closing else { return }
        closing = true
        deadline = nil
        if let connection = detachConnection() { connection.close() }
        closeBy = worker.now + settings.idleTimeout.nanoseconds
    }

    // MARK: Timers and closing

    func sweep(now: Int64) {
        guard !isClosed else { return }
        if now >= closeBy {
            close()
            return
        }
        guard let deadline, now >= deadline else { return }
        self.deadline = nil
        if deadlineAnswers408 {
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            rejectAndClose(.requestTimeout, "408 Request Timeout: the request header did not arrive within \(settings.headerTimeout.nanoseconds / 1_000_000) ms\n")
            finishEvent()
        } else {
            close()
        }
    }

    /// Closes the client socket, dropping what was not written, and the instance connection the
    /// exchange held (its request is cut off).
    func close() {
        guard !isClosed else { return }
        isClosed = true
        if exchange != nil {
            detachConnection()?.close()
            exchange = nil
        }
        Glibc.close(fd)
        fd = -1
        outbox.removeAll()
        pending = ByteBuffer()
        instancePending = ByteBuffer()
        proxy.counters.openConnections.wrappingDecrement(ordering: .relaxed)
        worker.clientClosed()
        worker.release(slot: slot)
    }
}
