import NIOCore

/// http mode: HTTP/1.1 per-request round robin with keep-alive pools to each instance.
enum HTTPProxy {
    static func configure(_ channel: any Channel, context: ProxyContext, settings: ProxySettings) -> EventLoopFuture<Void> {
        // Placeholder until the http proxy lands: refuse rather than pretend.
        channel.close()
    }

    /// Answers 503 and closes: `max_connections` are open.
    static func reject(_ channel: any Channel, settings: ProxySettings) -> EventLoopFuture<Void> {
        let body = "503 Service Unavailable: too many connections\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
        let buffer = channel.allocator.buffer(string: text)
        return channel.writeAndFlush(buffer).flatMap { channel.close() }
    }
}
