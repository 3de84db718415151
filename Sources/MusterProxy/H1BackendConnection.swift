import NIOCore

/// The fast path's keep-alive connection to an instance: the only handler of its pipeline, bytes
/// in and bytes out. While a client exchange holds it (`owner`), the bytes it reads go straight to
/// that exchange on the same event loop, which frames them; between requests it rests in its
/// loop's `H1ConnectionPool`.
final class H1BackendConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let backend: Backend
    let idleTimeout: TimeAmount
    private unowned let pool: H1ConnectionPool
    private var context: ChannelHandlerContext?

    /// The client exchange this connection serves right now; nil while pooled.
    var owner: H1ClientHandler?
    /// Requests handed to this connection so far; more than one means it came from the pool.
    var requestsServed = 0
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    var isPooled = false
    private(set) var isAlive = false
    private var readPending = false

    init(backend: Backend, pool: H1ConnectionPool, idleTimeout: TimeAmount) {
        self.backend = backend
        self.pool = pool
        self.idleTimeout = idleTimeout
    }

    func install(in pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHandler(self)
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func send(_ bytes: ByteBuffer) {
        context?.write(Self.wrapOutboundOut(bytes), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func close() {
        context?.close(promise: nil)
    }

    func resumeReads() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    /// After a 101: `tunnel` relays raw bytes from here on.
    func becomeTunnel(_ tunnel: HTTPTunnelHandler) throws {
        guard let context else { throw ChannelError.ioOnClosedChannel }
        owner = nil
        try context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(tunnel)
        pipeline.removeHandler(context: context, promise: nil)
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
        owner.instanceBytes(Self.unwrapInboundIn(data), from: self)
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
