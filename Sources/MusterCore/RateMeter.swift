/// Turns ever-growing counters into per-second rates: each key's rate is measured over at least
/// `minimumInterval`, so asking twice in quick succession returns the last rate instead of noise.
public struct RateMeter<Key: Hashable>: Sendable where Key: Sendable {
    private struct Sample: Sendable {
        var total: Int
        var at: ContinuousClock.Instant
        var rate: Double
    }

    public let minimumInterval: Duration
    private var samples: [Key: Sample] = [:]

    public init(minimumInterval: Duration = .seconds(1)) {
        self.minimumInterval = minimumInterval
    }

    /// The rate of `key`'s counter, now `total`. The first call for a key answers 0.
    public mutating func rate(_ key: Key, total: Int, now: ContinuousClock.Instant) -> Double {
        guard var sample = samples[key] else {
            samples[key] = Sample(total: total, at: now, rate: 0)
            return 0
        }
        let elapsed = now - sample.at
        guard elapsed >= minimumInterval else { return sample.rate }
        sample.rate = Double(max(0, total - sample.total)) / elapsed.seconds
        sample.total = total
        sample.at = now
        samples[key] = sample
        return sample.rate
    }

    /// Forgets keys no longer asked about (instances that ended).
    public mutating func keep(only keys: Set<Key>) {
        samples = samples.filter { keys.contains($0.key) }
    }
}
