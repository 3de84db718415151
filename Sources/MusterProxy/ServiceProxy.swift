import Logging
import MusterCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One service's proxy: its listeners and the connections they accept. Owned by the supervisor;
/// the rotation it balances over is `backends`, which the supervisor keeps current.
public final class ServiceProxy: Sendable {
    public let service: String
    public let context: ProxyContext
    public var backends: BackendSet { context.backends }
    public var counters: ServiceCounters { context.counters }
    private let listeners = NIOLockedValueBox<[ListenAddress: any Channel]>([:])

    public init(service: String, spec: ProxySpec, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.service = service
        var logger = logger
        logger[metadataKey: "service"] = "\(service)"
        context = ProxyContext(
            service: service, settings: ProxySettings(spec), backends: BackendSet(),
            eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// The addresses listened on right now, with the port the kernel chose for port 0.
    public var boundAddresses: [ListenAddress: SocketAddress] {
        listeners.withLockedValue { $0.compactMapValues { $0.localAddress } }
    }

    /// Applies `spec`: binds the addresses not yet listened on, then closes the ones no longer
    /// named, and keeps the rest open (a reload never drops a listener it keeps). Settings apply
    /// to connections accepted from now on. When an address cannot be bound, the ones this call
    /// bound are closed again and `ProxyBindError` is thrown: the proxy is as it was.
    public func apply(_ spec: ProxySpec, inherited: [ListenAddress: CInt] = [:]) async throws {
        let current = listeners.withLockedValue { Array($0.keys) }
        var bound: [ListenAddress: any Channel] = [:]
        for address in spec.listen where !current.contains(address) {
            do {
                bound[address] = try await bind(address, inheritedSocket: inherited[address])
            } catch {
                for channel in bound.values { try? await channel.close() }
                throw error
            }
        }
        context.settings = ProxySettings(spec)
        listeners.withLockedValue { $0.merge(bound) { _, new in new } }
        let removed = current.filter { !spec.listen.contains($0) }.compactMap { address in
            listeners.withLockedValue { $0.removeValue(forKey: address) }
        }
        await Self.closeListeners(removed)
    }

    /// Stops accepting; connections already open go on until they finish or are closed by the
    /// drain of their instances. Waiting requests fail with 503.
    public func close() async {
        let channels = listeners.withLockedValue { state in
            defer { state.removeAll() }
            return Array(state.values)
        }
        await Self.closeListeners(channels)
        backends.failWaiters(.closing)
    }

    /// Stops accepting first, and closes a moment later: NIO closes a connection it accepted if
    /// the listener is closed before that connection's setup has finished, and the client would
    /// see a reset instead of an answer (or, under socket activation, the next musterd's).
    private static func closeListeners(_ channels: [any Channel]) async {
        guard !channels.isEmpty else { return }
        for channel in channels { try? await channel.setOption(ChannelOptions.autoRead, value: false).get() }
        try? await Task.sleep(for: .milliseconds(50))
        for channel in channels { try? await channel.close() }
    }

    private func bind(_ address: ListenAddress, inheritedSocket: CInt?) async throws -> any Channel {
        let context = self.context
        let bootstrap = ServerBootstrap(group: context.eventLoopGroup)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                ServiceProxy.admit(channel, context: context)
            }
        do {
            if let inheritedSocket {
                return try await bootstrap.withBoundSocket(inheritedSocket).get()
            }
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw ProxyBindError(service: service, address: address, underlying: "\(error)")
        }
    }

    /// Counts the connection against `max_connections` and hands it to the mode's pipeline.
    private static func admit(_ channel: any Channel, context: ProxyContext) -> EventLoopFuture<Void> {
        let settings = context.settings
        let open = context.counters.openConnections.wrappingIncrementThenLoad(ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in
            context.counters.openConnections.wrappingDecrement(ordering: .relaxed)
        }
        guard open <= settings.maxConnections else {
            context.counters.rejectedConnections.wrappingIncrement(ordering: .relaxed)
            switch settings.mode {
            case .http: return HTTPProxy.reject(channel, settings: settings)
            case .tcp: return channel.close()
            }
        }
        context.counters.acceptedConnections.wrappingIncrement(ordering: .relaxed)
        switch settings.mode {
        case .http: return HTTPProxy.configure(channel, context: context, settings: settings)
        case .tcp: return TCPProxy.configure(channel, context: context, settings: settings)
        }
    }
}

/// A listen address that could not be bound, named for the operator.
public struct ProxyBindError: Error, CustomStringConvertible, Sendable {
    public var service: String
    public var address: ListenAddress
    public var underlying: String
    public var description: String { "\(service): cannot listen on \(address): \(underlying)" }
}
