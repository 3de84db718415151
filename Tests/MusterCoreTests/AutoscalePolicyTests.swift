import Foundation
import MusterCore
import Testing

/// Drives a policy the way the runtime does: one sample a second, a decision right after it, and
/// the decision applied before the next tick.
private struct Trace {
    let start = ContinuousClock.now
    var policy: AutoscalePolicy
    var current: Int
    /// Seconds since `start` of the last tick.
    private(set) var second = 0

    init(_ spec: AutoscaleSpec, current: Int) {
        policy = AutoscalePolicy(spec: spec, now: start)
        self.current = current
    }

    var now: ContinuousClock.Instant { start + .seconds(second) }

    @discardableResult
    mutating func tick(_ total: Double, active: Bool? = nil) -> AutoscaleDecision {
        second += 1
        policy.record(LoadSample(at: now, total: total, active: active ?? (total > 0)))
        let decision = policy.decide(current: current, now: now)
        current = decision.desired
        return decision
    }

    mutating func ticks(_ count: Int, _ total: Double, active: Bool? = nil) -> [AutoscaleDecision] {
        (0..<count).map { _ in tick(total, active: active) }
    }
}

private func spec(
    min: Int = 1, max: Int = 20, metric: AutoscaleSpec.Metric = .concurrency, target: Double = 10,
    tolerance: Double = 0.1, window: Int = 30, scaleDownDelay: Int = 60,
    maxScaleUp: Int = 0, maxScaleDown: Int = 1
) -> AutoscaleSpec {
    var spec = AutoscaleSpec(min: min, max: max, metric: metric, target: target)
    spec.tolerance = tolerance
    spec.window = .seconds(window)
    spec.scaleDownDelay = .seconds(scaleDownDelay)
    spec.maxScaleUp = maxScaleUp
    spec.maxScaleDown = maxScaleDown
    return spec
}

/// Signs of the nonzero changes, with runs of one sign counted once.
private func directionChanges(_ counts: [Int]) -> Int {
    let signs = zip(counts, counts.dropFirst()).compactMap { $0 == $1 ? nil : $1 > $0 }
    return zip(signs, signs.dropFirst()).filter { $0 != $1 }.count
}

@Suite("Autoscale policy on synthetic traces")
struct AutoscalePolicyTests {
    @Test func aStepPanicsAtTheFirstTickThatSeesIt() {
        var trace = Trace(spec(target: 5), current: 1)
        for decision in trace.ticks(40, 5) {
            #expect(!decision.panicking)
            #expect(decision.desired == 1)
        }
        let first = trace.tick(15)
        #expect(first.panicking)
        #expect(first.panicLoad == 15)
        #expect(first.desired >= 3)
    }

    @Test func staysWithinBoundsOnARampUpAndBack() {
        var trace = Trace(spec(min: 2, max: 10), current: 2)
        let up = (0...100).map { Double($0) * 10 }
        let load = up + up.reversed() + Array(repeating: 0, count: 120)
        let decisions = load.map { trace.tick($0) }
        for decision in decisions {
            #expect((2...10).contains(decision.desired), "\(decision.desired) at \(decision.reason)")
        }
        let heldAtMax = decisions.contains { $0.desired == 10 && $0.reason.contains("(max 10)") }
        #expect(heldAtMax)
        #expect(decisions.last?.desired == 2)
        #expect(decisions.last?.reason.contains("(min 2)") == true)
    }

    @Test func jitterWithinToleranceChangesNothing() {
        var trace = Trace(spec(), current: 4)
        let jitter = [1.05, 0.95, 1.02, 0.97, 1.04, 0.96, 1.0, 1.05, 0.95, 1.03]
        for second in 0..<200 {
            let decision = trace.tick(40 * jitter[second % jitter.count])
            #expect(decision.desired == 4)
            #expect(!decision.panicking)
            #expect(decision.reason.contains("within 10% of target 10"))
        }
    }

    @Test func aWaveShorterThanTheScaleDownDelayDoesNotFlap() {
        // A 10 s window over a 20 s wave still swings the stable count between about 4 and 7:
        // without the delay it would follow the wave down and up again.
        var trace = Trace(spec(tolerance: 0, window: 10), current: 5)
        var counts: [Int] = []
        for second in 0..<300 {
            let phase = Double(second) / 20 * 2 * Double.pi
            counts.append(trace.tick(50 + 30 * sin(phase)).desired)
        }
        // Until the window fills, the average of a few rising samples over-reads the crest; that
        // count is held for the delay and then settles once, so judge from window + delay on.
        let afterWarmUp = counts.dropFirst(10 + 60)
        let neverDown = zip(afterWarmUp, afterWarmUp.dropFirst()).allSatisfy { $0 <= $1 }
        #expect(neverDown, "\(counts)")
        #expect(directionChanges(counts) <= 1, "\(counts)")
        #expect(counts.max()! >= 7, "the crests are served")
    }

    @Test func aOneTickSpikeHoldsItsInstancesForTheScaleDownDelay() {
        var trace = Trace(spec(target: 5), current: 1)
        _ = trace.ticks(40, 5)
        let spike = trace.tick(50)
        #expect(spike.panicking)
        #expect(spike.desired == 10)
        let after = trace.ticks(59, 5)
        let allHeld = after.allSatisfy { $0.desired == 10 }
        #expect(allHeld, "\(after.map(\.desired))")
        #expect(after.last?.reason.contains("held at the highest of the last 1m") == true)
        let delayOver = trace.tick(5)
        #expect(delayOver.desired == 9, "down one step once the delay has passed since the spike")
    }

