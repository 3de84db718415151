import Atomics
import NIOCore
import NIOHTTP1

/// One request and its response on the fast path. A class: the handler reads and writes its
/// fields many times per request, and a struct in an optional stored property would be copied
/// whole (every reference in it retained and released) on each of those accesses.
final class H1Exchange {
    enum RequestPhase {
        /// No instance connection yet; the request's body waits in the client handler's buffer.
        case waitingForInstance
        /// Head sent; body bytes are forwarded as they arrive.
        case streaming
        /// The request's end has been forwarded.
        case sent
    }

    let id: UInt64
    /// The head as the instance gets it, kept to send again on a retry.
    let head: ByteBuffer
    let clientMinor: Int
    let isHEAD: Bool
    let isUpgrade: Bool
    let isRetryable: Bool
    var closeClient: Bool
    /// Where the request body ends.
    var requestBody: H1BodyFramer
    /// Where the response body ends; nil until the final response head arrived.
    var responseBody: H1BodyFramer?
    /// The response body goes out without chunk framing (an HTTP/1.0 client).
    var dechunk = false

    var requestPhase = RequestPhase.waitingForInstance
    var requestEnded = false
    var backend: Backend?
    var connection: H1BackendConnection?
    var tried: [Backend] = []
    var attempts = 0
    var isInFlight = false
    var sentAt: UInt64 = 0
    var sawResponseHead = false
    var responseStarted = false
    /// A 101 went to the client: both sides become a tunnel.
    var upgrading = false
    var instanceKeepAlive = true
    var bytesToInstance = 0
    var bytesFromInstance = 0

    init(
        id: UInt64, head: ByteBuffer, clientMinor: Int, isHEAD: Bool, isUpgrade: Bool, isRetryable: Bool, closeClient: Bool,
        requestBody: H1BodyFramer
    ) {
        self.id = id
        self.head = head
        self.clientMinor = clientMinor
        self.isHEAD = isHEAD
        self.isUpgrade = isUpgrade
        self.isRetryable = isRetryable
        self.closeClient = closeClient
        self.requestBody = requestBody
    }
}

