import MusterAPI

/// A canary's progress in one line: `status` shows it under the table, `deploy --watch` prints
/// it as it changes.
public enum CanaryText {
    public static func progress(_ canary: CanaryStatus) -> String {
        var line = "canary revision \(canary.revision): \(canary.phase)"
        if let elapsed = canary.elapsedSeconds { line += " \(Int(elapsed))s/\(Int(canary.durationSeconds))s" }
        line += ", \(Int((canary.weight * 100).rounded()))% of requests, \(canary.requests) requests, errors \(percent(canary.errorRate))"
        if let p99 = canary.p99Seconds { line += ", p99 ≤ \(Int((p99 * 1000).rounded()))ms" }
        return line
    }

    public static func percent(_ share: Double) -> String { "\(Double(Int((share * 1000).rounded())) / 10)%" }
}