    @Test func scalesToZeroExactlyAfterIdleAndWakesForABurst() {
        var idleSpec = spec(min: 0, max: 10, target: 5)
        idleSpec.scaleToZeroAfter = .seconds(300)
        var trace = Trace(idleSpec, current: 2)
        _ = trace.ticks(20, 10)
        let lastActive = trace.second
        let waiting = trace.ticks(299, 0)
        let oneStays = waiting.allSatisfy { $0.desired >= 1 }
        #expect(oneStays, "one instance stays until idle for 5m")
        #expect(waiting.last?.desired == 1)
        let idle = trace.tick(0)
        #expect(trace.second - lastActive == 300)
        #expect(idle.desired == 0)
        #expect(idle.reason == "idle for 5m, scale to zero")
        for decision in trace.ticks(30, 0) {
            #expect(decision.desired == 0)
        }

        trace.policy.noteActivity(now: trace.now + .milliseconds(300))
        let burst = trace.tick(17)
        #expect(burst.panicking)
        #expect(burst.desired == 4)
        #expect(burst.reason.contains("(panic)"))
    }

    @Test func atZeroWithoutTrafficNothingStarts() {
        var trace = Trace(spec(min: 0, max: 10), current: 0)
        for decision in trace.ticks(30, 0) {
            #expect(decision.desired == 0)
        }
        // A request arrived but the proxy has not counted it yet: one instance to serve it.
        trace.policy.noteActivity(now: trace.now + .milliseconds(500))
        #expect(trace.tick(0, active: true).desired == 1)
    }

    @Test func stepLimitsBoundEachDecision() {
        var down = Trace(spec(max: 20, scaleDownDelay: 0, maxScaleDown: 1), current: 10)
        let downs = down.ticks(60, 0)
        var previous = 10
        for decision in downs {
            #expect(decision.desired >= previous - 1)
            previous = decision.desired
        }
        #expect(downs.last?.desired == 1)
        let stepNamed = downs.contains { $0.reason.contains("(max_scale_down 1)") }
        #expect(stepNamed)

        var up = Trace(spec(max: 20, maxScaleUp: 2), current: 1)
        previous = 1
        for decision in up.ticks(20, 100) {
            #expect(decision.desired <= previous + 2)
            previous = decision.desired
        }
        #expect(previous == 10)

        var fromZero = Trace(spec(min: 0, max: 20, target: 5, maxScaleUp: 2), current: 0)
        #expect(fromZero.tick(17).desired == 2, "waking honours max_scale_up")
        #expect(fromZero.tick(17).desired == 4, "and the panic keeps adding a step a tick")
    }

    @Test func reasonsNameTheMetricTheLoadAndPanic() {
        var trace = Trace(spec(target: 5), current: 1)
        let steady = trace.ticks(40, 5).last!
        #expect(steady.reason == "concurrency 5.0 over 30s, within 10% of target 5")
        let panic = trace.tick(41.26)
        #expect(panic.reason == "concurrency 41.3 over 3s (panic), target 5")

        var rps = Trace(spec(metric: .rps, tolerance: 0), current: 2)
        #expect(rps.tick(31).reason == "rps 31.0 over 30s, target 10")

        var memorySpec = spec(metric: .memory, target: 256 * 1_048_576)
        memorySpec.panicThreshold = 10
        var memory = Trace(memorySpec, current: 1)
        let decision = memory.tick(312.5 * 1_048_576)
        #expect(decision.reason == "memory 312.5M over 30s, target 256M")
        #expect(decision.desired == 2)
    }

    @Test func aGentleRampFollowsTheStableAverage() {
        var trace = Trace(spec(max: 50, tolerance: 0), current: 10)
        var loads: [Double] = []
        for second in 0..<300 {
            let load = second < 30 ? 100 : 100 + Double(second - 30) * 0.5
            loads.append(load)
            let decision = trace.tick(load)
            let recent = loads.suffix(30)
            let average = recent.reduce(0, +) / Double(recent.count)
            #expect(!decision.panicking)
            #expect(abs(decision.stableLoad - average) < 1e-9)
            #expect(decision.desired == Int((average / 10 - 1e-9).rounded(.up)), "at \(second)s: \(decision.reason)")
        }
        #expect(trace.current == 23)
    }

    @Test func cpuCountsCoresAgainstTheTarget() {
        var trace = Trace(spec(metric: .cpu, target: 0.8), current: 2)
        // 2.4 / 0.8 is 2.9999999999999996 in floating point: still exactly three instances.
        let decision = trace.tick(2.4)
        #expect(!decision.panicking)
        #expect(decision.desired == 3)
        #expect(decision.reason == "cpu 2.4 over 30s, target 0.8")
        let busy = trace.tick(6)
        #expect(busy.panicking, "6 cores is over twice 3 × 0.8")
        #expect(busy.desired == 8)
    }

    @Test func aReloadKeepsTheHistoryAndAppliesTheNewBounds() {
        var trace = Trace(spec(max: 20), current: 3)
        _ = trace.ticks(30, 30)
        var lowered = spec(max: 2)
        lowered.maxScaleDown = 0
        trace.policy.spec = lowered
        let decision = trace.tick(50)
        #expect(abs(decision.stableLoad - (29 * 30 + 50) / 30) < 1e-9, "the 29 earlier samples still count")
        #expect(decision.desired == 2)
        #expect(decision.reason.contains("(max 2)"))
    }
}
