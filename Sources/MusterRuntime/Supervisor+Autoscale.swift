import MusterAPI
import MusterCore
import MusterProxy

/// What the supervisor keeps for one autoscaled service: the pure policy, and the previous
/// readings its rates are measured from.
struct AutoscaleState {
    var policy: AutoscalePolicy
    var lastSample: LoadSample?
    var lastDecision: AutoscaleDecision?
    var decisions: [AutoscaleReport.Decision] = []
    /// The service's request total at the previous tick, for rps and for "a request arrived".
    var previousRequests: (total: Int, at: ContinuousClock.Instant)?
    /// CPU seconds of each process at the previous tick, keyed by (index, generation).
    var previousCPU: [InstanceKey: Double] = [:]
    /// In-flight readings taken between ticks; their mean is the tick's concurrency, so one
    /// reading that lands between two bursts does not stand for the whole second.
    var concurrencyReadings: (sum: Double, count: Int) = (0, 0)
    /// Raised by the activator and not yet served by a ready instance.
    var activating = false
    /// In-flight readings in a row at or over the panic threshold (concurrency only).
    var readingsOverThreshold = 0
    /// The latest readings (at most `Supervisor.surgeReadings`): a surge's sample is their mean,
    /// not the mean since the tick began, which would water the step down with what came before.
    var latestReadings: [Double] = []

    struct InstanceKey: Hashable {
        var index: Int
        var generation: Int
    }

    static let decisionsKept = 20

    mutating func remember(_ decision: AutoscaleReport.Decision) {
        decisions.append(decision)
        if decisions.count > Self.decisionsKept { decisions.removeFirst(decisions.count - Self.decisionsKept) }
    }
}

/// The autoscaler's edge: it measures each autoscaled service once per `metrics_interval`, asks
/// the pure policy for a count, and changes the service's desired count like `scale` does, so the
/// reconcile loop does the starting and the draining. The activator scales a service at zero up
/// the moment a request waits, not at the next tick.
extension Supervisor {
    /// Every change of a count the autoscaler makes: the `autoscaled` event and its chart mark.
    func announceAutoscaled(_ name: String, from: Int, to: Int, reason: String) {
        emit("autoscaled", service: name, message: "\(name): \(from) → \(to), \(reason)")
        markScaling(name, from: from, to: to, reason: reason)
    }

    /// Readings of in-flight requests per tick: enough to smooth a tick's concurrency without
    /// waking the actor more than ten times a second.
    static let readingsPerTick = 10

    /// Runs until the daemon shuts down. Started by `start()`. Readings and ticks keep to
    /// deadlines counted from the start, so ticks do not drift later by the time each takes.
    func runAutoscaler() async {
        let interval = deps.metricsInterval
        let step = interval / Self.readingsPerTick
        var start = ContinuousClock.now
        var reading = 0
        while !Task.isCancelled && !shuttingDown {
            if autoscalers.isEmpty {
                await withCheckedContinuation { autoscalerParked = $0 }
                start = ContinuousClock.now
                reading = 0
                continue
            }
            reading += 1
            try? await Task.sleep(until: start + step * reading, clock: .continuous)
            let now = ContinuousClock.now
            let surging = readConcurrency()
            if reading % Self.readingsPerTick == 0 {
                autoscaleTick(now: now)
            } else if !surging.isEmpty {
                autoscaleTick(now: now, only: surging)
            }
        }
    }

    /// Readings in a row over the panic threshold that decide at once, between ticks: a step of
    /// load is acted on about 300 ms after it comes, wherever it falls in the tick, while one
    /// reading that catches a passing burst does not.
    static let surgeReadings = 3

