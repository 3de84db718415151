import Atomics
import MusterCore
@testable import MusterProxy
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// `Balancer`'s picks, pure.
@Suite struct BalancerTests {
    let all: (Int) -> Bool = { _ in true }

    @Test func leastRequestTakesTheLessLoadedOfTwo() {
        let load = [5, 0, 0]
        // The round-robin candidate is 0 (5 in flight); whichever other one is drawn has fewer.
        for random in UInt64(0)..<8 {
            let picked = Balancer.leastRequest([0, 1, 2], start: 0, random: random, isEligible: all, load: { load[$0] })
            #expect(picked != 0, "random \(random)")
        }
    }

    @Test func leastRequestTiesGoToTheRoundRobinCandidate() {
        let picks = (0..<9).map { start in
            Balancer.leastRequest([0, 1, 2], start: start, random: Balancer.mix(UInt64(start)), isEligible: { _ in true }, load: { _ in 0 })
        }
        #expect(picks == [0, 1, 2, 0, 1, 2, 0, 1, 2])
    }

    @Test func leastRequestDrawsTheSecondFromAllOthers() {
        // With the round-robin candidate the busiest, the draw decides: each other one is drawn.
        var drawn: Set<Int> = []
        for random in UInt64(0)..<12 {
            if let pick = Balancer.leastRequest([0, 1, 2, 3], start: 0, random: random, isEligible: { _ in true }, load: { $0 == 0 ? 9 : 1 }) {
                drawn.insert(pick)
            }
        }
        #expect(drawn == [1, 2, 3])
    }

    @Test func leastRequestSkipsWhatIsNotEligible() {
        let picks = (0..<6).map { start in
            Balancer.leastRequest([0, 1, 2], start: start, random: UInt64(start), isEligible: { $0 != 1 }, load: { _ in 0 })
        }
        let sawOne = picks.contains(1)
        #expect(!sawOne)
        let none = Balancer.leastRequest([0, 1], start: 0, random: 0, isEligible: { _ in false }, load: { _ in 0 })
        #expect(none == nil)
        let lone = Balancer.leastRequest([7], start: 3, random: 0, isEligible: { _ in true }, load: { _ in 100 })
        #expect(lone == 7)
    }

    @Test func roundRobinWrapsAndSkips() {
        let picks = (0..<4).map { Balancer.roundRobin([0, 1, 2], start: $0, isEligible: { $0 != 2 }) }
        #expect(picks == [0, 1, 0, 0])
    }

    @Test func mixSpreadsACounter() {
        let buckets = (UInt64(0)..<3000).reduce(into: [0, 0, 0]) { counts, n in counts[Int(Balancer.mix(n) % 3)] += 1 }
        let even = buckets.allSatisfy { (900...1100).contains($0) }
        #expect(even, "\(buckets)")
    }
}

