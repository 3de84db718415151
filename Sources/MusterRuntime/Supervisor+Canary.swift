import MusterAPI
import MusterCore
import MusterProxy

/// A canary deploy of one service: `canary_instances` of the new revision run as an internal
/// service entry named "web@<revision>" (so the planner, spawn, health checks and drain work for it
/// as for any service), share the parent's proxy with a weight, and are judged every second.
struct CanaryRun {
    enum Phase: String { case starting, judging, promoting }
    /// The new revision's spec, under the service's own name.
    var spec: ServiceSpec
    var revision: Int
    /// The internal entry running the canary's instances.
    var entryName: String
    var phase: Phase = .starting
    var startedAt: ContinuousClock.Instant
    /// When every canary instance was first ready: judging time counts from here.
    var readySince: ContinuousClock.Instant?
    var lastSample: CanarySample?
}

/// Promotions and rollbacks per service, for `/metrics`.
public struct CanaryTally: Sendable, Equatable {
    public var promotions = 0
    public var rollbacks = 0
}

extension Supervisor {
    var revisionStore: RevisionStore? {
        guard let path = deps.store?.path, let slash = path.lastIndex(of: "/") else { return nil }
        return RevisionStore(stateDir: String(path[..<slash]))
    }

    func saveHistory(_ name: String) {
        guard let store = revisionStore, let history = histories[name] else { return }
        do { try store.save(history, for: name) }
        catch { logger.error("cannot save revisions", metadata: ["service": "\(name)", "error": "\(error)"]) }
    }

    // MARK: At daemon start

    /// Reads each service's revisions. A canary that was being judged when musterd died is
    /// recorded as rolled back, and the service comes back on its last good revision: the one its
    /// own instances ran. A manifest edited while musterd was down is a new revision, deployed.
    func restoreRevisions() {
        for name in services.keys.sorted() {
            guard let entry = services[name], entry.canaryOf == nil else { continue }
            var history = revisionStore?.load(name) ?? RevisionHistory()
            let disk = entry.spec
            diskSpecs[name] = disk
            var running = disk
            for revision in history.revisions where revision.outcome == .canary {
                history.setOutcome(revision.number, .rolledBack(reason: "musterd restarted during the canary"))
                emit("canary-rolled-back", service: name, message: "revision \(revision.number) rolled back: musterd restarted during the canary")
                canaryTallies[name, default: CanaryTally()].rollbacks += 1
                if let good = history.current.flatMap(history.revision), good.outcome.isGood {
                    running = Self.withCurrentScale(good.spec, from: disk)
                }
            }
            if history.current.flatMap(history.revision)?.spec != running {
                let revision = history.append(running, time: WallClock.now(), source: "start", outcome: .deployed)
                history.current = revision.number
            }
            services[name]!.spec = running
            histories[name] = history
            saveHistory(name)
        }
    }

    /// An older revision's spec, keeping what is not the revision's business: where the manifest
    /// lives.
    static func withCurrentScale(_ spec: ServiceSpec, from disk: ServiceSpec) -> ServiceSpec {
        var spec = spec
        spec.sourcePath = disk.sourcePath
        return spec
    }

    // MARK: Reload hooks

    /// Whether a reload (or `deploy`) of `spec` goes through a canary: the strategy says so, and
    /// there is a running version to compare it with.
    func wantsCanary(_ entry: ServiceEntry, _ spec: ServiceSpec) -> Bool {
        spec.deploy.strategy == .canary && entry.intent.started && entry.records.values.contains { $0.state.hasProcess }
    }

    /// The spec a reload leaves running. A changed manifest runs as written; an unchanged one
    /// keeps a rolled-back revision running (taking only scale, proxy, health and autoscale from
    /// disk, which need no restart), so a rollback sticks until the manifest changes.
    func specAfterReload(_ name: String, running: ServiceSpec, disk: ServiceSpec, changed: Bool) -> ServiceSpec {
        let baseline = diskSpecs[name] ?? running
        diskSpecs[name] = disk
        if changed || running == baseline { return disk }
        var kept = running
        kept.instances = disk.instances
        kept.proxy = disk.proxy
        kept.health = disk.health
        kept.autoscale = disk.autoscale
        kept.sourcePath = disk.sourcePath
        return kept
    }

    /// A rolling (or plain) deploy of `spec` is under way: record it as the current revision.
    func recordDeployed(_ name: String, _ spec: ServiceSpec, source: String) {
        supersedeCanary(name)
        var history = histories[name] ?? RevisionHistory()
        let revision = history.append(spec, time: WallClock.now(), source: source, outcome: .deployed)
        history.current = revision.number
        histories[name] = history
        saveHistory(name)
    }

