import MusterCore
import Testing

/// The state machine and the planner on an injected clock: no process, no sleep.
@Suite("Instance state machine, backoff and reconcile planning")
struct LifecycleTests {
    let t0 = ContinuousClock.now
    func at(_ seconds: Double) -> ContinuousClock.Instant { t0 + .seconds(seconds) }

    var restart: RestartSpec {
        var spec = RestartSpec()
        spec.startSeconds = 1
        spec.maxFailedStarts = 3
        spec.backoffMin = .milliseconds(200)
        spec.backoffMax = .seconds(2)
        return spec
    }

    @Test func startingBecomesRunningAfterStartSeconds() {
        var record = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&record, pid: 10, spec: restart, now: at(0))
        #expect(record.state == .starting)
        InstanceLifecycle.deadlinePassed(&record, now: at(0.5))
        #expect(record.state == .starting)
        InstanceLifecycle.deadlinePassed(&record, now: at(1))
        #expect(record.state == .running)
    }

    @Test func startSecondsZeroIsRunningAtOnce() {
        var spec = restart
        spec.startSeconds = 0
        var record = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&record, pid: 10, spec: spec, now: at(0))
        #expect(record.state == .running)
    }

    @Test func exitsBeforeStartSecondsBackOffThenGoFatal() {
        var record = InstanceRecord(index: 0)
        var delays: [Double] = []
        for attempt in 1...3 {
            InstanceLifecycle.spawned(&record, pid: Int32(attempt), spec: restart, now: at(Double(attempt) * 10))
            InstanceLifecycle.exited(&record, status: .exited(code: 1), spec: restart, now: at(Double(attempt) * 10 + 0.1), jitter: 0.5)
            if let deadline = record.deadline { delays.append((deadline - at(Double(attempt) * 10 + 0.1)).seconds) }
        }
        #expect(record.state == .fatal)
        #expect(record.reason?.contains("exited with code 1 before start_seconds (1s)") == true)
        #expect(record.reason?.contains("gave up after 3 failed starts in a row") == true)
        #expect(delays.count == 2)
        #expect(abs(delays[0] - 0.2) < 1e-9)
        #expect(abs(delays[1] - 0.4) < 1e-9)
    }

    @Test func aSpawnFailureIsAFailedStartNotAHotLoop() {
        var record = InstanceRecord(index: 0)
        InstanceLifecycle.spawnFailed(&record, reason: "exec /usr/bin/nope: No such file or directory", spec: restart, now: at(0), jitter: 0)
        #expect(record.state == .backoff)
        #expect(record.reason == "exec /usr/bin/nope: No such file or directory")
        #expect(record.deadline! > at(0.1))
    }

    @Test func backoffDoublesIsCappedAndJittered() {
        let lo = Backoff.delay(attempt: 1, minimum: .milliseconds(200), maximum: .seconds(30), jitter: 0)
        let hi = Backoff.delay(attempt: 1, minimum: .milliseconds(200), maximum: .seconds(30), jitter: 1)
        #expect(abs(lo.seconds - 0.16) < 1e-9)
        #expect(abs(hi.seconds - 0.24) < 1e-9)
        #expect(abs(Backoff.delay(attempt: 4, minimum: .milliseconds(200), maximum: .seconds(30), jitter: 0.5).seconds - 1.6) < 1e-9)
        #expect(Backoff.delay(attempt: 30, minimum: .milliseconds(200), maximum: .seconds(30), jitter: 1) == .seconds(30))
    }

    @Test func onFailurePolicyLeavesASuccessfulExitExited() {
        var spec = restart
        spec.policy = .onFailure
        var record = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&record, pid: 1, spec: spec, now: at(0))
        InstanceLifecycle.deadlinePassed(&record, now: at(1))
        InstanceLifecycle.exited(&record, status: .exited(code: 0), spec: spec, now: at(5), jitter: 0)
        #expect(record.state == .exited)
        #expect(InstanceLifecycle.shouldRestart(.exited(code: 2), spec: spec))
        #expect(InstanceLifecycle.shouldRestart(.killed(signal: 9, coreDumped: false), spec: spec))
        spec.policy = .never
        #expect(!InstanceLifecycle.shouldRestart(.exited(code: 2), spec: spec))
    }

    @Test func aRunningInstanceThatKeepsDyingQuicklyBacksOff() {
        var record = InstanceRecord(index: 0)
        var now = 0.0
        var delays: [Double] = []
        for pid in 1...4 {
            InstanceLifecycle.spawned(&record, pid: Int32(pid), spec: restart, now: at(now))
            now += 1
            InstanceLifecycle.deadlinePassed(&record, now: at(now))
            #expect(record.state == .running)
            now += 0.5
            InstanceLifecycle.exited(&record, status: .exited(code: 1), spec: restart, now: at(now), jitter: 0.5)
            #expect(record.state == .backoff)
            delays.append((record.deadline! - at(now)).seconds)
            now = (record.deadline! - t0).seconds
        }
        #expect(delays[0] == 0)
        #expect(delays[1] > 0 && delays[2] > delays[1] && delays[3] >= delays[2])
        #expect(record.failedStarts == 0)
        #expect(record.restarts == 3)
    }

    @Test func aLongRunForgivesEarlierQuickExits() {
        var record = InstanceRecord(index: 0)
        record.quickExits = 5
        InstanceLifecycle.spawned(&record, pid: 1, spec: restart, now: at(0))
        InstanceLifecycle.deadlinePassed(&record, now: at(1))
        InstanceLifecycle.exited(&record, status: .killed(signal: 9, coreDumped: false), spec: restart, now: at(100), jitter: 0.5)
        #expect(record.deadline == at(100))
    }

    @Test func stopGoesThroughStoppingToStopped() {
        var record = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&record, pid: 1, spec: restart, now: at(0))
        #expect(InstanceLifecycle.stopRequested(&record, purpose: .halt, timeout: .seconds(10), now: at(2)))
        #expect(record.state == .stopping)
        InstanceLifecycle.exited(&record, status: .killed(signal: 15, coreDumped: false), spec: restart, now: at(3), jitter: 0)
        #expect(record.state == .stopped)
        #expect(record.reason == nil)
    }

    @Test func startClearsFatal() {
        var record = InstanceRecord(index: 0, state: .fatal)
        record.failedStarts = 3
        InstanceLifecycle.startRequested(&record)
        #expect(record.state == .stopped)
        #expect(record.failedStarts == 0)
    }

    // MARK: Planner

    func spec(instances: Int) -> ServiceSpec {
        var spec = ServiceSpec(name: "web", command: ["/bin/true"], instances: instances)
        spec.restart = restart
        spec.stop.timeout = .seconds(5)
        return spec
    }

    @Test func plansASpawnForEveryMissingInstance() {
        var records: [Int: InstanceRecord] = [:]
        let plan = ServicePlanner.plan(records: &records, intent: ServiceIntent(desired: 3), spec: spec(instances: 3), shuttingDown: false, now: at(0))
        #expect(plan.actions == [.spawn(index: 0), .spawn(index: 1), .spawn(index: 2)])
    }

    @Test func scalingDownStopsTheHighestIndexesAndForgetsThemOnceStopped() {
        var records: [Int: InstanceRecord] = [:]
        for i in 0..<3 {
            var r = InstanceRecord(index: i)
            InstanceLifecycle.spawned(&r, pid: Int32(i + 1), spec: restart, now: at(0))
            records[i] = r
        }
        let plan = ServicePlanner.plan(records: &records, intent: ServiceIntent(desired: 1), spec: spec(instances: 3), shuttingDown: false, now: at(2))
        #expect(plan.actions == [.signalStop(index: 1), .signalStop(index: 2)])
        #expect(records[2]?.state == .stopping)
        InstanceLifecycle.exited(&records[2]!, status: .exited(code: 0), spec: restart, now: at(3), jitter: 0)
        _ = ServicePlanner.plan(records: &records, intent: ServiceIntent(desired: 1), spec: spec(instances: 3), shuttingDown: false, now: at(3))
        #expect(records[2] == nil)
        #expect(records[1]?.state == .stopping)
    }

    @Test func theStopTimeoutKillsTheGroupOnce() {
        var records: [Int: InstanceRecord] = [:]
        var r = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&r, pid: 1, spec: restart, now: at(0))
        records[0] = r
        let intent = ServiceIntent(desired: 1, started: false)
        #expect(ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 1), shuttingDown: false, now: at(1)).actions == [.signalStop(index: 0)])
        #expect(ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 1), shuttingDown: false, now: at(3)).actions == [])
        #expect(ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 1), shuttingDown: false, now: at(6)).actions == [.killGroup(index: 0)])
        #expect(ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 1), shuttingDown: false, now: at(9)).actions == [])
    }

    @Test func heldInstancesAndBackoffDeadlinesAreRespected() {
        var records: [Int: InstanceRecord] = [:]
        var r = InstanceRecord(index: 1)
        InstanceLifecycle.spawnFailed(&r, reason: "x", spec: restart, now: at(0), jitter: 0.5)
        records[1] = r
        let intent = ServiceIntent(desired: 3, held: [2])
        let early = ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 3), shuttingDown: false, now: at(0.1))
        #expect(early.actions == [.spawn(index: 0)])
        #expect(early.nextDeadline == at(0.2))
        let later = ServicePlanner.plan(records: &records, intent: intent, spec: spec(instances: 3), shuttingDown: false, now: at(0.2))
        #expect(later.actions.contains(.spawn(index: 1)))
        #expect(!later.actions.contains(.spawn(index: 2)))
    }

    @Test func shutdownStopsEverythingAndSpawnsNothing() {
        var records: [Int: InstanceRecord] = [:]
        var r = InstanceRecord(index: 0)
        InstanceLifecycle.spawned(&r, pid: 1, spec: restart, now: at(0))
        records[0] = r
        let plan = ServicePlanner.plan(records: &records, intent: ServiceIntent(desired: 2), spec: spec(instances: 2), shuttingDown: true, now: at(1))
        #expect(plan.actions == [.signalStop(index: 0)])
    }
}

