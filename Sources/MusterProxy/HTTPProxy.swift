import Atomics
import Glibc
import NIOCore
import NIOPosix

/// http mode: HTTP/1.1 per-request round robin with keep-alive pools to each instance.
///
/// Heads are scanned as bytes and forwarded as bytes (`H1Framing`, `H1Rewrite`), with only the
/// forwarding headers added and hop-by-hop headers dropped; bodies pass through as received.
/// NIOHTTP1's codecs did the same job at about 40 µs of CPU per request against HAProxy's 20;
/// decoding every head into Strings and encoding it again was most of it.
enum HTTPProxy {
    /// Hands a client socket a relay worker accepted to one of NIO's event loops, with the
    /// client pipeline (or, when `max_connections` are open, the 503 one). The connection counts
    /// as open until its channel closes.
    static func adopt(_ fd: CInt, context: ProxyContext, settings: ProxySettings, reject: Bool) {
        let counted = ManagedAtomic(false)
        let uncount = { @Sendable in
            if counted.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                context.counters.openConnections.wrappingDecrement(ordering: .relaxed)
            }
        }
        ClientBootstrap(group: context.eventLoopGroup)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.closeFuture.whenComplete { _ in uncount() }
                return reject ? Self.reject(channel, settings: settings) : configure(channel, context: context, settings: settings)
            }
            .withConnectedSocket(fd)
            .whenFailure { error in
                // NIO owns the descriptor from here on and closes it with the channel. (Only a
                // failed fcntl on a fresh socket keeps NIO from making a channel at all.)
                context.logger.debug("cannot hand a connection to NIO", metadata: ["error": "\(error)"])
                uncount()
            }
    }

    /// Client pipeline: one handler, bytes in and out.
    static func configure(_ channel: any Channel, context: ProxyContext, settings: ProxySettings) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let handler = H1ClientHandler(
                proxy: context, settings: settings, pool: .forCurrentLoop(channel.eventLoop),
                client: HTTPClientIdentity(channel.remoteAddress))
            try channel.pipeline.syncOperations.addHandler(handler)
        }
    }

    /// Answers 503 and closes: `max_connections` are open.
    static func reject(_ channel: any Channel, settings: ProxySettings) -> EventLoopFuture<Void> {
        // Called from the child initializer, before the channel is active: a write now would go
        // nowhere, so a handler writes once it is.
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(HTTPRejectHandler())
        }
    }
}
