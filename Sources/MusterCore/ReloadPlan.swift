/// What a reload will do, computed before anything is touched, so `reload --dry-run` shows exactly
/// what `reload` then does (supervisord's `reread`/`update` confusion, answered).
public struct ReloadPlan: Sendable, Equatable {
    public struct Rescale: Sendable, Equatable {
        public var name: String
        public var from: Int
        public var to: Int
        public init(name: String, from: Int, to: Int) {
            self.name = name
            self.from = from
            self.to = to
        }
    }

    public var added: [String] = []
    public var removed: [String] = []
    /// The manifest changed beyond its instance count: every instance restarts.
    public var changed: [String] = []
    /// Only `instances` changed: scale without restarting the others.
    public var rescaled: [Rescale] = []
    /// The `[proxy]`, `[health]` or `[autoscale]` table changed: applied to the running instances, no restart.
    public var reconfigured: [String] = []
    public var unchanged: [String] = []

    public init(current: [ServiceSpec], next: [ServiceSpec]) {
        let old = Dictionary(current.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let new = Dictionary(next.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for name in new.keys.sorted() {
            guard let before = old[name], let after = new[name] else { added.append(name); continue }
            if before == after { unchanged.append(name); continue }
            if after.needsRestart(comparedTo: before) { changed.append(name); continue }
            if before.instances != after.instances { rescaled.append(.init(name: name, from: before.instances, to: after.instances)) }
            if before.proxy != after.proxy || before.health != after.health || before.autoscale != after.autoscale { reconfigured.append(name) }
            // What musterd does not run by ([export] image) changes nothing here.
            if rescaled.last?.name != name && reconfigured.last != name { unchanged.append(name) }
        }
        removed = old.keys.filter { new[$0] == nil }.sorted()
    }

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty && rescaled.isEmpty && reconfigured.isEmpty }
}
