import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The control API on a listening socket systemd passed (socket activation, FileDescriptorName
/// `control`). Hummingbird's Application binds its own address and cannot take a bound socket,
/// so this is the part of it that differs: NIO adopts the descriptor (`withBoundSocket`), and
/// each accepted connection is served by HummingbirdCore's HTTP/1.1 channel with the same router
/// and middleware as the socket musterd binds itself. systemd keeps the socket across musterd
/// restarts: a `musterctl` run meanwhile waits instead of failing to connect.
public struct AdoptedSocketServer: Service {
    let descriptor: CInt
    let responder: RouterResponder<ControlContext>
    let logger: Logger
    let onServerRunning: @Sendable () -> Void

    public init(descriptor: CInt, router: Router<ControlContext>, logger: Logger, onServerRunning: @escaping @Sendable () -> Void) {
        self.descriptor = descriptor
        responder = router.buildResponder()
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        let responder = self.responder
        let logger = self.logger
        // What Application.run does per request: a context from the channel, the router's
        // answer (an unexpected error becomes a bare 500), then the response written out.
        let http1 = HTTP1Channel(responder: { request, responseWriter, channel in
            let context = ControlContext(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                logger.debug("unexpected error answering the control API", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.server] = "musterd"
            try await responseWriter.write(response: response.head, body: response.body)
        })
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { child in
                http1.setup(channel: child, logger: logger).map { connection in
                    Task { await http1.handle(value: connection, logger: logger) }
                }
            }
            .withBoundSocket(descriptor)
            .get()
        onServerRunning()
        try await withGracefulShutdownHandler {
            try await server.closeFuture.get()
        } onGracefulShutdown: {
            server.close(promise: nil)
        }
    }
}
