import Atomics
import NIOCore

/// One side of a tcp-mode connection: the client's channel or the instance's. Two of them, paired,
/// are the whole data path: each forwards what its channel reads to the other's channel, flushes
/// once per read burst, pauses its reads while the other side cannot take more, and passes EOF
/// on as a half-close.
///
/// Both channels live on one event loop, so the pair talks through plain properties. The hot
/// path (`channelRead`) forwards the `NIOAny` as it came: no unwrap-and-rewrap, no promise, no
/// atomic; bytes are counted locally and added to the instance's shared counter in batches.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, instance }

    let side: Side
    let session: TCPSession
    private(set) var context: ChannelHandlerContext?
    /// The other side, once both are connected; nil again when it has gone.
    private(set) var partner: GlueHandler?
    /// The partner's context, kept apart so the hot path loads one reference, not two.
    private var partnerContext: ChannelHandlerContext?
    /// Where the bytes this side reads are counted (set when paired). Bytes are added to it in
    /// batches (`reportThreshold`, the session's tick, EOF and close) so that small exchanges do
    /// not pay for a shared atomic each.
    private var byteCounter: ManagedAtomic<Int>?
    private var unreportedBytes = 0
    private static let reportThreshold = 64 * 1024
    /// A `read` held back until the partner can take more (or exists at all).
    private var readHeld = false
    /// This channel's own writability, mirrored from `channelWritabilityChanged` so the partner
    /// checks a stored Bool instead of an atomic.
    private(set) var isWritable = true

    init(side: Side, session: TCPSession) {
        self.side = side
        self.session = session
    }

    /// Joins two sides; from now on each side's reads go to the other.
    static func pair(client: GlueHandler, instance: GlueHandler, backend: Backend) {
        client.partner = instance
        client.partnerContext = instance.context
        instance.partner = client
        instance.partnerContext = client.context
        client.byteCounter = backend.counters.bytesToInstance
        instance.byteCounter = backend.counters.bytesFromInstance
        instance.resumeReading()
        client.resumeReading()
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        reportBytes()
        self.context = nil
        partner = nil
        partnerContext = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        context.fireChannelActive()
        session.sideBecameActive(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        reportBytes()
        let partner = self.partner
        self.partner = nil
        partnerContext = nil
        // Nothing more can reach this side; what the partner still holds for its own peer goes
        // out first, then the partner closes.
        partner?.closeAfterFlush()
        session.sideBecameInactive(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.sideFailed(self, error: error)
    }

    // MARK: Data path

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        unreportedBytes &+= unwrapInboundIn(data).readableBytes
        partnerContext?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unreportedBytes >= Self.reportThreshold { reportBytes() }
        session.sawTraffic = true
        partnerContext?.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            reportBytes()
            partner?.shutdownOutputAfterFlush()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Backpressure

    /// Reads pass only while the partner exists and can take more; the rest wait in `readHeld`.
    /// With autoRead on, NIO asks for the next read after every burst, so holding it back is all
    /// it takes to stop reading from a socket whose peer is slow.
    func read(context: ChannelHandlerContext) {
        if let partner, partner.isWritable {
            context.read()
        } else {
            readHeld = true
        }
    }

    private func resumeReading() {
        guard readHeld, let context, let partner, partner.isWritable else { return }
        readHeld = false
        context.read()
    }

    // MARK: Closing

    /// The partner's peer sent EOF: send ours once everything it sent before has been written.
    private func shutdownOutputAfterFlush() {
        afterPendingWrites { context in
            // If this side's input is already closed too, NIO escalates to a full close.
            context.close(mode: .output, promise: nil)
        }
    }

    /// The partner's channel is gone: write out what it handed over, then close.
    private func closeAfterFlush() {
        partner = nil
        partnerContext = nil
        afterPendingWrites { context in context.close(promise: nil) }
    }

    /// Runs `body` once every write queued so far has reached the socket (or failed): an empty
    /// write's promise completes in order behind them.
    private func afterPendingWrites(_ body: @escaping (ChannelHandlerContext) -> Void) {
        guard let context else { return }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: written)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in
            if let context = self.context { body(context) }
        }
    }

    /// Closes this side now, dropping whatever it had not written yet.
    func abort() {
        context?.close(promise: nil)
    }

    func reportBytes() {
        guard unreportedBytes != 0 else { return }
        byteCounter?.wrappingIncrement(by: unreportedBytes, ordering: .relaxed)
        unreportedBytes = 0
    }
}
