import Atomics
import NIOCore

/// After a 101 the two connections stop speaking HTTP: each side's `HTTPTunnelHandler` hands the
/// bytes it reads to its partner, and reads only while the partner can write (the connect-proxy
/// glue pattern). The upgraded request stays in flight on its instance until the tunnel closes.
final class HTTPTunnelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The request's hold on its instance, released once when either side closes.
    final class Lease {
        let backend: Backend
        private var released = false

        init(backend: Backend) { self.backend = backend }

        func release() {
            guard !released else { return }
            released = true
            backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
        }
    }

    private var partner: HTTPTunnelHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false
    private let lease: Lease
    /// The client side counts bytes towards the instance, the instance side bytes back.
    private let bytesCounter: ManagedAtomic<Int>

    private init(lease: Lease, bytesCounter: ManagedAtomic<Int>) {
        self.lease = lease
        self.bytesCounter = bytesCounter
    }

    /// (client side, instance side), joined.
    static func pair(for backend: Backend) -> (client: HTTPTunnelHandler, instance: HTTPTunnelHandler) {
        let lease = Lease(backend: backend)
        let client = HTTPTunnelHandler(lease: lease, bytesCounter: backend.counters.bytesToInstance)
        let instance = HTTPTunnelHandler(lease: lease, bytesCounter: backend.counters.bytesFromInstance)
        client.partner = instance
        instance.partner = client
        return (client, instance)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        bytesCounter.wrappingIncrement(by: buffer.readableBytes, ordering: .relaxed)
        // Flushed at once: bytes the HTTP decoder held back arrive outside any read cycle, with
        // no readComplete behind them.
        partner?.context?.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        lease.release()
        let partner = self.partner
        self.partner = nil
        partner?.partner = nil
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(ChannelEvent.inputClosed) = event as? ChannelEvent {
            partner?.context?.close(mode: .output, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? true {
            context.read()
        } else {
            readPending = true
        }
    }

    private func resumeReads() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }
}
