import NIOCore

/// tcp mode: one instance per client connection, bytes both ways with backpressure and half-close.
enum TCPProxy {
    static func configure(_ channel: any Channel, context: ProxyContext, settings: ProxySettings) -> EventLoopFuture<Void> {
        // Placeholder until the tcp glue lands: refuse rather than pretend.
        channel.close()
    }
}