    // MARK: Canary lifecycle

    /// Starts `canary_instances` of `spec` beside the running instances and the loop judging them.
    func startCanary(_ spec: ServiceSpec, source: String) {
        let name = spec.name
        guard let parent = services[name], !parent.removing else { return }
        supersedeCanary(name)
        var history = histories[name] ?? RevisionHistory()
        let revision = history.append(spec, time: WallClock.now(), source: source, outcome: .canary)
        histories[name] = history
        saveHistory(name)
        let entryName = "\(name)@\(revision.number)"
        var canarySpec = spec
        canarySpec.name = entryName
        canarySpec.instances = spec.deploy.canaryInstances
        canarySpec.autoscale = nil
        // A canary that crashes is judged, not restarted.
        canarySpec.restart.policy = .never
        var entry = ServiceEntry(spec: canarySpec, intent: ServiceIntent(desired: spec.deploy.canaryInstances))
        entry.canaryOf = name
        services[entryName] = entry
        canaries[name] = CanaryRun(spec: spec, revision: revision.number, entryName: entryName, startedAt: .now)
        emit("canary-started", service: name,
             message: "canary of revision \(revision.number): \(spec.deploy.canaryInstances) instance(s), "
                + (spec.proxy == nil ? "judged on health and crashes" : "\(CanaryJudge.limitText(spec.deploy.canaryWeight)) of requests")
                + ", \(DurationText.format(spec.deploy.canaryDuration)) to promotion")
        reconcile()
        let number = revision.number
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard await self.judgeCanary(name, revision: number) else { return }
            }
        }
    }

    /// One look at the canary; false once it is decided (or gone).
    func judgeCanary(_ name: String, revision: Int) -> Bool {
        guard var run = canaries[name], run.revision == revision, run.phase != .promoting else { return false }
        guard !shuttingDown else { return false }
        guard let entry = services[run.entryName] else {
            rollBackCanary(name, reason: "the canary's instances are gone")
            return false
        }
        let now = ContinuousClock.now
        let records = entry.records.values.sorted { $0.index < $1.index }
        var failure: String?
        if let crashed = records.first(where: { [.backoff, .fatal, .exited].contains($0.state) || $0.restarts > 0 }) {
            failure = "canary crashed: \(crashed.reason ?? crashed.state.rawValue)"
        } else if run.readySince != nil, let unready = records.first(where: { !$0.ready }) {
            failure = "health check failing" + (unready.health?.lastResult.map { ": \($0.message)" } ?? "")
        } else if run.readySince == nil {
            let spec = run.spec
            let bound = Duration.seconds(spec.restart.startSeconds) + spec.health.interval * (spec.health.rise + 2) + spec.health.timeout + .seconds(30)
            if now - run.startedAt > bound { failure = "not ready within \(DurationText.format(bound))" }
        }
        if run.readySince == nil, failure == nil, records.count == run.spec.deploy.canaryInstances, records.allSatisfy(\.ready) {
            run.readySince = now
            run.phase = .judging
            emit("canary-ready", service: name, message: "canary of revision \(revision) ready; judging for \(DurationText.format(run.spec.deploy.canaryDuration))")
        }
        run.lastSample = canarySample(entry)
        canaries[name] = run
        let sample = proxies[name] == nil ? nil : run.lastSample
        switch CanaryJudge.judge(sample, limits: run.spec.deploy, elapsed: run.readySince.map { now - $0 }, failure: failure) {
        case .keepJudging: return true
        case .rollBack(let reason): rollBackCanary(name, reason: reason); return false
        case .promote: promoteCanary(name); return false
        }
    }

    func canarySample(_ entry: ServiceEntry) -> CanarySample {
        let backends = entry.live.values.compactMap(\.backend)
        var requests = 0, errors = 0
        var buckets = Array(repeating: 0, count: LatencyHistogram.bounds.count + 1)
        for backend in backends {
            let counters = backend.counters
            let failures = counters.connectFailures.load(ordering: .relaxed)
            requests += counters.requestsTotal + failures
            errors += counters.responses[5].load(ordering: .relaxed) + counters.responses[0].load(ordering: .relaxed) + failures
            for (i, bucket) in counters.latency.buckets.enumerated() { buckets[i] += bucket.load(ordering: .relaxed) }
        }
        return CanarySample(requests: requests, errors: errors, latencyBuckets: buckets, bounds: LatencyHistogram.bounds)
    }

    /// Stops the canary (drained: out of the rotation, in-flight requests finishing) and keeps the
    /// service on the revision its own instances run.
    func rollBackCanary(_ name: String, reason: String) {
        guard let run = canaries.removeValue(forKey: name) else { return }
        histories[name]?.setOutcome(run.revision, .rolledBack(reason: reason))
        saveHistory(name)
        canaryTallies[name, default: CanaryTally()].rollbacks += 1
        let current = histories[name]?.current.map { "revision \($0)" } ?? "the running revision"
        emit("canary-rolled-back", service: name, message: "revision \(run.revision) rolled back: \(reason); \(current) keeps serving")
        stopCanaryEntry(run.entryName)
    }

    /// Replaces the service's instances by the canary's revision with a rolling restart, then
    /// stops the canary's instances (drained): they are not adopted, so every slot ends up a plain
    /// instance of the service.
    func promoteCanary(_ name: String) {
        guard var run = canaries[name], var entry = services[name] else { return }
        run.phase = .promoting
        canaries[name] = run
        histories[name]?.setOutcome(run.revision, .promoted)
        histories[name]?.current = run.revision
        saveHistory(name)
        canaryTallies[name, default: CanaryTally()].promotions += 1
        emit("canary-promoted", service: name, message: "revision \(run.revision) promoted after \(DurationText.format(run.spec.deploy.canaryDuration)) within its limits; rolling restart")
        let indexes = entry.records.keys.sorted()
        let rolling = run.spec.proxy != nil && entry.spec.proxy != nil
        if !rolling { restartRecords(&entry, indexes, now: .now) }
        if entry.spec.instances != run.spec.instances {
            entry.intent.desired = run.spec.instances
            entry.intent.manifestInstances = run.spec.instances
        }
        entry.spec = run.spec
        services[name] = entry
        saveIntents()
        reconcile()
        let revision = run.revision
        Task {
            if rolling { await self.rollingRestart(name, indexes: indexes) }
            else { await self.waitForSettled([(name, nil)]) }
            await self.finishPromotion(name, revision: revision)
        }
    }

    private func finishPromotion(_ name: String, revision: Int) {
        guard let run = canaries[name], run.revision == revision else { return }
        canaries[name] = nil
        stopCanaryEntry(run.entryName)
    }

    /// A newer deploy replaces a canary not yet decided.
    /// `stop SERVICE` (or `stop all`) during a canary: a stopped service is neither judged nor
    /// promoted, so its canary is rolled back and the revision it ran stays current. A canary
    /// already promoting is left to its rolling restart, which the stop then holds.
    func endCanaryOfStoppedService(_ name: String) {
        guard let run = canaries[name], run.phase != .promoting else { return }
        rollBackCanary(name, reason: "\(name) was stopped")
    }

    func supersedeCanary(_ name: String) {
        guard let run = canaries.removeValue(forKey: name) else { return }
        if run.phase != .promoting {
            histories[name]?.setOutcome(run.revision, .superseded)
            saveHistory(name)
            emit("canary-superseded", service: name, message: "revision \(run.revision)'s canary stopped: a newer revision is being deployed")
        }
        stopCanaryEntry(run.entryName)
    }

    func stopCanaryEntry(_ entryName: String) {
        guard services[entryName] != nil else { return }
        services[entryName]!.removing = true
        reconcile()
    }

    // MARK: Rotation

    /// The service's own instances and its canary's, as one weighted rotation.
    func publishCombined(_ owner: String, proxy: ServiceProxy) {
        let main = services[owner]?.publishedBackends ?? []
        guard let run = canaries[owner], let canaryEntry = services[run.entryName], !canaryEntry.removing || !canaryEntry.publishedBackends.isEmpty else {
            proxy.backends.setReady(main)
            return
        }
        proxy.backends.setReady(main, canary: canaryEntry.publishedBackends, canaryWeight: run.spec.deploy.canaryWeight)
    }

    // MARK: Commands

    /// `deploy SERVICE`: the service's manifest as it is on disk now, with its strategy.
    public func deploy(_ name: String) async throws(ControlError) -> DeployResponse {
        guard !shuttingDown else { throw .shuttingDown() }
        guard let entry = services[name], !entry.removing, entry.canaryOf == nil else { throw .notFound("no service named \"\(name)\"") }
        let specs: [ServiceSpec]
        do { specs = try deps.loadManifests() }
        catch {
            throw ControlError(status: 422, code: "invalid_manifest", message: "deploy refused: \(error.issues.count) problem(s) in the manifests; nothing was changed",
                               details: error.issues.map(\.description))
        }
        guard let spec = specs.first(where: { $0.name == name }) else {
            throw ControlError(status: 409, code: "not_on_disk", message: "\(name) has no manifest on disk any more (reload removes it)")
        }
        diskSpecs[name] = spec
        return try await deploySpec(spec, source: "deploy")
    }

    /// `rollback SERVICE [REVISION]`: an earlier revision (the previous good one by default), with
    /// the service's strategy.
    public func rollback(_ name: String, to number: Int?) async throws(ControlError) -> DeployResponse {
        guard !shuttingDown else { throw .shuttingDown() }
        guard let entry = services[name], !entry.removing, entry.canaryOf == nil, let history = histories[name] else {
            throw .notFound("no service named \"\(name)\"")
        }
        let target: Revision
        if let number {
            guard let found = history.revision(number) else {
                throw .notFound("\(name) has no revision \(number) (musterctl history \(name) lists them)")
            }
            target = found
        } else {
            guard let found = history.previousGood else {
                throw ControlError(status: 409, code: "no_earlier_revision", message: "\(name) has no earlier good revision to roll back to")
            }
            target = found
        }
        var spec = Self.withCurrentScale(target.spec, from: entry.spec)
        spec.deploy = entry.spec.deploy
        return try await deploySpec(spec, source: "rollback to \(target.number)")
    }

    private func deploySpec(_ spec: ServiceSpec, source: String) async throws(ControlError) -> DeployResponse {
        let name = spec.name
        guard var entry = services[name] else { throw .notFound("no service named \"\(name)\"") }
        let others = services.values.filter { !$0.removing && $0.canaryOf == nil && $0.spec.name != name }.map(\.spec)
        try await applyProxies(others + [spec])
        guard spec.needsRestart(comparedTo: entry.spec) || (canaries[name] != nil && canaries[name]!.spec != spec) else {
            if canaries[name] == nil {
                entry.spec = spec
                services[name] = entry
                reconcile()
            }
            return DeployResponse(service: name, revision: histories[name]?.current, strategy: "none",
                                  message: "\(name): unchanged, nothing to deploy")
        }
        if wantsCanary(entry, spec) {
            startCanary(spec, source: source)
            let revision = canaries[name]?.revision
            return DeployResponse(service: name, revision: revision, strategy: "canary",
                                  message: "\(name): canary of revision \(revision ?? 0) started (\(source))")
        }
        recordDeployed(name, spec, source: source)
        let indexes = entry.records.keys.sorted()
        let rolling = spec.proxy != nil && entry.spec.proxy != nil
        if !rolling { restartRecords(&entry, indexes, now: .now) }
        if entry.spec.instances != spec.instances {
            entry.intent.desired = spec.instances
            entry.intent.manifestInstances = spec.instances
        }
        entry.spec = spec
        services[name] = entry
        saveIntents()
        reconcile()
        if rolling { Task { await self.rollingRestart(name, indexes: indexes) } }
        let revision = histories[name]?.current
        return DeployResponse(service: name, revision: revision, strategy: "rolling",
                              message: "\(name): revision \(revision ?? 0) deploying by rolling restart (\(source))")
    }

    /// `history SERVICE`.
    public func history(_ name: String) throws(ControlError) -> HistoryResponse {
        guard let entry = services[name], entry.canaryOf == nil else { throw .notFound("no service named \"\(name)\"") }
        let history = histories[name] ?? RevisionHistory()
        return HistoryResponse(service: name, revisions: history.revisions.map {
            .init(number: $0.number, time: $0.time, changes: $0.changes, source: $0.source, outcome: $0.outcome.text,
                  current: $0.number == history.current)
        })
    }

    // MARK: Status

    func canaryStatus(_ name: String, now: ContinuousClock.Instant) -> CanaryStatus? {
        guard let run = canaries[name] else { return nil }
        let sample = run.lastSample ?? services[run.entryName].map(canarySample) ?? CanarySample(requests: 0, errors: 0)
        return CanaryStatus(revision: run.revision, phase: run.phase.rawValue, weight: run.spec.deploy.canaryWeight,
                            durationSeconds: run.spec.deploy.canaryDuration.seconds,
                            elapsedSeconds: run.readySince.map { (now - $0).seconds }, requests: sample.requests,
                            errorRate: sample.errorRate, p99Seconds: sample.p99,
                            instances: services[run.entryName].map { instanceRows(run.entryName, entry: $0, now: now) } ?? [])
    }
}
