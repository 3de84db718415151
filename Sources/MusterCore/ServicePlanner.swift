/// What the operator wants of a service, beyond its manifest: how many instances, and whether the
/// service or single instances were stopped by hand. This is what survives a daemon restart.
public struct ServiceIntent: Sendable, Equatable, Codable {
    public var desired: Int
    /// False after `musterctl stop SERVICE` until `start`.
    public var started: Bool
    /// Instances stopped one by one (`musterctl stop web:1`).
    public var held: Set<Int>
    /// The manifest's `instances` when this intent was recorded: when the manifest changes it, the
    /// manifest wins over a count saved from an earlier `scale`.
    public var manifestInstances: Int
    /// `musterctl autoscale pause`: the autoscaler measures but does not decide, and `scale` is
    /// the operator's again.
    public var autoscalePaused: Bool

    public init(desired: Int, started: Bool = true, held: Set<Int> = [], manifestInstances: Int? = nil, autoscalePaused: Bool = false) {
        self.desired = desired
        self.started = started
        self.held = held
        self.manifestInstances = manifestInstances ?? desired
        self.autoscalePaused = autoscalePaused
    }

    private enum CodingKeys: String, CodingKey {
        case desired, started, held, manifestInstances, autoscalePaused
    }

    /// State files written before the autoscaler lack `autoscalePaused`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        desired = try container.decode(Int.self, forKey: .desired)
        started = try container.decode(Bool.self, forKey: .started)
        held = try container.decode(Set<Int>.self, forKey: .held)
        manifestInstances = try container.decode(Int.self, forKey: .manifestInstances)
        autoscalePaused = try container.decodeIfPresent(Bool.self, forKey: .autoscalePaused) ?? false
    }

    public func wants(_ index: Int) -> Bool { started && index < desired && !held.contains(index) }

    /// `start` of the whole service (nil) or of one instance; a stopped service started by one
    /// instance runs just that instance.
    public mutating func start(_ index: Int?) {
        guard let index else {
            started = true
            held = []
            return
        }
        held.remove(index)
        if !started {
            started = true
            held = Set(0..<desired).subtracting([index])
        }
    }

    /// `stop` of the whole service (nil) or of one instance.
    public mutating func stop(_ index: Int?) {
        if let index { held.insert(index) } else { started = false }
    }
}

/// One thing the runtime must do to close the gap between desired and actual.
public enum PlannedAction: Sendable, Equatable {
    case spawn(index: Int)
    /// Send the stop signal to the main process; the stop timeout is running.
    case signalStop(index: Int)
    /// The stop timeout passed: kill every process in the instance's cgroup.
    case killGroup(index: Int)
}

/// The reconcile pass as a pure function: given the records, the intent and the time, move records
/// whose time has come and say which processes to start, signal or kill.
public enum ServicePlanner {
    public struct Plan: Sendable, Equatable {
        public var actions: [PlannedAction] = []
        /// When the next pass is due even if nothing else happens.
        public var nextDeadline: ContinuousClock.Instant?
    }

    /// - Parameter gate: what the services it depends on allow (DependencyGate): while it may not
    ///   start, wanted slots wait as stopped records; when a required service is down, its
    ///   instances stop; while dependents still run, its own stops wait.
    public static func plan(records: inout [Int: InstanceRecord], intent: ServiceIntent, spec: ServiceSpec,
                            shuttingDown: Bool, gate: DependencyGate.Verdict = .open, now: ContinuousClock.Instant) -> Plan {
        var plan = Plan()
        for index in records.keys.sorted() {
            guard var record = records[index] else { continue }
            let wasKilled = record.killSent
            InstanceLifecycle.deadlinePassed(&record, now: now)
            if record.state == .stopping, record.killSent, !wasKilled { plan.actions.append(.killGroup(index: index)) }

            let wanted = !shuttingDown && !gate.mustStop && intent.wants(index)
            if !wanted, !(gate.holdsStops && record.state.hasProcess) {
                if InstanceLifecycle.stopRequested(&record, purpose: .halt, timeout: spec.stop.timeout, now: now) {
                    plan.actions.append(.signalStop(index: index))
                }
                // Slots beyond the desired count are forgotten once stopped; so is every slot when
                // the whole service is going away (shutdown, removed by reload).
                if record.state == .stopped, index >= intent.desired || shuttingDown {
                    records[index] = nil
                    continue
                }
            }
            records[index] = record
        }
        if !shuttingDown && intent.started {
            for index in 0..<intent.desired where !intent.held.contains(index) {
                let record = records[index] ?? InstanceRecord(index: index)
                records[index] = record
                let due = record.state == .stopped
                    || (record.state == .backoff && (record.deadline.map { $0 <= now } ?? true))
                if due && gate.mayStart { plan.actions.append(.spawn(index: index)) }
            }
        }
        plan.nextDeadline = records.values.compactMap(\.deadline).min()
        return plan
    }
}