/// One client connection in http mode on the fast path: bytes in, bytes out. Request heads are
/// scanned by `H1RequestHead` and forwarded rewritten by `H1Rewrite`; bodies pass through as the
/// slices they arrived in, with `H1BodyFramer` tracking where each ends. Responses likewise.
///
/// Everything here runs on the client channel's event loop, and the instance connections it
/// borrows live on that loop too, so the two call each other directly.
final class H1ClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let proxy: ProxyContext
    private let settings: ProxySettings
    private let pool: H1ConnectionPool
    private let rewrite: H1Rewrite
    private var context: ChannelHandlerContext?

    private var exchange: H1Exchange?
    private var exchangeCount: UInt64 = 0
    /// Client bytes not handled yet: a partial head, the body of a request waiting for an
    /// instance, or requests pipelined behind the one in progress. Reading stops while it holds
    /// anything that cannot move, so it never holds more than one read's worth (or a head).
    private var pending = ByteBuffer()
    private var requestHeadFinder: H1HeadFinder
    /// Instance bytes not handled yet: a partial response head.
    private var instancePending = ByteBuffer()
    private var responseHeadFinder: H1HeadFinder
    private var processing = false

    private var readPending = false
    private var inClientRead = false
    private var backendNeedsFlush = false
    private var clientNeedsFlush = false
    private(set) var clientWritable = true
    private var backendWritable = true
    private var inputClosed = false
    private var closing = false
    private var isClosed = false

    private var deadline: NIODeadline?
    private var deadlineAnswers408 = false
    private var timer: Scheduled<Void>?
    private var timerAt = NIODeadline.distantFuture

    init(proxy: ProxyContext, settings: ProxySettings, pool: H1ConnectionPool, client: HTTPClientIdentity) {
        self.proxy = proxy
        self.settings = settings
        self.pool = pool
        self.rewrite = H1Rewrite(client: client)
        self.requestHeadFinder = H1HeadFinder(limit: settings.maxHeaderBytes)
        self.responseHeadFinder = H1HeadFinder(limit: max(settings.maxHeaderBytes, 64 * 1024))
    }

    // MARK: Client side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armTimeout(at: .now() + settings.headerTimeout, answer408: true)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimeout()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        inClientRead = true
        if closing || isClosed { return }
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            pending.writeBuffer(&bytes)
        }
        processInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inClientRead = false
        if exchange == nil && !deadlineAnswers408 && !closing {
            // Bytes of the next request arrived, but not its whole header block.
            let headerDeadline = NIODeadline.now() + settings.headerTimeout
            armTimeout(at: min(deadline ?? headerDeadline, headerDeadline), answer408: true)
        }
        flushBackend()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        cancelTimeout()
        if exchange != nil {
            detachConnection()?.close()
            exchange = nil
        }
        pending = ByteBuffer()
        instancePending = ByteBuffer()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientWritable = context.channel.isWritable
        if clientWritable { exchange?.connection?.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            inputClosed = true
            inClientRead = false
            flushBackend()
            if exchange == nil {
                context.close(promise: nil)
            } else {
                exchange!.closeClient = true
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if clientReadAllowed {
            context.read()
        } else {
            readPending = true
        }
    }

    private var clientReadAllowed: Bool {
        if closing || isClosed { return false }
        guard let phase = exchange?.requestPhase else { return true }
        switch phase {
        case .waitingForInstance: return false
        case .streaming: return backendWritable
        case .sent: return pending.readableBytes == 0
        }
    }

    private func resumeClientReads() {
        guard readPending, clientReadAllowed, let context else { return }
        readPending = false
        context.read()
    }

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
                backendNeedsFlush = true
            }
            if exchange!.requestBody.isComplete {
                exchange!.requestEnded = true
                exchange!.requestPhase = .sent
            }
        }
        if pending.readableBytes == 0 && pending.capacity > 0 { pending = ByteBuffer() }
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

    private func drain() {
        processInput()
        if !inClientRead { flushBackend() }
        resumeClientReads()
    }

    private func flushBackend() {
        guard backendNeedsFlush else { return }
        backendNeedsFlush = false
        exchange?.connection?.flush()
    }

    // MARK: Choosing an instance

    private func begin(_ head: H1RequestHead) {
        deadline = nil
        if head.method == .connect {
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            rejectAndClose(.methodNotAllowed, "405 Method Not Allowed: CONNECT is not proxied\n")
            return
        }
        guard let context else { return }
        let forwarded = rewrite.request(head, in: pending, allocator: context.channel.allocator)
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
        guard let current = exchange, let context else { return }
        if let backend = proxy.backends.next(excluding: current.tried) {
            use(backend, pooled: true)
            return
        }
        guard current.tried.isEmpty else {
            failBadGateway()
            return
        }
        let id = current.id
        proxy.backends.waitForReady(on: context.eventLoop, timeout: settings.queueTimeout)
            .assumeIsolated()
            .whenComplete { [self] result in
                guard exchange?.id == id, !isClosed else { return }
                switch result {
                case .success(let backend):
                    use(backend, pooled: true)
                case .failure:
                    proxy.counters.queueTimeouts.wrappingIncrement(ordering: .relaxed)
                    failExchange(.serviceUnavailable, "503 Service Unavailable: no instance of \(proxy.service) is ready\n")
                }
            }
    }

    private func use(_ backend: Backend, pooled: Bool) {
        exchange!.backend = backend
        exchange!.attempts += 1
        if pooled, let connection = pool.take(for: backend) {
            attach(connection)
            return
        }
        let id = exchange!.id
        pool.connect(to: backend, connectTimeout: settings.connectTimeout, idleTimeout: settings.idleTimeout) { [self] result in
            switch result {
            case .success(let connection):
                guard exchange?.id == id, exchange?.connection == nil, !isClosed else {
                    pool.park(connection, now: .now())
                    return
                }
                attach(connection)
            case .failure:
                backend.counters.connectFailures.wrappingIncrement(ordering: .relaxed)
                guard exchange?.id == id, !isClosed else { return }
                exchange!.tried.append(backend)
                guard exchange!.attempts <= settings.retries,
                    let next = proxy.backends.next(excluding: exchange!.tried)
                else {
                    failBadGateway()
                    return
                }
                use(next, pooled: true)
            }
        }
    }

    private func attach(_ connection: H1BackendConnection) {
        guard let backend = exchange?.backend else { return }
        connection.owner = self
        connection.requestsServed += 1
        exchange!.connection = connection
        exchange!.isInFlight = true
        backend.counters.inFlight.wrappingIncrement(ordering: .relaxed)
        backendWritable = connection.isWritable
        exchange!.sentAt = NIODeadline.now().uptimeNanoseconds
        exchange!.responseBody = nil
        responseHeadFinder.reset()
        instancePending = ByteBuffer()
        connection.send(exchange!.head)
        exchange!.requestPhase = exchange!.requestEnded ? .sent : .streaming
        backendNeedsFlush = true
        drain()
    }

    private func detachConnection() -> H1BackendConnection? {
        guard exchange != nil else { return nil }
        if exchange!.isInFlight, let backend = exchange!.backend {
            exchange!.isInFlight = false
            backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
        }
        guard let connection = exchange!.connection else { return nil }
        exchange!.connection = nil
        connection.owner = nil
        backendWritable = true
        backendNeedsFlush = false
        return connection
    }

    // MARK: Instance side (called by H1BackendConnection)

    func instanceBytes(_ received: ByteBuffer, from connection: H1BackendConnection) {
        guard exchange?.connection === connection, let context else {
            connection.close()
            return
        }
        var bytes = received
        if instancePending.readableBytes > 0 {
            instancePending.writeBuffer(&bytes)
            bytes = instancePending
            instancePending = ByteBuffer()
        }
        while bytes.readableBytes > 0 && exchange?.connection === connection {
            if var body = exchange!.responseBody {
                let count: Int
                do throws(H1FramingError) {
                    if exchange!.dechunk {
                        count = try body.advance(over: bytes) { data in
                            context.write(Self.wrapOutboundOut(data), promise: nil)
                        }
                    } else {
                        count = try body.advance(over: bytes)
                        if count > 0 { context.write(Self.wrapOutboundOut(bytes.getSlice(at: bytes.readerIndex, length: count)!), promise: nil) }
                    }
                } catch {
                    connection.close()
                    return
                }
                exchange!.responseBody = body
                exchange!.bytesFromInstance += count
                bytes.moveReaderIndex(forwardBy: count)
                clientNeedsFlush = true
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
                connection.close()
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
                    connection.close()
                    return
                }
                exchange!.responseBody = body
                exchange!.bytesFromInstance += count
                out.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex, length: count)!)
                bytes.moveReaderIndex(forwardBy: count)
            }
            context.write(Self.wrapOutboundOut(out), promise: nil)
            clientNeedsFlush = true
            if body.isComplete {
                responseEnd(connection, leftover: bytes.readableBytes > 0)
                return
            }
        }
    }

    /// Body bytes up to this many, arriving with their head, are copied behind the head.
    private static let coalesceLimit = 4096

    func backendReadComplete() {
        guard clientNeedsFlush else { return }
        clientNeedsFlush = false
        context?.flush()
    }

    func backendWritabilityChanged(_ writable: Bool) {
        backendWritable = writable
        if writable { resumeClientReads() }
    }

    /// The instance connection closed while this exchange held it.
    func backendClosed(_ connection: H1BackendConnection) {
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
                use(proxy.backends.next(excluding: current.tried + [backend]) ?? backend, pooled: true)
                return
            }
            // A fresh connection closed before any answer: the instance died with the request
            // (kill -9, a crash). Idempotent and bodiless, so the next ready instance may take it,
            // within `retries` like a failed connect.
            exchange!.tried.append(backend)
            if exchange!.attempts <= settings.retries, let next = proxy.backends.next(excluding: exchange!.tried) {
                backend.counters.countResponse(status: 0)
                use(next, pooled: true)
                return
            }
        }
        if !current.sawResponseHead {
            backend.counters.countResponse(status: 0)
            failBadGateway()
            return
        }
        if current.responseStarted {
            context?.close(promise: nil)
        } else {
            failBadGateway()
        }
    }

    /// Handles a response head: nil when the connection was closed instead; otherwise a final
    /// head to write (after it the body framer is set), or nil inside when there is nothing more to
    /// write (an interim response, already written, or a 101).
    private func responseHead(_ head: H1ResponseHead, in bytes: ByteBuffer, from connection: H1BackendConnection) -> ByteBuffer?? {
        guard let context, let backend = exchange?.backend else { return nil }
        if !exchange!.sawResponseHead {
            exchange!.sawResponseHead = true
            let elapsed = NIODeadline.now().uptimeNanoseconds &- exchange!.sentAt
            backend.counters.latency.record(nanoseconds: Int64(truncatingIfNeeded: elapsed))
        }
        let code = head.status
        let clientMinor = exchange!.clientMinor
        let allocator = context.channel.allocator
        if code < 200 && code != 101 {
            // 100 Continue and the like pass through; HTTP/1.0 clients never asked for them.
            if clientMinor >= 1 {
                let out = H1Rewrite.response(head, in: bytes, clientMinor: 1, close: false, dechunk: false, allocator: allocator)
                context.write(Self.wrapOutboundOut(out), promise: nil)
                clientNeedsFlush = true
            }
            return .some(nil)
        }
        if code == 101 {
            guard exchange!.isUpgrade else {
                connection.close()
                return nil
            }
            backend.counters.countResponse(status: 101)
            exchange!.upgrading = true
            exchange!.responseStarted = true
            let out = H1Rewrite.response(head, in: bytes, clientMinor: clientMinor, close: false, dechunk: false, allocator: allocator)
            context.write(Self.wrapOutboundOut(out), promise: nil)
            clientNeedsFlush = true
            return .some(nil)
        }
        backend.counters.countResponse(status: code)
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
            head, in: bytes, clientMinor: clientMinor, close: close, dechunk: clientMinor == 0, allocator: allocator,
            reserve: following <= Self.coalesceLimit ? following : 0)
    }

    private func responseEnd(_ connection: H1BackendConnection, leftover: Bool) {
        guard exchange != nil else { return }
        let now = NIODeadline.now()
        let reusable = exchange!.instanceKeepAlive && exchange!.requestPhase == .sent && !exchange!.isUpgrade && !leftover
        if let connection = detachConnection() {
            if reusable { pool.park(connection, now: now) } else { connection.close() }
        }
        instancePending = ByteBuffer()
        finishExchange(now: now)
    }

    private func finishExchange(now: NIODeadline) {
        guard let finished = exchange, let context else { return }
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
            flushAndClose()
            return
        }
        clientNeedsFlush = false
        context.flush()
        guard !isClosed else { return }
        drain()
        if exchange == nil && !isClosed && !closing {
            armTimeout(at: now + settings.idleTimeout, answer408: false)
        }
    }

    // MARK: Tunnel

    /// A 101 went out: from here on both connections carry raw bytes. `leftover` is what the
    /// instance sent after its 101; `pending` what the client sent after its request.
    private func becomeTunnel(_ connection: H1BackendConnection, leftover: ByteBuffer) {
        guard let context, let backend = exchange?.backend else { return }
        exchange!.isInFlight = false
        exchange!.connection = nil
        connection.owner = nil
        let finished = exchange!
        exchange = nil
        cancelTimeout()
        if leftover.readableBytes > 0 {
            context.write(Self.wrapOutboundOut(leftover), promise: nil)
        }
        context.flush()
        backend.counters.bytesFromInstance.wrappingIncrement(by: finished.bytesFromInstance + leftover.readableBytes, ordering: .relaxed)
        let early = pending
        pending = ByteBuffer()
        backend.counters.bytesToInstance.wrappingIncrement(by: finished.bytesToInstance + early.readableBytes, ordering: .relaxed)
        if early.readableBytes > 0 {
            connection.send(early)
            connection.flush()
        }
        let (clientSide, instanceSide) = HTTPTunnelHandler.pair(for: backend)
        let clientChannel = context.channel
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(clientSide)
            try connection.becomeTunnel(instanceSide)
            pipeline.removeHandler(context: context, promise: nil)
            clientChannel.read()
        } catch {
            backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
            connection.close()
            clientChannel.close(promise: nil)
        }
    }

    // MARK: Answers of the proxy's own

    private func failBadGateway() {
        proxy.counters.failedRequests.wrappingIncrement(ordering: .relaxed)
        failExchange(.badGateway, "502 Bad Gateway: no instance of \(proxy.service) answered\n")
    }

    private func failExchange(_ status: HTTPResponseStatus, _ message: String) {
        guard exchange != nil else { return }
        if exchange!.responseStarted {
            context?.close(promise: nil)
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
        finishExchange(now: .now())
    }

    private func rejectAndClose(_ status: HTTPResponseStatus, _ message: String) {
        guard context != nil, !isClosed, !closing else { return }
        if exchange?.responseStarted == true {
            context?.close(promise: nil)
            return
        }
        if exchange != nil {
            detachConnection()?.close()
            exchange = nil
        }
        pending = ByteBuffer()
        respond(status, message, minor: 1, close: true, withBody: true)
        flushAndClose()
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, minor: Int, close: Bool, withBody: Bool) {
        guard let context else { return }
        var text = "HTTP/1.\(minor) \(status.code) \(status.reasonPhrase)\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(message.utf8.count)\r\n"
        if close {
            text += "connection: close\r\n"
        } else if minor == 0 {
            text += "connection: keep-alive\r\n"
        }
        text += "\r\n"
        if withBody { text += message }
        context.write(Self.wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
    }

    private func flushAndClose() {
        guard let context, !isClosed, !closing else { return }
        closing = true
        cancelTimeout()
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer()))
            .assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: Client timeouts

    private func armTimeout(at newDeadline: NIODeadline, answer408: Bool) {
        deadline = newDeadline
        deadlineAnswers408 = answer408
        if timer != nil && timerAt <= newDeadline { return }
        timer?.cancel()
        scheduleTimer(at: newDeadline)
    }

    private func scheduleTimer(at when: NIODeadline) {
        guard let context else { return }
        timerAt = when
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) { [self] in
            timeoutFired()
        }
    }

    private func timeoutFired() {
        timer = nil
        guard let deadline, !isClosed, !closing, let context else { return }
        if NIODeadline.now() < deadline {
            scheduleTimer(at: deadline)
            return
        }
        self.deadline = nil
        if deadlineAnswers408 {
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            rejectAndClose(.requestTimeout, "408 Request Timeout: the request header did not arrive within \(settings.headerTimeout.nanoseconds / 1_000_000) ms\n")
        } else {
            context.close(promise: nil)
        }
    }

    private func cancelTimeout() {
        deadline = nil
        timer?.cancel()
        timer = nil
    }
}
