/// One tick's measurement of a service's load.
public struct LoadSample: Sendable, Equatable {
    public var at: ContinuousClock.Instant
    /// The whole service's load in the metric's unit: in-flight requests plus requests held
    /// waiting for an instance (concurrency), requests per second plus held requests (rps), cores
    /// summed over instances (cpu), bytes summed over instances (memory).
    public var total: Double
    /// Any traffic during the tick: a request or connection arrived, one is open, or one is held.
    /// What `scale_to_zero_after` counts idleness by.
    public var active: Bool

    public init(at: ContinuousClock.Instant, total: Double, active: Bool) {
        self.at = at
        self.total = total
        self.active = active
    }
}

/// What one decision found and chose, with the sentence an operator reads.
public struct AutoscaleDecision: Sendable, Equatable {
    public var current: Int
    public var desired: Int
    /// Average load over the stable window.
    public var stableLoad: Double
    /// The panic signal: the higher of the panic window's average and the last sample.
    public var panicLoad: Double
    public var panicking: Bool
    /// "concurrency 41.3 over 3s (panic), target 10"; for a change the event reads
    /// "web: 2 → 5, " followed by this.
    public var reason: String

    public init(current: Int, desired: Int, stableLoad: Double, panicLoad: Double, panicking: Bool, reason: String) {
        self.current = current
        self.desired = desired
        self.stableLoad = stableLoad
        self.panicLoad = panicLoad
        self.panicking = panicking
        self.reason = reason
    }
}

/// The autoscaling policy as a pure value: fed a sample a tick (`record`), asked for a count
/// (`decide`). Time comes only from the samples and the `now` passed in, so tests drive it with
/// synthetic traces and simulated time.
///
/// The shape is Knative's: a stable window for the steady count, a short panic window that scales
/// up at once on a burst and never down while the burst lasts, and Kubernetes' scale-down
/// stabilization (the highest recommendation of `scale_down_delay`) so a wavy load does not flap.
public struct AutoscalePolicy: Sendable {
    public var spec: AutoscaleSpec

    private struct Recommendation: Sendable {
        var at: ContinuousClock.Instant
        var count: Int
    }

    /// Oldest first; only as far back as the longer window reaches.
    private var samples: [LoadSample] = []
    /// One per decision, as far back as `scaleDownDelay` reaches.
    private var recommendations: [Recommendation] = []
    /// Where the idle clock counts from: the start, the last active sample or `noteActivity`.
    private var idleSince: ContinuousClock.Instant
    /// Traffic actually seen (never the start): what wakes a service held at zero.
    private var lastTraffic: ContinuousClock.Instant?
    /// The panic holds until this instant: a `window` after its condition last held.
    private var panicEnds: ContinuousClock.Instant?
    /// The highest count chosen since the panic began; a panic never gives instances back.
    private var panicPeak = 0

    public init(spec: AutoscaleSpec, now: ContinuousClock.Instant) {
        self.spec = spec
        self.idleSince = now
    }

    public mutating func record(_ sample: LoadSample) {
        samples.append(sample)
        if sample.active { noteActivity(now: sample.at) }
        // The history reaches back only as far as the current spec's windows; a reload that
        // widens a window starts with what is kept and fills the rest as ticks come.
        let horizon = sample.at - Swift.max(spec.window, spec.panicWindow)
        if let firstKept = samples.firstIndex(where: { $0.at > horizon }) {
            samples.removeFirst(firstKept)
        }
    }

    /// A request or connection arrived; at zero instances it is held until one is ready.
    public mutating func noteActivity(now: ContinuousClock.Instant) {
        idleSince = Swift.max(idleSince, now)
        lastTraffic = Swift.max(lastTraffic ?? now, now)
    }

