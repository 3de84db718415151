import MusterCore
import Testing

@Suite("Readiness from health results")
struct HealthTrackerTests {
    let start = ContinuousClock.now

    func spec(_ check: HealthSpec.Check, rise: Int = 2, fall: Int = 3) -> HealthSpec {
        var spec = HealthSpec(check: check)
        spec.rise = rise
        spec.fall = fall
        return spec
    }

    func ok(_ second: Int, _ message: String = "HTTP 200") -> HealthTracker.CheckResult {
        .init(healthy: true, message: message, at: start + .seconds(second))
    }

    func failed(_ second: Int, _ message: String = "connection refused") -> HealthTracker.CheckResult {
        .init(healthy: false, message: message, at: start + .seconds(second))
    }

    @Test func becomesReadyAfterRiseSuccessesInARow() {
        var tracker = HealthTracker(spec: spec(.http, rise: 3), startedAt: start)
        #expect(tracker.record(ok(1)) == .none)
        #expect(tracker.record(ok(2)) == .none)
        #expect(!tracker.isReady)
        #expect(tracker.record(ok(3)) == .becameReady)
        #expect(tracker.isReady)
        #expect(tracker.consecutiveSuccesses == 3)
        #expect(tracker.record(ok(4)) == .none, "becoming ready is reported once")
    }

    @Test func aFailureRestartsTheCountTowardReady() {
        var tracker = HealthTracker(spec: spec(.tcp, rise: 2), startedAt: start)
        _ = tracker.record(ok(1))
        _ = tracker.record(failed(2))
        #expect(tracker.record(ok(3)) == .none)
        #expect(!tracker.isReady)
        #expect(tracker.record(ok(4)) == .becameReady)
    }

    @Test func aReadyInstanceLeavesAfterFallFailuresInARow() {
        var tracker = HealthTracker(spec: spec(.http, rise: 1, fall: 3), startedAt: start)
        #expect(tracker.record(ok(1)) == .becameReady)
        #expect(tracker.record(failed(2)) == .none)
        #expect(tracker.record(failed(3)) == .none)
        #expect(tracker.isReady, "still ready after fall - 1 failures")
        #expect(tracker.record(failed(4, "HTTP 503")) == .becameUnhealthy(wasReady: true))
        #expect(!tracker.isReady)
        #expect(tracker.isUnhealthy)
        #expect(tracker.consecutiveFailures == 3)
        #expect(tracker.lastResult == failed(4, "HTTP 503"))
        #expect(tracker.record(failed(5)) == .none, "unhealthy is reported once per run of failures")
    }

    @Test func aSuccessInBetweenResetsTheFailureCount() {
        var tracker = HealthTracker(spec: spec(.exec, rise: 1, fall: 2), startedAt: start)
        _ = tracker.record(ok(1))
        _ = tracker.record(failed(2))
        _ = tracker.record(ok(3))
        #expect(tracker.record(failed(4)) == .none)
        #expect(tracker.isReady)
    }

    @Test func anInstanceThatNeverGetsReadyBecomesUnhealthyAfterFallFailures() {
        var tracker = HealthTracker(spec: spec(.tcp, fall: 2), startedAt: start)
        #expect(tracker.record(failed(1)) == .none)
        #expect(tracker.record(failed(2)) == .becameUnhealthy(wasReady: false))
        #expect(!tracker.hasBeenReady)
    }

    @Test func failuresDuringTheGracePeriodBeforeFirstReadyAreForgiven() {
        var tracker = HealthTracker(spec: spec(.http, rise: 1, fall: 2), startedAt: start, grace: .seconds(5))
        for second in 0..<5 { #expect(tracker.record(failed(second)) == .none) }
        #expect(tracker.consecutiveFailures == 0)
        #expect(tracker.lastResult == failed(4), "forgiven failures still show as the last result")
        _ = tracker.record(failed(5))
        #expect(tracker.record(failed(6)) == .becameUnhealthy(wasReady: false))
    }

    @Test func theGracePeriodDoesNotProtectAnInstanceThatWasReady() {
        var tracker = HealthTracker(spec: spec(.http, rise: 1, fall: 2), startedAt: start, grace: .seconds(60))
        _ = tracker.record(ok(1))
        _ = tracker.record(failed(2))
        #expect(tracker.record(failed(3)) == .becameUnhealthy(wasReady: true))
    }

    @Test func anUnhealthyInstanceThatRecoversBecomesReadyAgain() {
        var tracker = HealthTracker(spec: spec(.http, rise: 2, fall: 1), startedAt: start)
        _ = tracker.record(ok(1))
        _ = tracker.record(ok(2))
        #expect(tracker.record(failed(3)) == .becameUnhealthy(wasReady: true))
        #expect(tracker.record(ok(4)) == .none)
        #expect(!tracker.isUnhealthy, "one success clears unhealthy")
        #expect(!tracker.isReady, "but readiness needs rise successes again")
        #expect(tracker.record(ok(5)) == .becameReady)
    }

    @Test func notifyReadyMakesItReadyAtOnce() {
        var tracker = HealthTracker(spec: spec(.notify, rise: 5), startedAt: start)
        #expect(!tracker.isProbed)
        #expect(tracker.notifyReady(at: start + .seconds(1)) == .becameReady)
        #expect(tracker.lastResult == ok(1, "READY=1"))
        #expect(tracker.notifyReady(at: start + .seconds(2)) == .none)
        #expect(tracker.record(failed(3)) == .none, "a notify service has no probe results")
        #expect(tracker.isReady)
    }

    @Test func inputsThatDoNotBelongToTheCheckAreIgnored() {
        var probed = HealthTracker(spec: spec(.http, rise: 1), startedAt: start)
        #expect(probed.notifyReady(at: start) == .none)
        #expect(!probed.isReady)
    }

    @Test func riseAndFallBelowOneCountAsOne() {
        var tracker = HealthTracker(spec: spec(.tcp, rise: 0, fall: -1), startedAt: start)
        #expect(tracker.record(ok(1)) == .becameReady)
        #expect(tracker.record(failed(2)) == .becameUnhealthy(wasReady: true))
    }
}
