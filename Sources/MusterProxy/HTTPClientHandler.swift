import Atomics
import NIOCore
import NIOHTTP1

/// One client connection in http mode. Each request goes to the next ready instance over a
/// pooled connection on this same event loop; bodies stream both ways, and whichever side is
/// ahead stops being read until the other catches up.
///
/// Everything here runs on the client channel's event loop, and the instance connections it
/// borrows live on that loop too, so the two call each other directly.
final class HTTPClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let proxy: ProxyContext
    private let settings: ProxySettings
    private let pool: HTTPConnectionPool
    private let client: HTTPClientIdentity
    /// The codecs in front of this handler, removed when a 101 turns the connection into a tunnel.
    private let encoder: HTTPResponseEncoder
    private let decoder: ByteToMessageHandler<HTTPRequestDecoder>
    private var context: ChannelHandlerContext?

    private var exchange: HTTPExchange?
    private var exchangeCount: UInt64 = 0
    /// Request parts that cannot go anywhere yet: the body of a request still waiting for an
    /// instance, or pipelined requests behind the one in progress. Reading stops while it holds
    /// anything, so it never holds more than one read's worth.
    private var inbox = CircularBuffer<HTTPServerRequestPart>(initialCapacity: 4)
    private var drainingInbox = false

    private var readPending = false
    private var inClientRead = false
    private var backendNeedsFlush = false
    private var clientNeedsFlush = false
    /// Read by the instance connection before it reads more of a response.
    private(set) var clientWritable = true
    private var backendWritable = true
    private var inputClosed = false
    /// A final response is being flushed before the close.
    private var closing = false
    private var isClosed = false

    /// One timer, re-armed lazily: per request only `deadline` moves, and the timer, when it
    /// fires early, sleeps again until the deadline. nil while a request is in progress.
    private var deadline: NIODeadline?
    /// Expiry answers 408 (header block incomplete) rather than closing quietly (idle keep-alive).
    private var deadlineAnswers408 = false
    private var timer: Scheduled<Void>?
    private var timerAt = NIODeadline.distantFuture

    init(
        proxy: ProxyContext, settings: ProxySettings, pool: HTTPConnectionPool, client: HTTPClientIdentity,
        encoder: HTTPResponseEncoder, decoder: ByteToMessageHandler<HTTPRequestDecoder>
    ) {
        self.proxy = proxy
        self.settings = settings
        self.pool = pool
        self.client = client
        self.encoder = encoder
        self.decoder = decoder
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
        let part = Self.unwrapInboundIn(data)
        inClientRead = true
        if inbox.isEmpty && accept(part) { return }
        inbox.append(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inClientRead = false
        if exchange == nil && inbox.isEmpty && !deadlineAnswers408 && !closing {
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
        inbox.removeAll()
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
            // The decoder's last parts arrive here without a readComplete behind them.
            inClientRead = false
            flushBackend()
            if exchange == nil && inbox.isEmpty {
                context.close(promise: nil)
            } else {
                exchange?.closeClient = true
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError {
            guard !closing, !isClosed else { return }
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            if parserError == .headerOverflow {
                rejectAndClose(.requestHeaderFieldsTooLarge, "431 Request Header Fields Too Large: the header block is over \(settings.maxHeaderBytes) bytes\n")
            } else {
                rejectAndClose(.badRequest, "400 Bad Request: malformed HTTP request\n")
            }
            return
        }
        // Data after a parser error: the 400 is already on its way.
        if error is ByteToMessageDecoderError { return }
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
        if closing || isClosed || !inbox.isEmpty { return false }
        guard let exchange else { return true }
        switch exchange.requestPhase {
        case .waitingForInstance: return false
        case .streaming: return backendWritable
        case .sent: return true
        }
    }

    private func resumeClientReads() {
        guard readPending, clientReadAllowed, let context else { return }
        readPending = false
        context.read()
    }

    /// Forwards `part` if it can go somewhere now; false leaves it for the inbox.
    private func accept(_ part: HTTPServerRequestPart) -> Bool {
        if closing || isClosed { return true }
        switch part {
        case .head(let head):
            guard exchange == nil else { return false }
            begin(head)
            return true
        case .body(let buffer):
            // No exchange: the rest of a request that was already answered (and the connection
            // is closing because of it).
            guard exchange != nil else { return true }
            guard let connection = exchange!.connection else { return false }
            exchange!.bytesToInstance += buffer.readableBytes
            connection.send(.body(.byteBuffer(buffer)))
            backendNeedsFlush = true
            return true
        case .end(let trailers):
            guard exchange != nil else { return true }
            guard let connection = exchange!.connection else { return false }
            exchange!.requestEnded = true
            exchange!.requestPhase = .sent
            // Every write costs a trip through the pipeline; an end that encodes to nothing is
            // skipped (the head still needs its flush).
            if trailers != nil || !exchange!.requestEndIsEmpty { connection.send(.end(trailers)) }
            backendNeedsFlush = true
            return true
        }
    }

    private func drainInbox() {
        if !drainingInbox {
            drainingInbox = true
            while !isClosed, let part = inbox.popFirst() {
                if !accept(part) {
                    inbox.prepend(part)
                    break
                }
            }
            drainingInbox = false
        }
        if !inClientRead { flushBackend() }
        resumeClientReads()
    }

    private func flushBackend() {
        guard backendNeedsFlush else { return }
        backendNeedsFlush = false
        exchange?.connection?.flush()
    }

    // MARK: Choosing an instance

    private func begin(_ head: HTTPRequestHead) {
        deadline = nil
        if head.method == .CONNECT {
            proxy.counters.badRequests.wrappingIncrement(ordering: .relaxed)
            rejectAndClose(.methodNotAllowed, "405 Method Not Allowed: CONNECT is not proxied\n")
            return
        }
        let forwarded = HTTPHeaderRewrite.request(head, from: client)
        exchangeCount &+= 1
        exchange = HTTPExchange(
            id: exchangeCount, request: forwarded, clientHead: head, closeClient: !head.isKeepAlive || inputClosed)
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

    /// Sends the request to `backend` over a pooled connection, or a new one when the pool has
    /// none (or `pooled` is false).
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
                    // The client went away meanwhile; the connection is still good for others.
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

    private func attach(_ connection: HTTPBackendConnection) {
        guard let backend = exchange?.backend else { return }
        connection.owner = self
        connection.requestsServed += 1
        exchange!.connection = connection
        exchange!.isInFlight = true
        exchange!.requestPhase = .streaming
        backend.counters.inFlight.wrappingIncrement(ordering: .relaxed)
        backendWritable = connection.isWritable
        exchange!.sentAt = NIODeadline.now().uptimeNanoseconds
        connection.send(.head(exchange!.head))
        if exchange!.requestEnded {
            // A retry: the request had no body, so its end is all there is to send again.
            if !exchange!.requestEndIsEmpty { connection.send(.end(nil)) }
            exchange!.requestPhase = .sent
        }
        backendNeedsFlush = true
        drainInbox()
    }

    /// Ends the request's claim on its instance's `inFlight` and lets go of the connection.
    private func detachConnection() -> HTTPBackendConnection? {
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

    // MARK: Instance side (called by HTTPBackendConnection)

    func responsePart(_ part: HTTPClientResponsePart, from connection: HTTPBackendConnection) {
        guard exchange?.connection === connection, let context else {
            connection.close()
            return
        }
        switch part {
        case .head(let head):
            responseHead(head, from: connection)
        case .body(let buffer):
            guard exchange!.responseStarted, !exchange!.isHEAD else { return }
            exchange!.bytesFromInstance += buffer.readableBytes
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            clientNeedsFlush = true
        case .end(let trailers):
            responseEnd(trailers, from: connection)
        }
    }

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
    func backendClosed(_ connection: HTTPBackendConnection) {
        guard exchange?.connection === connection, let backend = exchange?.backend else { return }
        _ = detachConnection()
        let current = exchange!
        if !current.sawResponseHead {
            if connection.requestsServed > 1 && current.isRetryable {
                // A kept-alive connection the instance had already closed: not the instance
                // failing, so this try is free; another instance if there is one.
                exchange!.attempts -= 1
                use(proxy.backends.next(excluding: current.tried + [backend]) ?? backend, pooled: true)
                return
            }
            backend.counters.countResponse(status: 0)
            failBadGateway()
            return
        }
        if current.responseStarted {
            // Part of the response is with the client already: all that is left is to cut it off.
            context?.close(promise: nil)
        } else {
            failBadGateway()
        }
    }

    private func responseHead(_ head: HTTPResponseHead, from connection: HTTPBackendConnection) {
        guard let context, let backend = exchange?.backend else { return }
        if !exchange!.sawResponseHead {
            exchange!.sawResponseHead = true
            let elapsed = NIODeadline.now().uptimeNanoseconds &- exchange!.sentAt
            backend.counters.latency.record(nanoseconds: Int64(truncatingIfNeeded: elapsed))
        }
        var head = head
        let code = Int(head.status.code)
        let clientVersion = exchange!.clientVersion
        if code < 200 && code != 101 {
            // 100 Continue and the like pass through; HTTP/1.0 clients never asked for them.
            guard clientVersion.major == 1 && clientVersion.minor >= 1 else { return }
            _ = HTTPHeaderRewrite.response(&head, clientVersion: clientVersion, isHEAD: false, closeClient: false)
            context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
            clientNeedsFlush = true
            return
        }
        if code == 101 {
            guard exchange!.isUpgrade else {
                // Switching protocols nobody asked for: treat as a broken instance.
                connection.close()
                return
            }
            backend.counters.countResponse(status: 101)
            exchange!.upgrading = true
            exchange!.responseStarted = true
            _ = HTTPHeaderRewrite.response(&head, clientVersion: clientVersion, isHEAD: false, closeClient: false)
            context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
            clientNeedsFlush = true
            return
        }
        backend.counters.countResponse(status: code)
        exchange!.responseStarted = true
        exchange!.instanceKeepAlive = head.isKeepAlive
        // An upgrade request left the request decoder stopped; an answer before the request's
        // end leaves the rest of its body unread: either way this connection cannot go on.
        if exchange!.isUpgrade || exchange!.requestPhase != .sent || inputClosed {
            exchange!.closeClient = true
        }
        let forwarded = HTTPHeaderRewrite.response(
            &head, clientVersion: clientVersion, isHEAD: exchange!.isHEAD, closeClient: exchange!.closeClient)
        exchange!.closeClient = forwarded.closeClient
        exchange!.responseEndIsEmpty = forwarded.endIsEmpty
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        clientNeedsFlush = true
    }

    private func responseEnd(_ trailers: HTTPHeaders?, from connection: HTTPBackendConnection) {
        guard let context, exchange != nil else { return }
        if exchange!.upgrading {
            becomeTunnel(connection)
            return
        }
        // A HEAD response has no body, so no chunked terminator either (the encoder on its own
        // cannot tell, having never seen the request).
        if !exchange!.isHEAD && (trailers != nil || !exchange!.responseEndIsEmpty) {
            context.write(Self.wrapOutboundOut(.end(trailers)), promise: nil)
        }
        let now = NIODeadline.now()
        let reusable = exchange!.instanceKeepAlive && exchange!.requestPhase == .sent
        if let connection = detachConnection() {
            if reusable { pool.park(connection, now: now) } else { connection.close() }
        }
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
        drainInbox()
        if exchange == nil && !isClosed && !closing {
            armTimeout(at: now + settings.idleTimeout, answer408: false)
        }
    }

    // MARK: Tunnel

    /// A 101 went out: from here on both connections carry raw bytes.
    private func becomeTunnel(_ connection: HTTPBackendConnection) {
        guard let context, let backend = exchange?.backend else { return }
        // The tunnel's lease keeps the request in flight until either side closes.
        exchange!.isInFlight = false
        exchange!.connection = nil
        connection.owner = nil
        exchange = nil
        cancelTimeout()
        context.flush()
        let (clientSide, instanceSide) = HTTPTunnelHandler.pair(for: backend)
        let clientChannel = context.channel
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(clientSide)
            try connection.becomeTunnel(instanceSide)
            pipeline.removeHandler(context: context, promise: nil)
            pipeline.removeHandler(encoder, promise: nil)
            pipeline.removeHandler(decoder, promise: nil)
            // Reads this handler held back are the tunnel's to decide now.
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

    /// Answers the current request with `status` instead of an instance's response.
    private func failExchange(_ status: HTTPResponseStatus, _ message: String) {
        guard exchange != nil else { return }
        if exchange!.responseStarted {
            context?.close(promise: nil)
            return
        }
        detachConnection()?.close()
        // Parts of this request still waiting in the inbox go; if its end is not among them,
        // the rest of the body is on its way and the connection has to close after the answer.
        while let part = inbox.first {
            if case .head = part { break }
            inbox.removeFirst()
            if case .end = part {
                exchange!.requestEnded = true
                break
            }
        }
        if !exchange!.requestEnded || inputClosed { exchange!.closeClient = true }
        respond(status, message, version: exchange!.clientVersion, close: exchange!.closeClient, withBody: !exchange!.isHEAD)
        finishExchange(now: .now())
    }

    /// Answers `status` and closes: the connection cannot be trusted with another request.
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
        inbox.removeAll()
        respond(status, message, version: .http1_1, close: true, withBody: true)
        flushAndClose()
    }

    private func respond(_ status: HTTPResponseStatus, _ message: String, version: HTTPVersion, close: Bool, withBody: Bool) {
        guard let context else { return }
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: String(message.utf8.count))
        if close {
            headers.add(name: "connection", value: "close")
        } else if version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if withBody {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: message)))), promise: nil)
        }
        context.write(Self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Closes once everything written so far has reached the socket (a plain close would drop it).
    private func flushAndClose() {
        guard let context, !isClosed, !closing else { return }
        closing = true
        cancelTimeout()
        // An empty body part passes the encoder unframed and completes in order after the rest.
        context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer()))))
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
