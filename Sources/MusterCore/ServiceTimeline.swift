/// One service's figures over the last minutes, for charts (`GET /v1/history`, the dashboard):
/// a sample a second and each scaling decision, in two fixed rings, so a service costs the same
/// memory after a day as after a minute.
public struct ServiceTimeline: Sendable {
    /// One second of a service, as the sampler saw it at `time`.
    public struct Sample: Sendable, Equatable {
        /// Unix time, seconds.
        public var time: Double
        /// Requests (http) or connections (tcp) a second through the proxy since the last sample.
        public var rps: Double
        /// Upper bound of the latency bucket holding the median of the requests answered since
        /// the last sample; nil when there were none (or no proxy).
        public var p50Seconds: Double?
        /// Upper bound of the latency bucket holding the 99th percentile of the requests answered
        /// since the last sample; nil when there were none (or no proxy).
        public var p99Seconds: Double?
        public var ready: Int
        public var desired: Int
        /// The instances' CPU, summed (100 = one core).
        public var cpuPercent: Double
        public var memoryBytes: Int

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
    }

    /// A change of the instance count: by the autoscaler or by `musterctl scale`.
    public struct ScalingMark: Sendable, Equatable {
        public var time: Double
        public var from: Int
        public var to: Int
        /// Why, in the words of the `autoscaled`/`scaled` event.
        public var reason: String

        public init(time: Double, from: Int, to: Int, reason: String) {
            self.time = time
            self.from = from
            self.to = to
            self.reason = reason
        }
    }

    /// What the sampler reads from the live service each second; counters only ever grow while
    /// their instance lives.
    public struct Reading: Sendable {
        public var requestsTotal: Int
        public var latencyCounts: [Int]
        public var ready: Int
        public var desired: Int
        public var cpuPercent: Double
        public var memoryBytes: Int

        public init(requestsTotal: Int, latencyCounts: [Int], ready: Int, desired: Int, cpuPercent: Double, memoryBytes: Int) {
            self.requestsTotal = requestsTotal
            self.latencyCounts = latencyCounts
            self.ready = ready
            self.desired = desired
            self.cpuPercent = cpuPercent
            self.memoryBytes = memoryBytes
        }
    }

    /// 15 minutes at one sample a second.
    public static let sampleCapacity = 900
    public static let markCapacity = 100

    /// The ring keeps each sample in 32 bytes instead of a `Sample`'s 80: at 200 services a full
    /// history was 14 MB of the daemon's memory, now 5.8 MB. Rates and CPU keep 7 significant
    /// digits (read back rounded to thousandths), latencies microseconds, memory KiB.
    struct PackedSample: Sendable {
        var time: Double
        var rps: Float
        var p50: Float   // NaN: none
        var p99: Float   // NaN: none
        var cpu: Float
        var memoryKiB: UInt32
        var ready: UInt16
        var desired: UInt16

        init(_ sample: Sample) {
            time = sample.time
            rps = Float(sample.rps)
            p50 = sample.p50Seconds.map(Float.init) ?? .nan
            p99 = sample.p99Seconds.map(Float.init) ?? .nan
            cpu = Float(sample.cpuPercent)
            memoryKiB = UInt32(clamping: (max(0, sample.memoryBytes) + 512) / 1024)
            ready = UInt16(clamping: sample.ready)
            desired = UInt16(clamping: sample.desired)
        }

        var sample: Sample {
            func rounded(_ value: Float, _ scale: Double) -> Double { (Double(value) * scale).rounded() / scale }
            return Sample(time: time, rps: rounded(rps, 1000), p50Seconds: p50.isNaN ? nil : rounded(p50, 1_000_000),
                          p99Seconds: p99.isNaN ? nil : rounded(p99, 1_000_000), ready: Int(ready), desired: Int(desired),
                          cpuPercent: rounded(cpu, 1000), memoryBytes: Int(memoryKiB) * 1024)
        }
    }

    /// The samples, oldest first, unpacked as they are read.
    public struct Samples: Sendable {
        fileprivate var ring = SampleRing<PackedSample>(capacity: sampleCapacity)
        public var count: Int { ring.count }
        public var elements: [Sample] { ring.elements.map(\.sample) }
        public var last: Sample? { ring.last?.sample }
    }

    /// Bytes one sample takes in the ring (docs/operations.md states the bytes per service).
    public static var bytesPerSample: Int { MemoryLayout<PackedSample>.stride }

    public private(set) var samples = Samples()
    public private(set) var marks = SampleRing<ScalingMark>(capacity: markCapacity)
    private var previous: (time: Double, requests: Int, latency: [Int])?

    public init() {}

    /// Adds the sample for `reading` taken at `time`. The first reading only sets the baseline
    /// for rates: it is recorded with rps 0 and no p99.
    public mutating func record(_ reading: Reading, at time: Double, bounds: [Double]) {
        var rps = 0.0
        var p50: Double?, p99: Double?
        if let previous, time > previous.time {
            rps = Double(max(0, reading.requestsTotal - previous.requests)) / (time - previous.time)
            let added = LatencyBuckets.delta(reading.latencyCounts, since: previous.latency)
            // Past the last bound (10 s) there is no number to chart; JSON has no infinity.
            p50 = LatencyBuckets.upperBound(0.5, counts: added, bounds: bounds).flatMap { $0.isFinite ? $0 : nil }
            p99 = LatencyBuckets.upperBound(0.99, counts: added, bounds: bounds).flatMap { $0.isFinite ? $0 : nil }
        }
        previous = (time, reading.requestsTotal, reading.latencyCounts)
        samples.ring.append(PackedSample(Sample(time: time, rps: rps, p50Seconds: p50, p99Seconds: p99, ready: reading.ready,
                                                desired: reading.desired, cpuPercent: reading.cpuPercent, memoryBytes: reading.memoryBytes)))
    }

    public mutating func mark(_ mark: ScalingMark) {
        marks.append(mark)
    }
}