    /// Creates, updates or drops each service's autoscaler state to match its spec (at start and
    /// after a reload); keeps the history of a service whose bounds changed.
    func syncAutoscalers(now: ContinuousClock.Instant) {
        for (name, entry) in services {
            guard let spec = entry.spec.autoscale, !entry.removing else {
                autoscalers[name] = nil
                continue
            }
            if autoscalers[name] == nil { autoscalers[name] = AutoscaleState(policy: AutoscalePolicy(spec: spec, now: now)) }
            else { autoscalers[name]!.policy.spec = spec }
            // Every time: a reload may have given the service its proxy only now.
            proxies[name]?.backends.onWaiting { [weak self] in
                guard let self else { return }
                Task { await self.activate(name) }
            }
            // New bounds hold at once, unless the operator has taken over.
            if !entry.intent.autoscalePaused, spec.clamped(entry.intent.desired) != entry.intent.desired {
                let from = entry.intent.desired
                services[name]!.intent.desired = spec.clamped(from)
                announceAutoscaled(name, from: from, to: spec.clamped(from), reason: "outside the bounds min = \(spec.min), max = \(spec.max)")
            }
        }
        for name in autoscalers.keys where services[name]?.spec.autoscale == nil { autoscalers[name] = nil }
        if !autoscalers.isEmpty { autoscalerParked.take()?.resume() }
    }

    /// Takes one in-flight reading per service; returns the concurrency-scaled services whose
    /// last `surgeReadings` readings were all at or over the panic threshold of their capacity.
    private func readConcurrency() -> Set<String> {
        var surging: Set<String> = []
        for name in autoscalers.keys {
            guard let entry = services[name] else { continue }
            let value = Double(inFlight(entry) + queued(name))
            autoscalers[name]!.concurrencyReadings.sum += value
            autoscalers[name]!.concurrencyReadings.count += 1
            autoscalers[name]!.latestReadings.append(value)
            if autoscalers[name]!.latestReadings.count > Self.surgeReadings { autoscalers[name]!.latestReadings.removeFirst() }
            guard let spec = entry.spec.autoscale, spec.metric == .concurrency, entry.intent.desired > 0,
                  entry.intent.started, !entry.intent.autoscalePaused else { continue }
            let capacity = Double(entry.intent.desired) * spec.target
            if value >= spec.panicThreshold * capacity { autoscalers[name]!.readingsOverThreshold += 1 }
            else { autoscalers[name]!.readingsOverThreshold = 0 }
            if autoscalers[name]!.readingsOverThreshold >= Self.surgeReadings {
                autoscalers[name]!.readingsOverThreshold = 0
                surging.insert(name)
            }
        }
        return surging
    }

    private func inFlight(_ entry: ServiceEntry) -> Int {
        let backends = entry.live.values.compactMap(\.backend) + entry.retiring.compactMap(\.live.backend)
        return backends.reduce(0) { $0 + $1.counters.inFlight.load(ordering: .relaxed) }
    }

    private func queued(_ name: String) -> Int {
        proxies[name]?.backends.queued.load(ordering: .relaxed) ?? 0
    }

    private func requestsTotal(_ name: String, _ entry: ServiceEntry) -> Int {
        let backends = entry.live.values.compactMap(\.backend) + entry.retiring.compactMap(\.live.backend)
        return backends.reduce(endedRequests[name] ?? 0) { $0 + $1.counters.requestsTotal }
    }

    /// One measurement and one decision per autoscaled service (or only those named).
    func autoscaleTick(now: ContinuousClock.Instant, only: Set<String>? = nil) {
        var changed = false
        for name in autoscalers.keys.sorted() where only?.contains(name) ?? true {
            guard let entry = services[name], !entry.removing, let spec = entry.spec.autoscale, var state = autoscalers[name] else { continue }
            let sample = measure(name, entry: entry, spec: spec, state: &state, now: now, surge: only != nil)
            state.policy.record(sample)
            state.lastSample = sample
            let current = entry.intent.desired
            let decision = state.policy.decide(current: current, now: now)
            state.lastDecision = decision
            // A stopped service or a paused scaler is measured and explained, not changed.
            if entry.intent.started, !entry.intent.autoscalePaused, decision.desired != current {
                services[name]!.intent.desired = decision.desired
                state.remember(.init(time: WallClock.now(), from: current, to: decision.desired, reason: decision.reason))
                announceAutoscaled(name, from: current, to: decision.desired, reason: decision.reason)
                changed = true
            }
            autoscalers[name] = state
        }
        if changed {
            saveIntents()
            reconcile()
        }
    }

