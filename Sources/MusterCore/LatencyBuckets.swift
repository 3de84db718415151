/// Percentiles from non-cumulative latency counts (one per upper bound, then a last +Inf
/// bucket), as the proxy keeps them.
public enum LatencyBuckets {
    /// The upper bound of the bucket holding quantile `q` (+Inf past the last bound); nil with no
    /// latency recorded. A bound, not an estimate: "p99 ≤ 250ms" holds when this does.
    public static func upperBound(_ q: Double, counts: [Int], bounds: [Double]) -> Double? {
        let total = counts.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = Int((Double(total) * q).rounded(.up))
        var seen = 0
        for (index, count) in counts.enumerated() {
            seen += count
            if seen >= rank { return index < bounds.count ? bounds[index] : .infinity }
        }
        return .infinity
    }

    /// What was added between two readings of the same counters; an instance that ended takes
    /// its counts with it, so a bucket that went down counts as nothing new.
    public static func delta(_ now: [Int], since before: [Int]) -> [Int] {
        now.enumerated().map { index, count in max(0, count - (index < before.count ? before[index] : 0)) }
    }
}
