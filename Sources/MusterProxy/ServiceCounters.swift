import Atomics

/// Per-service counters that belong to no instance: the listener's side.
public final class ServiceCounters: Sendable {
    /// Client connections open right now (what `max_connections` limits).
    public let openConnections = ManagedAtomic<Int>(0)
    public let acceptedConnections = ManagedAtomic<Int>(0)
    /// Connections refused because `max_connections` were open (503 in http mode, close in tcp).
    public let rejectedConnections = ManagedAtomic<Int>(0)
    /// Requests answered 503 because no instance became ready within `queue_timeout`.
    public let queueTimeouts = ManagedAtomic<Int>(0)
    /// Malformed, oversized or too slow requests answered 400/431/408 by the proxy itself.
    public let badRequests = ManagedAtomic<Int>(0)
    /// Requests that reached no instance because every try failed (answered 502).
    public let failedRequests = ManagedAtomic<Int>(0)

    public init() {}
}