    /// - Parameter surge: decided between ticks on a surge: concurrency is the latest readings'.
    private func measure(_ name: String, entry: ServiceEntry, spec: AutoscaleSpec, state: inout AutoscaleState,
                         now: ContinuousClock.Instant, surge: Bool = false) -> LoadSample {
        let held = queued(name)
        let open = inFlight(entry) + (proxies[name]?.counters.openConnections.load(ordering: .relaxed) ?? 0)
        let requests = requestsTotal(name, entry)
        let arrived = state.previousRequests.map { requests > $0.total } ?? false
        let elapsed = state.previousRequests.map { (now - $0.at).seconds } ?? 0
        let rate = elapsed > 0 ? Double(max(0, requests - (state.previousRequests?.total ?? requests))) / elapsed : 0
        state.previousRequests = (requests, now)
        let readings = state.concurrencyReadings
        state.concurrencyReadings = (0, 0)

        let total: Double
        switch spec.metric {
        case .concurrency:
            // Held requests are load: a service at zero has a backlog and nothing in flight.
            if surge, !state.latestReadings.isEmpty {
                total = state.latestReadings.reduce(0, +) / Double(state.latestReadings.count)
            } else {
                total = readings.count > 0 ? readings.sum / Double(readings.count) : Double(inFlight(entry) + held)
            }
        case .rps:
            total = rate + Double(held)
        case .cpu, .memory:
            var cores = 0.0
            var bytes = 0.0
            var seen: [AutoscaleState.InstanceKey: Double] = [:]
            for (index, live) in entry.live {
                guard let reading = live.usage?.readFresh() else { continue }
                let key = AutoscaleState.InstanceKey(index: index, generation: live.generation)
                if let seconds = reading.cpuSeconds {
                    if let before = state.previousCPU[key], elapsed > 0 { cores += max(0, seconds - before) / elapsed }
                    seen[key] = seconds
                }
                bytes += Double(reading.memoryBytes ?? 0)
            }
            state.previousCPU = seen
            total = spec.metric == .cpu ? cores : bytes
        }
        return LoadSample(at: now, total: total, active: arrived || open > 0 || held > 0)
    }

    /// A request is waiting and nothing is ready. For a service scaled to zero (or still waking
    /// from zero), start as many instances as the waiting requests ask for, now.
    func activate(_ name: String) {
        guard let entry = services[name], !entry.removing, entry.intent.started, !entry.intent.autoscalePaused,
              let spec = entry.spec.autoscale, var state = autoscalers[name], !shuttingDown else { return }
        let now = ContinuousClock.now
        state.policy.noteActivity(now: now)
        defer { autoscalers[name] = state }
        guard entry.intent.desired == 0 || state.activating else { return }
        let held = queued(name)
        let wanted: Int
        switch spec.metric {
        case .concurrency, .rps: wanted = spec.clamped(max(1, Int((Double(held) / spec.target).rounded(.up))))
        case .cpu, .memory: wanted = spec.clamped(1)
        }
        let current = entry.intent.desired
        guard wanted > current else { return }
        state.activating = true
        services[name]!.intent.desired = wanted
        let reason = "\(held) request\(held == 1 ? "" : "s") held with no instance ready (activator), target \(Self.format(spec.target))"
        state.remember(.init(time: WallClock.now(), from: current, to: wanted, reason: reason))
        announceAutoscaled(name, from: current, to: wanted, reason: reason)
        saveIntents()
        reconcile()
    }

    /// Called from reconcile: once an instance serves, waking from zero is over.
    func noteServing(_ name: String, readyCount: Int) {
        if readyCount > 0, autoscalers[name]?.activating == true { autoscalers[name]!.activating = false }
    }

