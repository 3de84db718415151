/// `GET /v1/history`: each service's figures over the last minutes, a sample a second, and its
/// scaling decisions, for charts.
public struct MetricsHistoryResponse: Codable, Sendable, Equatable {
    /// Seconds between samples.
    public var intervalSeconds: Double
    /// Samples kept per service (the oldest go first).
    public var capacity: Int
    public var services: [ServiceMetricsHistory]

    enum CodingKeys: String, CodingKey {
        case capacity, services
        case intervalSeconds = "interval_seconds"
    }

    public init(intervalSeconds: Double, capacity: Int, services: [ServiceMetricsHistory]) {
        self.intervalSeconds = intervalSeconds
        self.capacity = capacity
        self.services = services
    }
}

public struct ServiceMetricsHistory: Codable, Sendable, Equatable {
    public var name: String
    /// Oldest first.
    public var samples: [HistorySample]
    /// Changes of the instance count, oldest first.
    public var decisions: [AutoscaleReport.Decision]

    public init(name: String, samples: [HistorySample], decisions: [AutoscaleReport.Decision]) {
        self.name = name
        self.samples = samples
        self.decisions = decisions
    }
}

public struct HistorySample: Codable, Sendable, Equatable {
    /// Unix time, seconds.
    public var time: Double
    public var rps: Double
    /// Upper bound of the latency bucket holding the median of that second's requests; null as
    /// p99_seconds is.
    public var p50Seconds: Double?
    /// Upper bound of the latency bucket holding the 99th percentile of that second's requests;
    /// null when there were none, without a proxy, or past the last bucket (10 s).
    public var p99Seconds: Double?
    public var ready: Int
    public var desired: Int
    public var cpuPercent: Double
    public var memoryBytes: Int

    enum CodingKeys: String, CodingKey {
        case time, rps, ready, desired
        case p50Seconds = "p50_seconds", p99Seconds = "p99_seconds", cpuPercent = "cpu_percent", memoryBytes = "memory_bytes"
    }

    public init(time: Double, rps: Double, p50Seconds: Double? = nil, p99Seconds: Double?, ready: Int, desired: Int, cpuPercent: Double, memoryBytes: Int) {
        self.time = time
        self.rps = rps
        self.p50Seconds = p50Seconds
        self.p99Seconds = p99Seconds
        self.ready = ready
        self.desired = desired
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
    }

    // Every key is written, p50_seconds and p99_seconds as null when there is none, so charts can rely on it.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(time, forKey: .time)
        try container.encode(rps, forKey: .rps)
        try container.encode(p50Seconds, forKey: .p50Seconds)
        try container.encode(p99Seconds, forKey: .p99Seconds)
        try container.encode(ready, forKey: .ready)
        try container.encode(desired, forKey: .desired)
        try container.encode(cpuPercent, forKey: .cpuPercent)
        try container.encode(memoryBytes, forKey: .memoryBytes)
    }
}