@Suite("Reload plans, ports, launch plans")
struct PlanningTests {
    func spec(_ name: String, _ command: String = "/bin/true", instances: Int = 1) -> ServiceSpec {
        ServiceSpec(name: name, command: [command], instances: instances, sourcePath: "/x/\(name).toml")
    }

    @Test func reloadPlanSeparatesAddedRemovedChangedRescaledAndUnchanged() {
        let plan = ReloadPlan(
            current: [spec("a"), spec("b"), spec("c"), spec("d", instances: 1)],
            next: [spec("b"), spec("c", "/bin/false"), spec("d", instances: 3), spec("e")])
        #expect(plan.added == ["e"])
        #expect(plan.removed == ["a"])
        #expect(plan.changed == ["c"])
        #expect(plan.rescaled == [.init(name: "d", from: 1, to: 3)])
        #expect(plan.unchanged == ["b"])
    }

    @Test func movingAManifestFileIsNotAChange() {
        var moved = spec("a")
        moved.sourcePath = "/elsewhere/a.toml"
        #expect(ReloadPlan(current: [spec("a")], next: [moved]).isEmpty)
    }

    @Test func portsAreStableUniqueAndSkipBusyOnes() {
        var ports = PortAllocator(range: 20000...20003)
        let web0 = ports.allocate(for: "web:0") { _ in true }
        #expect(web0 == 20000)
        let web1 = ports.allocate(for: "web:1") { $0 != 20001 }
        #expect(web1 == 20002)
        let web0Again = ports.allocate(for: "web:0") { _ in true }
        #expect(web0Again == 20000)
        ports.release("web:0")
        let api0 = ports.allocate(for: "api:0") { _ in true }
        #expect(api0 == 20003)
        let api1 = ports.allocate(for: "api:1") { _ in true }
        #expect(api1 == 20000)
        let api2 = ports.allocate(for: "api:2") { _ in true }
        #expect(api2 == 20001)
        let api3 = ports.allocate(for: "api:3") { _ in true }
        #expect(api3 == nil)
    }