    /// `autoscale pause|resume SERVICE`.
    public func setAutoscalePaused(_ name: String, paused: Bool) throws(ControlError) -> [String] {
        try refuseWhileShuttingDownForAutoscale()
        guard let entry = services[name], !entry.removing else { throw autoscaleNotFound(name) }
        guard let spec = entry.spec.autoscale else { throw notAutoscaled(name) }
        guard entry.intent.autoscalePaused != paused else {
            return ["\(name): the autoscaler is already \(paused ? "paused" : "running")"]
        }
        services[name]!.intent.autoscalePaused = paused
        var line = "\(name): autoscaler \(paused ? "paused; musterctl scale \(name) N sets the count until resume" : "resumed")"
        if !paused, spec.clamped(entry.intent.desired) != entry.intent.desired {
            services[name]!.intent.desired = spec.clamped(entry.intent.desired)
            line += "; \(entry.intent.desired) → \(spec.clamped(entry.intent.desired)) to stay within min = \(spec.min), max = \(spec.max)"
        }
        saveIntents()
        emit(paused ? "autoscale-paused" : "autoscale-resumed", service: name, message: line)
        reconcile()
        return [line]
    }

    /// `autoscale SERVICE`.
    public func autoscaleReport(_ name: String) throws(ControlError) -> AutoscaleReport {
        guard let entry = services[name], !entry.removing else { throw autoscaleNotFound(name) }
        guard let spec = entry.spec.autoscale else { throw notAutoscaled(name) }
        let state = autoscalers[name]
        let decision = state?.lastDecision
        let serving = entry.records.values.filter(\.ready).count
        let stable = decision?.stableLoad ?? 0
        return AutoscaleReport(
            service: name, metric: spec.metric.rawValue, target: spec.target, min: spec.min, max: spec.max,
            tolerance: spec.tolerance, windowSeconds: spec.window.seconds, panicWindowSeconds: spec.panicWindow.seconds,
            panicThreshold: spec.panicThreshold, scaleDownDelaySeconds: spec.scaleDownDelay.seconds,
            scaleToZeroAfterSeconds: spec.scaleToZeroAfter.seconds, intervalSeconds: deps.metricsInterval.seconds,
            desired: entry.intent.desired, current: serving, paused: entry.intent.autoscalePaused,
            panicking: decision?.panicking ?? false,
            load: .init(last: state?.lastSample?.total ?? 0, stable: stable, panic: decision?.panicLoad ?? 0,
                        perInstance: stable / Double(max(1, serving))),
            queued: queued(name), lastReason: decision?.reason, decisions: state?.decisions ?? [])
    }

    func autoscaleSummary(_ name: String, entry: ServiceEntry) -> AutoscaleSummary? {
        guard let spec = entry.spec.autoscale else { return nil }
        let decision = autoscalers[name]?.lastDecision
        return AutoscaleSummary(metric: spec.metric.rawValue, target: spec.target, min: spec.min, max: spec.max,
                                desired: entry.intent.desired, current: entry.records.values.filter(\.ready).count,
                                load: decision?.stableLoad, paused: entry.intent.autoscalePaused,
                                panicking: decision?.panicking ?? false)
    }

    /// Refuses `scale` while the autoscaler owns the count.
    func refuseScaleWhileAutoscaled(_ name: String) throws(ControlError) {
        guard let entry = services[name], let spec = entry.spec.autoscale, !entry.intent.autoscalePaused else { return }
        throw ControlError(status: 409, code: "autoscaled",
                           message: "\(name) is autoscaled (\(spec.min) to \(spec.max) instances on \(spec.metric.rawValue), target \(Self.format(spec.target)) per instance); pause the autoscaler first: musterctl autoscale pause \(name)")
    }

    private func notAutoscaled(_ name: String) -> ControlError {
        ControlError(status: 409, code: "not_autoscaled", message: "\(name) has no [autoscale] table in \(services[name]?.spec.sourcePath ?? "its manifest"); musterctl scale \(name) N sets its count")
    }

    private func autoscaleNotFound(_ name: String) -> ControlError {
        let scaled = services.filter { $0.value.spec.autoscale != nil && !$0.value.removing }.keys.sorted()
        var message = "no service named \"\(name)\""
        if let near = Suggestions.nearest(to: name, in: Array(services.keys)) { message += " (did you mean \"\(near)\"?)" }
        else if !scaled.isEmpty { message += " (autoscaled: \(scaled.joined(separator: ", ")))" }
        return .notFound(message)
    }

    private func refuseWhileShuttingDownForAutoscale() throws(ControlError) {
        if shuttingDown { throw .shuttingDown() }
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
