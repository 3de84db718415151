import NIOCore
import NIOHTTP1

/// One keep-alive connection to an instance, and the last handler of its pipeline. While a client
/// exchange holds it (`owner`), response parts go straight to that exchange on the same event
/// loop; between requests it rests in its loop's `HTTPConnectionPool`.
final class HTTPBackendConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let backend: Backend
    let idleTimeout: TimeAmount
    private unowned let pool: HTTPConnectionPool
    private let encoder = HTTPRequestEncoder()
    private let decoder = ByteToMessageHandler(
        HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward))
    private var context: ChannelHandlerContext?

    /// The client exchange this connection serves right now; nil while pooled.
    var owner: HTTPClientHandler?
    /// Requests handed to this connection so far; more than one means it came from the pool.
    var requestsServed = 0
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    var isPooled = false
    private(set) var isAlive = false
    private var readPending = false

    init(backend: Backend, pool: HTTPConnectionPool, idleTimeout: TimeAmount) {
        self.backend = backend
        self.pool = pool
        self.idleTimeout = idleTimeout
    }

    /// Called by the channel initializer: request encoder, response decoder (which must see the
    /// requests to know a HEAD response has no body), then this handler.
    func install(in pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandlers([encoder, decoder, self])
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func send(_ part: HTTPClientRequestPart) {
        context?.write(Self.wrapOutboundOut(part), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        context?.close(promise: nil)
    }

    /// Reads resume after the client caught up (or the connection went back to the pool).
    func resumeReads() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    /// After a 101: the HTTP codecs leave and `tunnel` relays raw bytes. Bytes the decoder held
    /// past the 101 reach the tunnel when the decoder is removed (`.forwardBytes`).
    func becomeTunnel(_ tunnel: HTTPTunnelHandler) throws {
        guard let context else { throw ChannelError.ioOnClosedChannel }
        owner = nil
        try context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(tunnel)
        pipeline.removeHandler(context: context, promise: nil)
        pipeline.removeHandler(encoder, promise: nil)
        pipeline.removeHandler(decoder, promise: nil)
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isAlive = context.channel.isActive
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        isAlive = true
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isAlive = false
        if isPooled { pool.remove(self) }
        let owner = self.owner
        self.owner = nil
        owner?.backendClosed(self)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let owner else {
            // An idle instance connection has nothing to say; anything it does say means the
            // connection is no longer in a state we can reuse.
            context.close(promise: nil)
            return
        }
        owner.responsePart(Self.unwrapInboundIn(data), from: self)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.backendReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.backendWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A malformed response or a reset: this connection is done either way; channelInactive
        // tells the owner.
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if let owner, !owner.clientWritable {
            readPending = true
            return
        }
        context.read()
    }
}
