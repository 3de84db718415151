/// What the proxy saw of a canary so far: its counters, read at one moment.
public struct CanarySample: Sendable, Equatable {
    /// Answered requests plus failed connections.
    public var requests: Int
    /// 5xx answers, requests that got no answer, and failed connections.
    public var errors: Int
    /// Non-cumulative latency counts, one per bound in `bounds` plus a last +Inf bucket.
    public var latencyBuckets: [Int]
    /// Upper bounds of the latency buckets, in seconds.
    public var bounds: [Double]

    public init(requests: Int, errors: Int, latencyBuckets: [Int] = [], bounds: [Double] = []) {
        self.requests = requests
        self.errors = errors
        self.latencyBuckets = latencyBuckets
        self.bounds = bounds
    }

    public var errorRate: Double { requests == 0 ? 0 : Double(errors) / Double(requests) }

    /// The upper bound of the bucket holding the 99th percentile (+Inf past the last bound); nil
    /// with no latency recorded. A bound, not an estimate: "p99 ≤ 250ms" holds when this does.
    public var p99: Double? { LatencyBuckets.upperBound(0.99, counts: latencyBuckets, bounds: bounds) }
}

/// Counters in, verdict out: whether a canary stays, goes, or is promoted.
///
/// Rules: a crash or a failing health check rolls back at once. Error rate and p99 are judged only
/// once the canary has served `minimumRequests` (fewer say nothing: 1 error in 3 requests is not
/// 33%). Past `canary_duration` within the limits it is promoted; a canary behind a proxy that has
/// not yet served `minimumRequests` by then is promoted on its health alone.
public enum CanaryJudge {
    public static let minimumRequests = 20

    public enum Verdict: Sendable, Equatable {
        case keepJudging
        case promote
        case rollBack(reason: String)
    }

    /// - Parameters:
    ///   - sample: the canary's counters since it became ready (nil: no proxy, health alone).
    ///   - elapsed: time since every canary instance became ready; nil while they are not yet.
    ///   - failure: a crash or failed health check, said in words; nil when there is none.
    public static func judge(_ sample: CanarySample?, limits: DeploySpec, elapsed: Duration?, failure: String?) -> Verdict {
        if let failure { return .rollBack(reason: failure) }
        if let sample, sample.requests >= minimumRequests {
            if sample.errorRate > limits.maxErrorRate {
                return .rollBack(reason: "error rate \(percent(sample.errorRate)) > \(limitText(limits.maxErrorRate))")
            }
            if let bound = limits.maxP99, let p99 = sample.p99, p99 > bound.seconds {
                return .rollBack(reason: "p99 \(p99.isFinite ? millis(p99) : "over \(millis(sample.bounds.last ?? 0))") > \(millis(bound.seconds))")
            }
        }
        guard let elapsed, elapsed >= limits.canaryDuration else { return .keepJudging }
        return .promote
    }

    /// A measured share, one decimal: 0.48 → "48.0%".
    public static func percent(_ share: Double) -> String {
        "\(Double(Int((share * 1000).rounded())) / 10)%"
    }

    /// A limit as written: 0.01 → "1%", 0.005 → "0.5%".
    public static func limitText(_ share: Double) -> String {
        let value = (share * 1000).rounded() / 10
        return value == value.rounded() ? "\(Int(value))%" : "\(value)%"
    }

    static func millis(_ seconds: Double) -> String {
        let ms = seconds * 1000
        return ms == ms.rounded() ? "\(Int(ms))ms" : "\(Double(Int((ms * 10).rounded())) / 10)ms"
    }
}
