/// Start and stop order between services, from `requires` and `wants`, as a pure function of what
/// every service is doing now. The reconcile loop asks it before planning each service:
///
/// - A service starts new instances only once every service it `requires` is ready (at least one
///   instance in the rotation, or ready by its check or notify), and every service it `wants` is
///   ready, given up, or not there.
/// - When a required service is down (stopped, scaled to zero, removed, or every instance it wants
///   has given up: fatal or exited for good), the dependent's instances stop, and start again once
///   it is back and ready. Down is transitive: a service stopped for its own requirement is down
///   to those that require it.
/// - Stopping is the reverse: while a service's instances are all going away (shutdown, removal,
///   `stop`), they wait until every dependent that is going away too has no process left.
///
/// A crash of a required service (backoff, then a restart) is not down: running dependents keep
/// running, as they would across any restart of their peer; only their new starts wait.
public enum DependencyGate {
    /// One service as the gate sees it.
    public struct Service: Sendable, Equatable {
        public var name: String
        public var requires: [String]
        public var wants: [String]
        /// At least one instance ready.
        public var ready: Bool
        /// Will not come back on its own: stopped, scaled to zero, removed, every wanted slot fatal
        /// or exited for good.
        public var down: Bool
        /// Some instance already failed (backoff, fatal, a restart): a service that `wants` it
        /// stops waiting, as systemd's Wants= does once the start job has failed.
        public var failed: Bool
        /// Some process (an instance or one retiring after a rolling restart) is alive.
        public var hasProcesses: Bool
        /// All its instances are to stop: shutdown, removal, or `stop SERVICE`.
        public var haltingAll: Bool

        public init(name: String, requires: [String] = [], wants: [String] = [], ready: Bool = false, down: Bool = false,
                    failed: Bool = false, hasProcesses: Bool = false, haltingAll: Bool = false) {
            self.name = name
            self.requires = requires
            self.wants = wants
            self.ready = ready
            self.down = down
            self.failed = failed
            self.hasProcesses = hasProcesses
            self.haltingAll = haltingAll
        }
    }

    public struct Verdict: Sendable, Equatable {
        /// Not ready yet, each with why: new instances wait for them.
        public var waitingFor: [String] = []
        /// Required services that are down: the instances stop and wait for them to come back.
        public var requiredDown: [String] = []
        /// Dependents still running while both are going away: this service's instances wait.
        public var heldBy: [String] = []

        public init(waitingFor: [String] = [], requiredDown: [String] = [], heldBy: [String] = []) {
            self.waitingFor = waitingFor
            self.requiredDown = requiredDown
            self.heldBy = heldBy
        }

        public static let open = Verdict()
        public var mayStart: Bool { waitingFor.isEmpty && requiredDown.isEmpty }
        public var mustStop: Bool { !requiredDown.isEmpty }
        public var holdsStops: Bool { !heldBy.isEmpty }
    }

    public static func verdicts(_ services: [Service]) -> [String: Verdict] {
        let byName = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var effectivelyDown: [String: Bool] = [:]
        // Down through requirements, memoized; a cycle (refused by validation, never expected
        // here) counts as not down rather than recursing forever.
        func isDown(_ name: String, visiting: Set<String> = []) -> Bool {
            if let known = effectivelyDown[name] { return known }
            guard let service = byName[name], !visiting.contains(name) else { return false }
            let down = service.down || service.requires.contains { isDown($0, visiting: visiting.union([name])) }
            effectivelyDown[name] = down
            return down
        }
        var verdicts: [String: Verdict] = [:]
        for service in services {
            var verdict = Verdict()
            for name in service.requires {
                if isDown(name) { verdict.requiredDown.append(name) }
                else if byName[name]?.ready != true { verdict.waitingFor.append(name) }
            }
            for name in service.wants where !service.requires.contains(name) {
                guard let wanted = byName[name], !wanted.ready, !wanted.failed, !isDown(name) else { continue }
                verdict.waitingFor.append(name)
            }
            verdicts[service.name] = verdict
        }
        // Reverse order: a service going away waits for dependents going away with it.
        for service in services where service.haltingAll {
            let holders = services.filter { dependent in
                dependent.name != service.name && dependent.hasProcesses
                    && (dependent.requires.contains(service.name) || dependent.wants.contains(service.name))
                    && (dependent.haltingAll || verdicts[dependent.name]?.mustStop == true)
            }
            verdicts[service.name, default: Verdict()].heldBy = holders.map(\.name).sorted()
        }
        return verdicts
    }
}
