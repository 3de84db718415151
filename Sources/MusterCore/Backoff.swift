/// Exponential backoff with jitter: backoff_min, doubling per attempt, capped at backoff_max.
public enum Backoff {
    /// - Parameters:
    ///   - attempt: 1 for the first retry.
    ///   - jitter: a uniform random number in 0..<1; the delay varies by ±20% so instances that
    ///     failed together do not retry in lock-step.
    public static func delay(attempt: Int, minimum: Duration, maximum: Duration, jitter: Double) -> Duration {
        let exponent = Double(max(0, min(attempt - 1, 40)))
        let base = min(maximum.seconds, minimum.seconds * pow2(exponent))
        let varied = base * (0.8 + 0.4 * min(max(jitter, 0), 1))
        return .seconds(min(varied, maximum.seconds))
    }

    private static func pow2(_ exponent: Double) -> Double {
        var value = 1.0
        for _ in 0..<Int(exponent) { value *= 2 }
        return value
    }
}