/// `BackendSet` with `balance` and ejection, on a clock the test moves.
@Suite struct EjectionTests {
    final class Clock: Sendable {
        let start = ContinuousClock.now
        let offsetMillis = ManagedAtomic<Int>(0)
        var now: ContinuousClock.Instant { start + .milliseconds(offsetMillis.load(ordering: .relaxed)) }
        func advance(_ duration: Duration) {
            offsetMillis.wrappingIncrement(by: Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000), ordering: .relaxed)
        }
    }

    private func backends(_ count: Int) throws -> [Backend] {
        try (0..<count).map { index in
            Backend(service: "web", index: index, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: 22000 + index))
        }
    }

    private func set(_ clock: Clock, balance: ProxySpec.Balance = .roundRobin, ejectAfter: Int = 5) -> (BackendSet, Heard) {
        let set = BackendSet(now: { clock.now })
        set.configure(balance: balance, ejectAfter: ejectAfter, ejectFor: .seconds(10))
        let heard = Heard()
        set.onEjection { change in
            switch change {
            case .ejected(let backend, let ejection, let failures, let last):
                heard.append("ejected \(backend.index) for \(ejection.duration) after \(failures), last \(last)")
            case .returned(let backend):
                heard.append("returned \(backend.index)")
            }
        }
        return (set, heard)
    }

    private func hits(_ set: BackendSet, _ count: Int) -> [Int] {
        var hits = [Int](repeating: 0, count: 3)
        for _ in 0..<count { hits[set.next()!.index] += 1 }
        return hits
    }

    @Test func fiveFailuresInARowTakeAnInstanceOutUntilItsTimeIsUp() throws {
        let clock = Clock()
        let (set, heard) = self.set(clock)
        let all = try backends(3)
        set.setReady(all)
        for _ in 0..<4 { set.reportFailure(all[1], .status(500)) }
        #expect(hits(set, 9) == [3, 3, 3], "four failures: still in")
        set.reportFailure(all[1], .status(500))
        #expect(hits(set, 10)[1] == 0)
        #expect(set.ejectedCount == 1)
        #expect(set.ejection(of: all[1])?.until == clock.now + .seconds(10))
        let ejections = all[1].counters.ejections.load(ordering: .relaxed)
        #expect(ejections == 1)
        #expect(heard.values == ["ejected 1 for 10.0 seconds after 5, last HTTP 500"])
        clock.advance(.seconds(10))
        #expect(hits(set, 9) == [3, 3, 3], "back after eject_for")
        #expect(heard.values.last == "returned 1")
        #expect(set.ejectedCount == 0)
    }

    @Test func aRetryThatFailedOnTheRestTriesAnEjectedInstance() throws {
        let clock = Clock()
        let (set, _) = self.set(clock)
        let all = try backends(2)
        set.setReady(all)
        for _ in 0..<5 { set.reportFailure(all[0], .connect) }
        #expect(set.ejectedCount == 1)
        #expect(set.next()?.index == 1, "a first attempt never goes to an ejected instance")
        #expect(set.next(excluding: [all[1]])?.index == 0, "a retry that failed on 1 tries 0 rather than fail")
        #expect(set.next(excluding: all) == nil)
    }

    @Test func aSuccessInBetweenResetsTheCount() throws {
        let clock = Clock()
        let (set, _) = self.set(clock)
        let all = try backends(2)
        set.setReady(all)
        for _ in 0..<4 { set.reportFailure(all[0], .connect) }
        set.reportSuccess(all[0])
        for _ in 0..<4 { set.reportFailure(all[0], .connect) }
        #expect(set.ejectedCount == 0)
        let tracked = all[0].outlierTracked.load(ordering: .relaxed)
        #expect(tracked)
        set.reportSuccess(all[0])
        let trackedAfterSuccess = all[0].outlierTracked.load(ordering: .relaxed)
        #expect(!trackedAfterSuccess, "a healthy instance's successes take no lock")
    }

    @Test func theHalfCapHoldsAcrossInstances() throws {
        let clock = Clock()
        let (set, _) = self.set(clock)
        let all = try backends(3)
        set.setReady(all)
        for _ in 0..<5 { set.reportFailure(all[0], .connect) }
        for _ in 0..<5 { set.reportFailure(all[2], .connect) }
        #expect(set.ejectedCount == 1)
        let spread = hits(set, 10)
        #expect(spread[0] == 0 && spread[1] > 0 && spread[2] > 0, "\(spread)")
    }

    @Test func shrinkingTheRotationBringsAnEjectedInstanceBack() throws {
        let clock = Clock()
        let (set, heard) = self.set(clock)
        let all = try backends(2)
        set.setReady(all)
        for _ in 0..<5 { set.reportFailure(all[0], .connect) }
        #expect(set.ejectedCount == 1)
        set.setReady([all[0]])
        #expect(set.ejectedCount == 0)
        #expect(set.next() === all[0], "a lone instance is never out")
        #expect(heard.values.last == "returned 0")
    }

    @Test func failuresOfAnInstanceOutsideTheRotationDoNotCount() throws {
        let clock = Clock()
        let (set, _) = self.set(clock)
        let all = try backends(3)
        set.setReady(Array(all.prefix(2)))
        for _ in 0..<10 { set.reportFailure(all[2], .connect) }
        #expect(set.ejectedCount == 0)
    }

    @Test func aCanarysInstancesAreLeftToTheCanaryJudge() throws {
        let clock = Clock()
        let (set, _) = self.set(clock)
        let main = try backends(2)
        let canary = Backend(service: "web@2", index: 0, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: 22100))
        set.setReady(main, canary: [canary], canaryWeight: 0.5)
        for _ in 0..<20 { set.reportFailure(canary, .status(500)) }
        #expect(set.ejectedCount == 0)
        let services = (0..<10).map { _ in set.next()!.service }
        let toCanary = services.filter { $0 == "web@2" }.count
        #expect(toCanary == 5, "the canary keeps its share, so the judge sees its errors")
        // The service's own instances still are ejected: one of the two (the canary does not count).
        for _ in 0..<5 { set.reportFailure(main[0], .status(500)) }
        for _ in 0..<5 { set.reportFailure(main[1], .status(500)) }
        #expect(set.ejectedCount == 1)
    }

    @Test func ejectAfterZeroNeverEjects() throws {
        let clock = Clock()
        let (set, heard) = self.set(clock, ejectAfter: 0)
        let all = try backends(2)
        set.setReady(all)
        for _ in 0..<50 { set.reportFailure(all[0], .status(503)) }
        #expect(set.ejectedCount == 0)
        #expect(heard.values.isEmpty)
    }

    @Test func leastRequestPassesOverABusyInstance() throws {
        let clock = Clock()
        let (set, _) = self.set(clock, balance: .leastRequest)
        let all = try backends(3)
        set.setReady(all)
        #expect(hits(set, 9) == [3, 3, 3], "idle: as round robin")
        all[2].counters.inFlight.store(4, ordering: .relaxed)
        let busy = hits(set, 300)
        // Its own round-robin turns go elsewhere whenever the draw finds an idle one: always.
        #expect(busy[2] == 0, "\(busy)")
        #expect(busy[0] > 100 && busy[1] > 100, "\(busy)")
    }

    @Test func leastRequestSkipsEjectedInstances() throws {
        let clock = Clock()
        let (set, _) = self.set(clock, balance: .leastRequest)
        let all = try backends(3)
        set.setReady(all)
        for _ in 0..<5 { set.reportFailure(all[0], .status(500)) }
        all[1].counters.inFlight.store(100, ordering: .relaxed)
        let spread = hits(set, 30)
        #expect(spread[0] == 0, "\(spread)")
    }

    @Test func theTimerBringsAnInstanceBackWithoutARequest() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let set = BackendSet(timers: group)
        set.configure(balance: .roundRobin, ejectAfter: 1, ejectFor: .milliseconds(50))
        let heard = Heard()
        set.onEjection { change in
            if case .returned(let backend) = change { heard.append("returned \(backend.index)") }
        }
        let all = try backends(2)
        set.setReady(all)
        set.reportFailure(all[0], .connect)
        #expect(set.ejectedCount == 1)
        var waited = 0
        while heard.values.isEmpty && waited < 200 {
            try await Task.sleep(for: .milliseconds(25))
            waited += 1
        }
        #expect(heard.values == ["returned 0"])
        try await group.shutdownGracefully()
    }
}

/// A thread-safe list of what a hook heard.
final class Heard: Sendable {
    private let box = NIOLockedValueBox<[String]>([])
    func append(_ value: String) { box.withLockedValue { $0.append(value) } }
    var values: [String] { box.withLockedValue { $0 } }
}
