import MusterCore
import NIOCore

/// The `[proxy]` table in the units the data plane works in. Immutable; a reload that changes
/// settings swaps in a new one, which connections accepted from then on use.
public struct ProxySettings: Sendable {
    public var mode: ProxySpec.Mode
    public var maxConnections: Int
    public var connectTimeout: TimeAmount
    public var idleTimeout: TimeAmount
    public var retries: Int
    public var drainTimeout: TimeAmount
    public var queueTimeout: TimeAmount
    /// A client must send a request's whole header block within this long (slowloris guard).
    public var headerTimeout: TimeAmount = .seconds(10)
    /// Largest header block accepted; more is a 431.
    public var maxHeaderBytes: Int = 64 * 1024

    public init(_ spec: ProxySpec) {
        mode = spec.mode
        maxConnections = spec.maxConnections
        connectTimeout = TimeAmount(spec.connectTimeout)
        idleTimeout = TimeAmount(spec.idleTimeout)
        retries = spec.retries
        drainTimeout = TimeAmount(spec.drainTimeout)
        queueTimeout = TimeAmount(spec.queueTimeout)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
