import MusterCore

/// Start and stop order between services (`requires`, `wants`): what each service's state means
/// to the services that depend on it, handed to the pure `DependencyGate`, whose verdicts the
/// planner obeys. The verdicts are kept so `status` can say what a service waits for and an
/// event marks each change.
extension Supervisor {
    /// Recomputes every service's verdict from the state now; true when one changed (the
    /// reconcile loop then plans once more, so a chain db → api → web moves in one turn).
    @discardableResult
    func refreshDependencyVerdicts() -> Bool {
        guard services.values.contains(where: { !$0.spec.requires.isEmpty || !$0.spec.wants.isEmpty }) else {
            if dependencyVerdicts.isEmpty { return false }
            dependencyVerdicts = [:]
            return true
        }
        let views = services.map { name, entry in dependencyView(name, entry) }
        let next = DependencyGate.verdicts(views).filter { $0.value != .open }
        guard next != dependencyVerdicts else { return false }
        for name in Set(next.keys).union(dependencyVerdicts.keys).sorted() {
            announceDependencyChange(name, from: dependencyVerdicts[name] ?? .open, to: next[name] ?? .open)
        }
        dependencyVerdicts = next
        return true
    }

    func dependencyVerdict(_ name: String) -> DependencyGate.Verdict {
        dependencyVerdicts[name] ?? .open
    }

    private func dependencyView(_ name: String, _ entry: ServiceEntry) -> DependencyGate.Service {
        let intent = entry.intent
        let wantedSlots = intent.started ? (0..<intent.desired).filter { !intent.held.contains($0) } : []
        let gaveUp = !wantedSlots.isEmpty && wantedSlots.allSatisfy { index in
            guard let state = entry.records[index]?.state else { return false }
            return state == .fatal || state == .exited
        }
        let ready = entry.records.values.contains(where: \.ready) || entry.retiring.contains { $0.record.ready }
        return DependencyGate.Service(
            name: name, requires: entry.spec.requires, wants: entry.spec.wants, ready: ready,
            down: entry.removing || wantedSlots.isEmpty || gaveUp,
            failed: entry.records.values.contains { $0.state == .backoff || $0.state == .fatal || $0.restarts > 0 },
            hasProcesses: !entry.live.isEmpty || !entry.retiring.isEmpty,
            haltingAll: entry.removing || !intent.started || (shuttingDown && !servingLastConnections))
    }

    /// Why a required service counts as down, in the words `status` and events use.
    func downReason(_ name: String) -> String {
        guard let entry = services[name] else { return "\(name) is not configured" }
        if entry.removing { return "\(name) is being removed" }
        if !entry.intent.started { return "\(name) is stopped" }
        if entry.intent.desired == 0 { return "\(name) is scaled to 0" }
        if entry.records.values.contains(where: { $0.state == .fatal }) { return "\(name) is fatal" }
        if let required = dependencyVerdict(name).requiredDown.first { return "\(name) is stopped: it requires \(required)" }
        return "\(name) has stopped"
    }

    /// "waiting for db" / "db is stopped" as a slot's reason while the gate keeps it from starting.
    func dependencyWaitReason(_ name: String) -> String? {
        let verdict = dependencyVerdict(name)
        if !verdict.requiredDown.isEmpty { return "requires " + verdict.requiredDown.map(downReason).joined(separator: "; ") }
        if !verdict.waitingFor.isEmpty { return "waiting for " + verdict.waitingFor.joined(separator: ", ") + " to be ready" }
        return nil
    }

    /// Why a slot shows as `waiting`: it is wanted and stopped, and the gate holds it back; nil
    /// when it is not waiting.
    func waitReason(_ record: InstanceRecord, of entry: ServiceEntry, _ name: String) -> String? {
        record.state == .stopped && entry.intent.wants(record.index) ? dependencyWaitReason(name) : nil
    }

    private func announceDependencyChange(_ name: String, from old: DependencyGate.Verdict, to new: DependencyGate.Verdict) {
        guard let entry = services[name] else { return }
        if new.requiredDown != old.requiredDown, !new.requiredDown.isEmpty {
            let live = entry.live.isEmpty ? "" : "stopping its instances; "
            emit("dependency-down", service: name,
                 message: "\(live)requires \(new.requiredDown.map(downReason).joined(separator: "; ")); starts again when it is back")
        } else if new.waitingFor != old.waitingFor, !new.waitingFor.isEmpty, new.requiredDown.isEmpty, entry.intent.started {
            emit("waiting", service: name, message: "waiting for \(new.waitingFor.joined(separator: ", ")) to be ready before starting")
        } else if new.mayStart, !old.mayStart, entry.intent.started, !entry.removing {
            let deps = (entry.spec.requires + entry.spec.wants).filter { services[$0] != nil }
            emit("dependencies-ready", service: name, message: "\(deps.joined(separator: ", ")) ready; starting")
        }
        if new.heldBy != old.heldBy, !new.heldBy.isEmpty {
            emit("stop-waiting", service: name, message: "stops after \(new.heldBy.joined(separator: ", ")), which depend on it")
        }
    }
}