    @Test func aSlotWhosePortWasTakenMeanwhileGetsAnotherOne() {
        var ports = PortAllocator(range: 20000...20003)
        let first = ports.allocate(for: "web:0") { _ in true }
        #expect(first == 20000)
        // The instance died; something else now listens on 20000.
        let moved = ports.allocate(for: "web:0") { $0 != 20000 }
        #expect(moved == 20001)
        #expect(ports.port(of: "web:0") == 20001)
        // 20000 is no longer ours: another slot may have it once it is free again.
        let web1 = ports.allocate(for: "web:1") { _ in true }
        #expect(web1 == 20002)
        let web2 = ports.allocate(for: "web:2") { _ in true }
        #expect(web2 == 20003)
        let web3 = ports.allocate(for: "web:3") { _ in true }
        #expect(web3 == 20000)
    }

    @Test func launchPlanExpandsPlaceholdersInACleanEnvironment() {
        var spec = ServiceSpec(name: "web", command: ["app", "--port", "{port}", "--id={service}-{index}"], directory: "/srv/{service}/{index}")
        spec.environment = ["LISTEN": "127.0.0.1:{port}", "APP_ENV": "production"]
        let plan = LaunchPlan(spec: spec, index: 2, port: 20002, daemonEnvironment: ["SECRET": "x", "PATH": "/daemon/bin"], account: ("www-data", "/var/www"))
        #expect(plan.argv == ["app", "--port", "20002", "--id=web-2"])
        #expect(plan.directory == "/srv/web/2")
        #expect(plan.environment == [
            "APP_ENV=production", "HOME=/var/www", "LISTEN=127.0.0.1:20002", "LOGNAME=www-data",
            "MUSTER_INSTANCE=2", "MUSTER_SERVICE=web", "PATH=\(LaunchPlan.defaultPath)", "PORT=20002", "USER=www-data",
        ])
        spec.inheritEnvironment = true
        let inherited = LaunchPlan(spec: spec, index: 0, port: 1, daemonEnvironment: ["SECRET": "x", "PATH": "/daemon/bin"], account: nil)
        #expect(inherited.environment.contains("SECRET=x"))
        #expect(inherited.environment.contains("PATH=/daemon/bin"))
        let found = inherited.resolveProgram { $0 == "/daemon/bin/app" }
        #expect(found == "/daemon/bin/app")
        let notFound = inherited.resolveProgram { _ in false }
        #expect(notFound == nil)
    }

    @Test func aSavedIntentSurvivesUnlessTheManifestCountChanged() {
        let intent = ServiceIntent(desired: 5, started: false, manifestInstances: 2)
        #expect(intent.wants(0) == false)
        #expect(ServiceIntent(desired: 2, held: [1]).wants(1) == false)
        #expect(ServiceIntent(desired: 2, held: [1]).wants(0))
        #expect(ServiceIntent(desired: 2).wants(2) == false)
    }

    @Test func startingOneInstanceOfAStoppedServiceStartsOnlyThatOne() {
        var intent = ServiceIntent(desired: 3)
        intent.stop(nil)
        #expect(!intent.wants(0) && !intent.wants(1) && !intent.wants(2))
        intent.start(1)
        #expect(!intent.wants(0) && intent.wants(1) && !intent.wants(2))
        intent.start(nil)
        #expect(intent.wants(0) && intent.wants(1) && intent.wants(2))
        intent.stop(2)
        #expect(intent.wants(0) && !intent.wants(2))
    }
}