    public mutating func decide(current: Int, now: ContinuousClock.Instant) -> AutoscaleDecision {
        let stableLoad = averageLoad(over: spec.window, now: now)
        // The latest sample counts on its own so a step shows at the first tick after it, not
        // only once it dominates the panic window's average.
        let panicLoad = Swift.max(averageLoad(over: spec.panicWindow, now: now), latestLoad(now: now))
        // The issue spells cpu and memory as ceil(current × average ÷ target); a sample's total is
        // already current × average, so one formula serves every metric.
        let stableCount = instances(for: stableLoad)
        let panicCount = instances(for: panicLoad)

        if spec.min == 0, now - idleSince >= spec.scaleToZeroAfter {
            // Nothing arrived for the whole stretch: every instance is idle, so all go at once,
            // past max_scale_down and scale_down_delay, and no earlier demand carries over.
            panicEnds = nil
            panicPeak = 0
            recommendations.removeAll()
            return AutoscaleDecision(
                current: current, desired: 0, stableLoad: stableLoad, panicLoad: panicLoad, panicking: false,
                reason: "idle for \(DurationText.format(spec.scaleToZeroAfter)), scale to zero")
        }

        let panicking = updatePanic(current: current, panicLoad: panicLoad, now: now)

        // What this tick's load asks for, remembered for scale-down: during a panic that is the
        // burst's count, so the delay runs from the burst itself and a one-tick spike still
        // holds its instances for scale_down_delay (Knative records its panic count the same way).
        let recommendation = panicking ? Swift.max(stableCount, panicCount) : stableCount
        // Trimmed before appending so a zero delay still keeps this tick's own recommendation.
        recommendations.removeAll { $0.at <= now - spec.scaleDownDelay }
        recommendations.append(Recommendation(at: now, count: recommendation))

        var wanted: Int
        var withinTolerance = false
        var notes = ""
        if panicking {
            wanted = Swift.max(current, panicCount, panicPeak)
        } else if current > 0, isWithinTolerance(stableLoad, current: current) {
            wanted = current
            withinTolerance = true
        } else if stableCount >= current {
            wanted = stableCount
        } else {
            let highest = recommendations.map(\.count).max() ?? stableCount
            wanted = Swift.min(highest, current)
            if wanted > stableCount {
                notes += ", held at the highest of the last \(DurationText.format(spec.scaleDownDelay))"
            }
        }

        // With min = 0 one instance stays until the idle rule takes it; at zero, nothing starts
        // until traffic asks for it.
        let wakingFromZero = current == 0 && (panicking || hasRecentTraffic(now: now))
        let floor = spec.min > 0 ? spec.min : (current == 0 && !wakingFromZero ? 0 : 1)
        var desired = Swift.min(Swift.max(wanted, floor), spec.max)
        if wanted > spec.max {
            notes += " (max \(spec.max))"
        } else if wanted < floor {
            if spec.min > 0 { notes += " (min \(spec.min))" }
            else if current == 0 { notes += ", a request is waiting" }
            else { notes += " (1 until idle for \(DurationText.format(spec.scaleToZeroAfter)))" }
        }

        // Step limits apply from zero too: waking is a panic and gets its full count at once when
        // max_scale_up is 0, but an operator who set a step (slow cold starts, a shared database)
        // wants it honoured; the step is at least 1, so a woken service always gets an instance,
        // and the panic peak keeps adding a step a tick while the burst lasts.
        if spec.maxScaleUp > 0, desired > current + spec.maxScaleUp {
            desired = current + spec.maxScaleUp
            notes += " (max_scale_up \(spec.maxScaleUp))"
        }
        if spec.maxScaleDown > 0, desired < current - spec.maxScaleDown {
            desired = current - spec.maxScaleDown
            notes += " (max_scale_down \(spec.maxScaleDown))"
        }
        if panicking { panicPeak = Swift.max(panicPeak, desired) }

        let reason: String
        if panicking {
            reason = "\(describe(panicLoad, over: spec.panicWindow)) (panic), target \(describeTarget())" + notes
        } else if withinTolerance {
            reason = "\(describe(stableLoad, over: spec.window)), within \(percent(spec.tolerance)) of target \(describeTarget())" + notes
        } else {
            reason = "\(describe(stableLoad, over: spec.window)), target \(describeTarget())" + notes
        }
        return AutoscaleDecision(
            current: current, desired: desired, stableLoad: stableLoad, panicLoad: panicLoad,
            panicking: panicking, reason: reason)
    }

    /// Starts or extends the panic and says whether it holds now. Like Knative, it lasts while the
    /// load is over the threshold and a stable window after, so the stable average has caught up
    /// with the burst by the time the stable rules take over again.
    private mutating func updatePanic(current: Int, panicLoad: Double, now: ContinuousClock.Instant) -> Bool {
        // With no instances there is no capacity to compare against: any load is a burst.
        let overThreshold = current == 0
            ? panicLoad > 0
            : panicLoad >= spec.panicThreshold * Double(current) * spec.target - 1e-9
        if overThreshold { panicEnds = now + spec.window }
        let panicking = overThreshold || (panicEnds.map { now < $0 } ?? false)
        if !panicking {
            panicEnds = nil
            panicPeak = 0
        }
        return panicking
    }

    private func averageLoad(over window: Duration, now: ContinuousClock.Instant) -> Double {
        let inWindow = samples.filter { $0.at > now - window }
        guard !inWindow.isEmpty else { return 0 }
        return inWindow.reduce(0) { $0 + $1.total } / Double(inWindow.count)
    }

    /// The last sample's load, unless it is too old to say anything about now.
    private func latestLoad(now: ContinuousClock.Instant) -> Double {
        guard let last = samples.last, last.at > now - spec.panicWindow else { return 0 }
        return last.total
    }

    /// A request seen within the panic window is still waiting or has only just been served.
    private func hasRecentTraffic(now: ContinuousClock.Instant) -> Bool {
        guard let lastTraffic else { return false }
        return now - lastTraffic < spec.panicWindow
    }

    private func isWithinTolerance(_ load: Double, current: Int) -> Bool {
        // The slack keeps 44 / 40 − 1 (0.10000000000000009) inside a 10% tolerance.
        abs(load / (Double(current) * spec.target) - 1) <= spec.tolerance + 1e-9
    }

    /// Instances that carry `load` at the target. The slack keeps float noise such as
    /// 2.1 / 0.7 = 3.0000000000000004 from asking for a fourth instance.
    private func instances(for load: Double) -> Int {
        guard load > 0, spec.target > 0 else { return 0 }
        let exact = load / spec.target
        guard exact < Double(Int.max / 2) else { return Int.max / 2 }
        return Int((exact - 1e-9).rounded(.up))
    }

    /// "concurrency 41.3 over 3s", "memory 312.5M over 30s".
    private func describe(_ load: Double, over window: Duration) -> String {
        let amount = spec.metric == .memory ? bytes(load) : oneDecimal(load)
        return "\(spec.metric.rawValue) \(amount) over \(DurationText.format(window))"
    }

    private func describeTarget() -> String {
        if spec.metric == .memory { return bytes(spec.target) }
        let target = spec.target
        return target == target.rounded() && abs(target) < 1e15 ? String(Int(target)) : String(target)
    }

    private func bytes(_ value: Double) -> String {
        guard value.isFinite else { return String(value) }
        return ByteSize.format(UInt64(Swift.min(Swift.max(value, 0), 1.8e19).rounded()))
    }

    private func oneDecimal(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return String(value) }
        let tenths = Int((Swift.max(value, 0) * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    private func percent(_ share: Double) -> String {
        let value = (share * 1000).rounded() / 10
        return value == value.rounded() ? "\(Int(value))%" : "\(value)%"
    }
}
