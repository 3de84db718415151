import Logging
import MusterCore
import NIOConcurrencyHelpers
import NIOCore

/// One service's proxy: its listeners and the connections they accept. Owned by the supervisor;
/// the rotation it balances over is `backends`, which the supervisor keeps current.
public final class ServiceProxy: Sendable {
    public let service: String
    public let context: ProxyContext
    public var backends: BackendSet { context.backends }
    public var counters: ServiceCounters { context.counters }
    private let listeners = NIOLockedValueBox<[ListenAddress: ProxyListener]>([:])

    public init(service: String, spec: ProxySpec, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.service = service
        var logger = logger
        logger[metadataKey: "service"] = "\(service)"
        context = ProxyContext(
            service: service, settings: ProxySettings(spec), backends: BackendSet(timers: eventLoopGroup),
            eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// The addresses listened on right now, with the port the kernel chose for port 0.
    public var boundAddresses: [ListenAddress: SocketAddress] {
        listeners.withLockedValue { $0.compactMapValues { $0.localAddress } }
    }

    /// Applies `spec`: binds the addresses not yet listened on, then closes the ones no longer
    /// named, and keeps the rest open (a reload never drops a listener it keeps, also when it
    /// changes the mode). Settings apply to connections accepted from now on. When an address
    /// cannot be bound, the ones this call bound are closed again and `ProxyBindError` is thrown:
    /// the proxy is as it was.
    public func apply(_ spec: ProxySpec, inherited: [ListenAddress: CInt] = [:]) async throws {
        let current = listeners.withLockedValue { Array($0.keys) }
        var bound: [ListenAddress: ProxyListener] = [:]
        for address in spec.listen where !current.contains(address) {
            do {
                bound[address] = try ProxyListener.open(address, inheritedSocket: inherited[address], context: context)
            } catch {
                for listener in bound.values { listener.close() }
                throw error
            }
        }
        context.settings = ProxySettings(spec)
        context.backends.configure(balance: spec.balance, ejectAfter: spec.ejectAfter, ejectFor: spec.ejectFor)
        listeners.withLockedValue { $0.merge(bound) { _, new in new } }
        for listener in bound.values { TCPRelay.shared.add(listener) }
        let removed = current.filter { !spec.listen.contains($0) }.compactMap { address in
            listeners.withLockedValue { $0.removeValue(forKey: address) }
        }
        await Self.closeListeners(removed)
    }

    /// Stops accepting; connections already open go on until they finish or are closed by the
    /// drain of their instances. Waiting requests fail with 503.
    public func close() async {
        let closing = listeners.withLockedValue { state in
            defer { state.removeAll() }
            return Array(state.values)
        }
        await Self.closeListeners(closing)
        backends.failWaiters(.closing)
    }

    /// Every relay worker lets go of a listener before its socket is closed: its descriptor
    /// number could otherwise be reused for something else while a worker still accepts on it.
    private static func closeListeners(_ closing: [ProxyListener]) async {
        for listener in closing {
            await TCPRelay.shared.remove(listener)
            listener.close()
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
