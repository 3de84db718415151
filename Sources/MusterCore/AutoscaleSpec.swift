/// A service's `[autoscale]` table: the bounds and the signal that decide its instance count.
public struct AutoscaleSpec: Sendable, Equatable, Codable {
    public enum Metric: String, Sendable, Equatable, CaseIterable, Codable {
        /// In-flight requests (tcp: open connections) per instance, held requests included.
        case concurrency
        /// Requests (tcp: new connections) per second per instance.
        case rps
        /// Cores of CPU per instance, from each instance cgroup's `cpu.stat`.
        case cpu
        /// Bytes of memory per instance, from each instance cgroup's current usage.
        case memory

        /// Needs the service's proxy to measure it.
        public var comesFromProxy: Bool { self == .concurrency || self == .rps }
    }

    public var min: Int = 1
    public var max: Int
    public var metric: Metric = .concurrency
    /// Load per instance the scaler aims at, in the metric's unit.
    public var target: Double = 10
    /// No change while the load per instance is within ±tolerance of the target (0.1 = 10%).
    public var tolerance: Double = 0.1
    /// The stable averaging window.
    public var window: Duration = .seconds(30)
    /// The short window: load above `panicThreshold` × capacity scales up at once.
    public var panicWindow: Duration = .seconds(3)
    public var panicThreshold: Double = 2.0
    /// Scale down only to the highest recommendation of this long.
    public var scaleDownDelay: Duration = .seconds(60)
    /// Most instances added per decision; 0: no limit.
    public var maxScaleUp: Int = 0
    /// Most instances removed per decision; 0: no limit.
    public var maxScaleDown: Int = 1
    /// With `min = 0`: idle this long (no requests, no connections) → no instances.
    public var scaleToZeroAfter: Duration = .seconds(300)

    public init(min: Int = 1, max: Int, metric: Metric = .concurrency, target: Double = 10) {
        self.min = min
        self.max = max
        self.metric = metric
        self.target = target
    }

    /// `count` held within [min, max].
    public func clamped(_ count: Int) -> Int { Swift.min(Swift.max(count, min), max) }
}
