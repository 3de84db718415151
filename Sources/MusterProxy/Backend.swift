import Atomics
import NIOCore

/// One instance as the proxy sees it: where it listens and what has passed through it.
/// Created by the supervisor when the instance becomes ready, handed to `BackendSet.setReady`.
/// A new start of the same slot is a new `Backend` (a new generation), so counters and pooled
/// connections of a stopped process never leak into its successor.
public final class Backend: Sendable, CustomStringConvertible {
    public let service: String
    public let index: Int
    public let generation: Int
    public let address: SocketAddress
    public let counters = BackendCounters()
    /// Set when the instance leaves the rotation for good (draining, stopping): pools stop reusing
    /// connections to it and close them as they come back.
    public let retired = ManagedAtomic<Bool>(false)
    /// Whether its `BackendSet`'s outlier detector holds failures of it: only then does a
    /// success take the set's lock (to forget them).
    let outlierTracked = ManagedAtomic<Bool>(false)

    public init(service: String, index: Int, generation: Int, address: SocketAddress) {
        self.service = service
        self.index = index
        self.generation = generation
        self.address = address
    }

    /// "web/0".
    public var description: String { "\(service)/\(index)" }
}

/// Counters the data plane bumps on the hot path with relaxed atomics; the control plane reads
/// them for `status`, the autoscaler and `/metrics`.
public final class BackendCounters: Sendable {
    /// http: requests sent and not yet answered in full; tcp: open proxied connections.
    public let inFlight = ManagedAtomic<Int>(0)
    /// Responses by status class: [0] = no response (instance error), [1]…[5] = 1xx…5xx.
    /// tcp mode counts each finished connection under [2].
    public let responses: [ManagedAtomic<Int>] = (0...5).map { _ in ManagedAtomic<Int>(0) }
    /// Bytes from clients to the instance, and from the instance back to clients.
    public let bytesToInstance = ManagedAtomic<Int>(0)
    public let bytesFromInstance = ManagedAtomic<Int>(0)
    public let connectFailures = ManagedAtomic<Int>(0)
    /// Times the proxy took it out of the rotation for failing (`eject_after`).
    public let ejections = ManagedAtomic<Int>(0)
    /// Time from request sent (or connect started) to first response byte, in the proxy's buckets.
    public let latency = LatencyHistogram()

    public init() {}

    public func countResponse(status: Int) {
        let bucket = (100...599).contains(status) ? status / 100 : 0
        responses[bucket].wrappingIncrement(ordering: .relaxed)
    }

    public var requestsTotal: Int { responses.reduce(0) { $0 + $1.load(ordering: .relaxed) } }
}

/// Fixed buckets, atomically counted, in the shape Prometheus histograms want.
public final class LatencyHistogram: Sendable {
    /// Upper bounds in seconds; a last, implicit +Inf bucket follows.
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private static let boundsNanos: [Int64] = bounds.map { Int64($0 * 1e9) }
    /// Non-cumulative counts; index `bounds.count` is +Inf.
    public let buckets: [ManagedAtomic<Int>] = (0...LatencyHistogram.bounds.count).map { _ in ManagedAtomic<Int>(0) }
    public let sumNanos = ManagedAtomic<Int>(0)

    public init() {}

    public func record(nanoseconds: Int64) {
        var slot = Self.boundsNanos.count
        for (index, bound) in Self.boundsNanos.enumerated() where nanoseconds <= bound {
            slot = index
            break
        }
        buckets[slot].wrappingIncrement(ordering: .relaxed)
        sumNanos.wrappingIncrement(by: Int(nanoseconds), ordering: .relaxed)
    }

    public var count: Int { buckets.reduce(0) { $0 + $1.load(ordering: .relaxed) } }
}
