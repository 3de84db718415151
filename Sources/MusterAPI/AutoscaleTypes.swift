/// An autoscaled service in `status`: enough to read the scaler's state at a glance.
public struct AutoscaleSummary: Codable, Sendable, Equatable {
    /// "concurrency", "rps", "cpu" or "memory".
    public var metric: String
    /// Load per instance aimed at, in the metric's unit (cores for cpu, bytes for memory).
    public var target: Double
    public var min: Int
    public var max: Int
    /// The count the autoscaler last chose (or the operator set while paused).
    public var desired: Int
    /// Instances serving now (ready).
    public var current: Int
    /// The whole service's load averaged over the stable window; null before the first sample.
    public var load: Double?
    public var paused: Bool
    public var panicking: Bool

    public init(metric: String, target: Double, min: Int, max: Int, desired: Int, current: Int, load: Double?,
                paused: Bool, panicking: Bool) {
        self.metric = metric
        self.target = target
        self.min = min
        self.max = max
        self.desired = desired
        self.current = current
        self.load = load
        self.paused = paused
        self.panicking = panicking
    }
}

/// `GET /v1/services/{name}/autoscale`: the scaler's state, its windows and its last decisions.
public struct AutoscaleReport: Codable, Sendable, Equatable {
    public struct Load: Codable, Sendable, Equatable {
        /// The last tick's sample (whole service).
        public var last: Double
        /// Averaged over `window_seconds`.
        public var stable: Double
        /// The panic signal: the higher of the panic window's average and the last sample.
        public var panic: Double
        /// `stable` divided by the instances serving (the whole of it when none is).
        public var perInstance: Double

        enum CodingKeys: String, CodingKey {
            case last, stable, panic
            case perInstance = "per_instance"
        }

        public init(last: Double, stable: Double, panic: Double, perInstance: Double) {
            self.last = last
            self.stable = stable
            self.panic = panic
            self.perInstance = perInstance
        }
    }

    /// A change of the instance count, and why.
    public struct Decision: Codable, Sendable, Equatable {
        /// Unix time in seconds, like an event's.
        public var time: Double
        public var from: Int
        public var to: Int
        /// "concurrency 41.3 over 3s (panic), target 10".
        public var reason: String

        public init(time: Double, from: Int, to: Int, reason: String) {
            self.time = time
            self.from = from
            self.to = to
            self.reason = reason
        }
    }

    public var service: String
    public var metric: String
    public var target: Double
    public var min: Int
    public var max: Int
    public var tolerance: Double
    public var windowSeconds: Double
    public var panicWindowSeconds: Double
    public var panicThreshold: Double
    public var scaleDownDelaySeconds: Double
    public var scaleToZeroAfterSeconds: Double
    public var intervalSeconds: Double
    public var desired: Int
    /// Instances serving now (ready).
    public var current: Int
    public var paused: Bool
    public var panicking: Bool
    public var load: Load
    /// Requests held at the proxy waiting for an instance now.
    public var queued: Int
    /// What the last tick concluded, changed or not; null before the first tick.
    public var lastReason: String?
    /// The most recent changes, oldest first.
    public var decisions: [Decision]

    enum CodingKeys: String, CodingKey {
        case service, metric, target, min, max, tolerance, desired, current, paused, panicking, load, queued, decisions
        case windowSeconds = "window_seconds"
        case panicWindowSeconds = "panic_window_seconds"
        case panicThreshold = "panic_threshold"
        case scaleDownDelaySeconds = "scale_down_delay_seconds"
        case scaleToZeroAfterSeconds = "scale_to_zero_after_seconds"
        case intervalSeconds = "interval_seconds"
        case lastReason = "last_reason"
    }

    public init(service: String, metric: String, target: Double, min: Int, max: Int, tolerance: Double, windowSeconds: Double,
                panicWindowSeconds: Double, panicThreshold: Double, scaleDownDelaySeconds: Double,
                scaleToZeroAfterSeconds: Double, intervalSeconds: Double, desired: Int, current: Int, paused: Bool,
                panicking: Bool, load: Load, queued: Int, lastReason: String?, decisions: [Decision]) {
        self.service = service
        self.metric = metric
        self.target = target
        self.min = min
        self.max = max
        self.tolerance = tolerance
        self.windowSeconds = windowSeconds
        self.panicWindowSeconds = panicWindowSeconds
        self.panicThreshold = panicThreshold
        self.scaleDownDelaySeconds = scaleDownDelaySeconds
        self.scaleToZeroAfterSeconds = scaleToZeroAfterSeconds
        self.intervalSeconds = intervalSeconds
        self.desired = desired
        self.current = current
        self.paused = paused
        self.panicking = panicking
        self.load = load
        self.queued = queued
        self.lastReason = lastReason
        self.decisions = decisions
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(service, forKey: .service)
        try c.encode(metric, forKey: .metric)
        try c.encode(target, forKey: .target)
        try c.encode(min, forKey: .min)
        try c.encode(max, forKey: .max)
        try c.encode(tolerance, forKey: .tolerance)
        try c.encode(windowSeconds, forKey: .windowSeconds)
        try c.encode(panicWindowSeconds, forKey: .panicWindowSeconds)
        try c.encode(panicThreshold, forKey: .panicThreshold)
        try c.encode(scaleDownDelaySeconds, forKey: .scaleDownDelaySeconds)
        try c.encode(scaleToZeroAfterSeconds, forKey: .scaleToZeroAfterSeconds)
        try c.encode(intervalSeconds, forKey: .intervalSeconds)
        try c.encode(desired, forKey: .desired)
        try c.encode(current, forKey: .current)
        try c.encode(paused, forKey: .paused)
        try c.encode(panicking, forKey: .panicking)
        try c.encode(load, forKey: .load)
        try c.encode(queued, forKey: .queued)
        try c.encode(lastReason, forKey: .lastReason)
        try c.encode(decisions, forKey: .decisions)
    }
}
