import MusterAPI
import MusterCore
import MusterProxy

/// What `/metrics` shows, read from the supervisor in one actor turn: every service's desired
/// count, its instances' gauges, and the proxy counters (read live from their atomics).
public struct MetricsSnapshot: Sendable {
    public struct Service: Sendable {
        public var name: String
        public var desired: Int
        public var instances: [Instance]
        /// The proxy's own counters; nil without a proxy.
        public var proxy: ServiceCounters?
        public var queued: Int
        /// Instances the proxy holds out of its rotation now for failing (`eject_after`).
        public var ejected = 0
        /// The autoscaler's state; nil when the service has no `[autoscale]`.
        public var autoscale: AutoscaleSummary?
        /// Canary promotions and rollbacks since musterd started.
        public var canaries = CanaryTally()
    }

    public struct Instance: Sendable {
        public var index: Int
        public var state: InstanceState
        public var ready: Bool
        public var restarts: Int
        public var cpuSeconds: Double?
        public var memoryBytes: UInt64?
        /// Every process of the slot the proxy knows: the current one, and one being replaced.
        public var backends: [Backend]
    }

    public var services: [Service]
}

extension Supervisor {
    public func metricsSnapshot() -> MetricsSnapshot {
        let now = ContinuousClock.now
        var services: [MetricsSnapshot.Service] = []
        for name in self.services.keys.sorted() {
            guard let entry = self.services[name] else { continue }
            var instances: [MetricsSnapshot.Instance] = []
            for index in entry.records.keys.sorted() {
                let record = entry.records[index]!
                let live = entry.live[index]
                let usage = live?.usage?.read(now: now) ?? Cgroups.Usage()
                var backends = live?.backend.map { [$0] } ?? []
                backends += entry.retiring.filter { $0.record.index == index }.compactMap(\.live.backend)
                instances.append(.init(index: index, state: record.state, ready: record.ready, restarts: record.restarts,
                                       cpuSeconds: usage.cpuSeconds, memoryBytes: usage.memoryBytes, backends: backends))
            }
            let proxy = proxies[name]
            services.append(.init(name: name, desired: entry.removing ? 0 : entry.intent.desired, instances: instances,
                                  proxy: proxy?.counters, queued: proxy?.backends.queued.load(ordering: .relaxed) ?? 0,
                                  autoscale: autoscaleSummary(name, entry: entry)))
            services[services.count - 1].canaries = canaryTallies[name] ?? CanaryTally()
            services[services.count - 1].ejected = proxy?.backends.ejectedCount ?? 0
        }
        return MetricsSnapshot(services: services)
    }
}
