import MusterCore
import Testing

@Suite("Passive outlier ejection")
struct OutlierDetectorTests {
    let start = ContinuousClock.now

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .seconds(seconds) }

    func detector(after: Int = 5, for duration: Duration = .seconds(10)) -> OutlierDetector<String> {
        OutlierDetector(policy: .init(ejectAfter: after, ejectFor: duration))
    }

    /// Fails `member` `count` times at `time`; the last outcome.
    func fail(_ d: inout OutlierDetector<String>, _ member: String, _ count: Int, members: Int = 3, at time: Double = 0) -> OutlierDetector<String>.Outcome {
        var outcome = OutlierDetector<String>.Outcome.ignored
        for _ in 0..<count { outcome = d.recordFailure(of: member, memberCount: members, now: at(time)) }
        return outcome
    }

    @Test func ejectsAfterThatManyFailuresInARow() {
        var d = detector()
        #expect(fail(&d, "a", 4) == .counted(failures: 4))
        #expect(d.ejection(of: "a", now: at(0)) == nil)
        #expect(fail(&d, "a", 1) == .ejected(.init(until: at(10), duration: .seconds(10), count: 1)))
        #expect(d.ejection(of: "a", now: at(9.9))?.until == at(10))
        #expect(d.ejected(now: at(1)) == ["a"])
        #expect(d.ejection(of: "a", now: at(10)) == nil)
    }

    @Test func aSuccessStartsTheCountAgain() {
        var d = detector()
        _ = fail(&d, "a", 4)
        let r1 = d.recordSuccess(of: "a", now: at(0))
        #expect(r1)
        #expect(fail(&d, "a", 4) == .counted(failures: 4))
        let r2 = d.recordSuccess(of: "b", now: at(0))
        #expect(!r2, "nothing to forget of an instance that never failed")
    }

    @Test func eachEjectionInARowLastsTwiceAsLong() {
        var d = detector()
        #expect(fail(&d, "a", 5, at: 0) == .ejected(.init(until: at(10), duration: .seconds(10), count: 1)))
        let r3 = d.expire(now: at(10))
        #expect(r3 == ["a"])
        let again = d.expire(now: at(10))
        #expect(again.isEmpty, "reported once")
        // Back, and failing again without a success between: 20 s, then 40 s.
        #expect(fail(&d, "a", 4, at: 11) == .counted(failures: 4))
        #expect(fail(&d, "a", 1, at: 11) == .ejected(.init(until: at(31), duration: .seconds(20), count: 2)))
        _ = d.expire(now: at(31))
        #expect(fail(&d, "a", 5, at: 32) == .ejected(.init(until: at(72), duration: .seconds(40), count: 3)))
        // A success after it returns ends the streak: the next ejection is 10 s again.
        _ = d.expire(now: at(72))
        let r4 = d.recordSuccess(of: "a", now: at(73))
        #expect(r4)
        #expect(fail(&d, "a", 5, at: 74) == .ejected(.init(until: at(84), duration: .seconds(10), count: 1)))
    }

    @Test func doublingStopsAtFiveMinutes() {
        let policy = OutlierDetector<String>.Policy(ejectAfter: 5, ejectFor: .seconds(10))
        let durations = (1...7).map { policy.duration(ofEjection: $0) }
        let expected: [Duration] = [.seconds(10), .seconds(20), .seconds(40), .seconds(80), .seconds(160), .seconds(300), .seconds(300)]
        #expect(durations == expected)
        let long = OutlierDetector<String>.Policy(ejectAfter: 5, ejectFor: .seconds(600))
        #expect(long.duration(ofEjection: 3) == .seconds(600), "an eject_for longer than the bound is kept, not doubled")
    }

    @Test func resultsWhileEjectedAreIgnored() {
        var d = detector()
        _ = fail(&d, "a", 5)
        // Answers of requests it took before it went out.
        #expect(fail(&d, "a", 3, at: 1) == .ignored)
        let r5 = d.recordSuccess(of: "a", now: at(2))
        #expect(!r5)
        #expect(d.ejection(of: "a", now: at(2)) != nil, "a late success does not end the ejection")
        // After it returns, the count starts from zero.
        _ = d.expire(now: at(10))
        #expect(fail(&d, "a", 1, at: 11) == .counted(failures: 1))
    }

    @Test func neverMoreThanHalfAreOut() {
        var d = detector()
        #expect(OutlierDetector<String>.maxEjected(of: 1) == 0)
        #expect(OutlierDetector<String>.maxEjected(of: 3) == 1)
        #expect(OutlierDetector<String>.maxEjected(of: 4) == 2)
        _ = fail(&d, "a", 5, members: 3)
        #expect(fail(&d, "b", 5, members: 3) == .capped(failures: 5))
        #expect(fail(&d, "b", 1, members: 3) == .capped(failures: 6))
        #expect(d.ejectedCount(now: at(1)) == 1)
        // Once a's time is up there is room: b's next failure ejects it.
        #expect(fail(&d, "b", 1, members: 3, at: 10) == .ejected(.init(until: at(20), duration: .seconds(10), count: 1)))
        #expect(d.ejected(now: at(11)) == ["b"])
    }

    @Test func aLoneInstanceIsNeverEjected() {
        var d = detector()
        #expect(fail(&d, "a", 50, members: 1) == .capped(failures: 50))
        #expect(d.ejectedCount(now: at(0)) == 0)
    }

    @Test func aShrinkingRotationBringsBackTheSoonestToEnd() {
        var d = detector()
        _ = fail(&d, "a", 5, members: 4, at: 0)
        _ = fail(&d, "b", 5, members: 4, at: 1)
        #expect(d.ejectedCount(now: at(2)) == 2)
        // Down to 3 instances: one may be out; a's ejection ends first, so a comes back.
        let r6 = d.retain(["a", "b", "c"], now: at(2))
        #expect(r6 == ["a"])
        #expect(d.ejected(now: at(2)) == ["b"])
        // Members that left are forgotten.
        let gone = d.retain(["a", "c"], now: at(3))
        #expect(gone.isEmpty)
        #expect(!d.isTracking("b"))
        #expect(d.isTracking("a"), "a keeps its streak")
    }

    @Test func zeroTurnsEjectionOff() {
        var d = detector(after: 0)
        #expect(fail(&d, "a", 100) == .ignored)
        #expect(d.ejectedCount(now: at(0)) == 0)
        var on = detector()
        _ = fail(&on, "a", 5)
        let r7 = on.update(.init(ejectAfter: 0, ejectFor: .seconds(10)), now: at(1))
        #expect(r7 == ["a"])
        #expect(on.ejection(of: "a", now: at(1)) == nil)
    }

    @Test func nextExpiryIsTheSoonestEnd() {
        var d = detector()
        #expect(d.nextExpiry == nil)
        _ = fail(&d, "a", 5, members: 4, at: 3)
        _ = fail(&d, "b", 5, members: 4, at: 1)
        #expect(d.nextExpiry == at(11))
    }
}
