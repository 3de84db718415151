import MusterCore
import Testing

@Suite("Dependency gate: start, stop and down between services")
struct DependencyGateTests {
    typealias S = DependencyGate.Service

    @Test func aServiceWaitsUntilWhatItRequiresIsReady() {
        let starting = DependencyGate.verdicts([S(name: "db"), S(name: "api", requires: ["db"])])
        #expect(starting["api"]?.waitingFor == ["db"])
        #expect(starting["api"]?.mayStart == false)
        #expect(starting["api"]?.mustStop == false)
        #expect(starting["db"] == .open)
        let ready = DependencyGate.verdicts([S(name: "db", ready: true, hasProcesses: true), S(name: "api", requires: ["db"])])
        #expect(ready["api"] == .open)
    }

    @Test func aCrashingRequirementHoldsNewStartsButStopsNothing() {
        let crashed = DependencyGate.verdicts([S(name: "db", failed: true), S(name: "api", requires: ["db"], ready: true, hasProcesses: true)])
        #expect(crashed["api"]?.mustStop == false)
        #expect(crashed["api"]?.mayStart == false)
    }

    @Test func aDownRequirementStopsItsDependentsTransitively() {
        let verdicts = DependencyGate.verdicts([
            S(name: "db", down: true),
            S(name: "api", requires: ["db"], ready: true, hasProcesses: true),
            S(name: "web", requires: ["api"], ready: true, hasProcesses: true),
        ])
        #expect(verdicts["api"]?.requiredDown == ["db"])
        #expect(verdicts["web"]?.requiredDown == ["api"])
        #expect(verdicts["web"]?.mustStop == true)
    }

    @Test func wantsWaitsOnlyWhileTheWantedServiceIsStillTrying() {
        let trying = DependencyGate.verdicts([S(name: "cache"), S(name: "api", wants: ["cache"])])
        #expect(trying["api"]?.waitingFor == ["cache"])
        let failed = DependencyGate.verdicts([S(name: "cache", failed: true), S(name: "api", wants: ["cache"])])
        #expect(failed["api"] == .open)
        let down = DependencyGate.verdicts([S(name: "cache", down: true), S(name: "api", wants: ["cache"])])
        #expect(down["api"] == .open)
        let absent = DependencyGate.verdicts([S(name: "api", wants: ["cache"])])
        #expect(absent["api"] == .open)
    }

    @Test func stoppingWaitsForDependentsThatAreGoingAwayToo() {
        let shutdown = DependencyGate.verdicts([
            S(name: "db", ready: true, hasProcesses: true, haltingAll: true),
            S(name: "api", requires: ["db"], ready: true, hasProcesses: true, haltingAll: true),
            S(name: "cache", ready: true, hasProcesses: true, haltingAll: true),
            S(name: "web", requires: ["api"], wants: ["cache"], hasProcesses: true, haltingAll: true),
        ])
        #expect(shutdown["db"]?.heldBy == ["api"])
        #expect(shutdown["api"]?.heldBy == ["web"])
        #expect(shutdown["cache"]?.heldBy == ["web"])
        #expect(shutdown["web"]?.holdsStops == false)
        // The dependents gone: nothing holds db.
        let after = DependencyGate.verdicts([
            S(name: "db", ready: true, hasProcesses: true, haltingAll: true),
            S(name: "api", requires: ["db"], haltingAll: true),
        ])
        #expect(after["db"]?.holdsStops == false)
    }

    @Test func anOperatorStopOfARequiredServiceStopsDependentsFirst() {
        // `stop db`: down by intent, though its process still serves until api is gone.
        let verdicts = DependencyGate.verdicts([
            S(name: "db", ready: true, down: true, hasProcesses: true, haltingAll: true),
            S(name: "api", requires: ["db"], ready: true, hasProcesses: true),
        ])
        #expect(verdicts["api"]?.mustStop == true)
        #expect(verdicts["db"]?.heldBy == ["api"])
    }

    @Test func aWantedServiceStoppedByHandDoesNotWaitForWhatWantsIt() {
        let verdicts = DependencyGate.verdicts([
            S(name: "cache", ready: true, down: true, hasProcesses: true, haltingAll: true),
            S(name: "api", wants: ["cache"], ready: true, hasProcesses: true),
        ])
        #expect(verdicts["cache"]?.holdsStops == false)
        #expect(verdicts["api"] == .open)
    }

    @Test func theGateDrivesThePlanner() {
        var spec = ServiceSpec(name: "api", command: ["/bin/true"])
        spec.requires = ["db"]
        let intent = ServiceIntent(desired: 2)
        let now = ContinuousClock.now
        var records: [Int: InstanceRecord] = [:]
        let waiting = ServicePlanner.plan(records: &records, intent: intent, spec: spec, shuttingDown: false,
                                          gate: .init(waitingFor: ["db"]), now: now)
        #expect(waiting.actions.isEmpty)
        #expect(records.count == 2, "waiting slots are kept as stopped records, for status")
        let open = ServicePlanner.plan(records: &records, intent: intent, spec: spec, shuttingDown: false, gate: .open, now: now)
        #expect(open.actions == [.spawn(index: 0), .spawn(index: 1)])
        for index in 0..<2 { InstanceLifecycle.spawned(&records[index]!, pid: 100 + Int32(index), spec: spec.restart, now: now) }
        let down = ServicePlanner.plan(records: &records, intent: intent, spec: spec, shuttingDown: false,
                                       gate: .init(requiredDown: ["db"]), now: now)
        #expect(down.actions == [.signalStop(index: 0), .signalStop(index: 1)])
        var held: [Int: InstanceRecord] = [0: InstanceRecord(index: 0)]
        InstanceLifecycle.spawned(&held[0]!, pid: 7, spec: spec.restart, now: now)
        let holding = ServicePlanner.plan(records: &held, intent: intent, spec: spec, shuttingDown: true,
                                          gate: .init(heldBy: ["web"]), now: now)
        #expect(holding.actions.isEmpty)
        #expect(held[0]?.state.hasProcess == true)
    }
}
