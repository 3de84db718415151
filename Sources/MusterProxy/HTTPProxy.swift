import NIOCore
import NIOHTTP1

/// http mode: HTTP/1.1 per-request round robin with keep-alive pools to each instance.
enum HTTPProxy {
    /// Client pipeline: response encoder, request decoder (limits from the settings; bytes past
    /// an upgrade request are kept for the tunnel), then the handler that does the proxying.
    /// Parser errors reach `HTTPClientHandler.errorCaught`, which answers 400 or 431.
    static func configure(_ channel: any Channel, context: ProxyContext, settings: ProxySettings) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = settings.maxHeaderBytes
            limits.maxHeaderListSize = settings.maxHeaderBytes
            let encoder = HTTPResponseEncoder()
            let decoder = ByteToMessageHandler(
                HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop, limitConfiguration: limits))
            let handler = HTTPClientHandler(
                proxy: context, settings: settings, pool: .forCurrentLoop(channel.eventLoop),
                client: HTTPClientIdentity(channel.remoteAddress), encoder: encoder, decoder: decoder)
            try channel.pipeline.syncOperations.addHandlers([encoder, decoder, handler])
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
