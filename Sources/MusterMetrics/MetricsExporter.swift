import CoreMetrics
import MusterCore
import MusterProxy
import MusterRuntime
import Prometheus
import Synchronization

/// Renders `/metrics` in the Prometheus text format.
///
/// The data plane counts with relaxed atomics (no metrics call on the hot path); at each scrape
/// the counters are carried into swift-metrics handles backed by a swift-prometheus registry: a
/// counter advances by what its atomic grew since the last scrape, so totals never go backwards
/// when an instance restarts and its counters begin again at zero. The latency histogram is
/// already bucketed by the proxy and is written out directly, in the same format.
public final class MetricsExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let state = Mutex(State())

    private struct State {
        /// Raw counter values at the last scrape, per process (a backend) and counter.
        var lastRaw: [ObjectIdentifier: [Int]] = [:]
        /// Latency totals per `service/index` across the slot's processes.
        var latency: [String: (buckets: [Int], sumNanos: Int)] = [:]
        /// Series shown at the last scrape, so gauges of vanished instances can be removed.
        var gauges: [String: CoreMetrics.Gauge] = [:]
        /// Canary promotions and rollbacks per service at the last scrape.
        var canaries: [String: (promotions: Int, rollbacks: Int)] = [:]
    }

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
    }

    public func render(_ snapshot: MetricsSnapshot) -> [UInt8] {
        state.withLock { state in
            var seenBackends: Set<ObjectIdentifier> = []
            var seenGauges: Set<String> = []
            func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
                let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
                seenGauges.insert(key)
                let handle = state.gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
                state.gauges[key] = handle
                handle.record(value)
            }
            func count(_ name: String, _ labels: [(String, String)], by delta: Int) {
                // Created even at zero, so a series exists from the first scrape on.
                let counter = CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
                if delta > 0 { counter.increment(by: delta) }
            }

            for service in snapshot.services {
                let name = service.name
                gauge("muster_service_desired_instances", [("service", name)], Double(service.desired))
                if !name.contains("@") {
                    let last = state.canaries[name] ?? (0, 0)
                    count("muster_canary_promotions_total", [("service", name)], by: service.canaries.promotions - last.promotions)
                    count("muster_canary_rollbacks_total", [("service", name)], by: service.canaries.rollbacks - last.rollbacks)
                    state.canaries[name] = (service.canaries.promotions, service.canaries.rollbacks)
                }
                if let scaler = service.autoscale {
                    let labels = [("service", name), ("metric", scaler.metric)]
                    gauge("muster_autoscale_desired_instances", [("service", name)], Double(scaler.desired))
                    gauge("muster_autoscale_current_instances", [("service", name)], Double(scaler.current))
                    gauge("muster_autoscale_load", labels, scaler.load ?? 0)
                    gauge("muster_autoscale_target", labels, scaler.target)
                    gauge("muster_autoscale_panic", [("service", name)], scaler.panicking ? 1 : 0)
                    gauge("muster_autoscale_paused", [("service", name)], scaler.paused ? 1 : 0)
                }
                if let proxy = service.proxy {
                    gauge("muster_proxy_open_connections", [("service", name)], Double(proxy.openConnections.load(ordering: .relaxed)))
                    gauge("muster_proxy_queued_requests", [("service", name)], Double(service.queued))
                    gauge("muster_proxy_ejected_instances", [("service", name)], Double(service.ejected))
                    for (metric, atomic) in [
                        ("muster_proxy_accepted_connections_total", proxy.acceptedConnections),
                        ("muster_proxy_rejected_connections_total", proxy.rejectedConnections),
                        ("muster_proxy_queue_timeouts_total", proxy.queueTimeouts),
                        ("muster_proxy_bad_requests_total", proxy.badRequests),
                        ("muster_proxy_failed_requests_total", proxy.failedRequests),
                    ] {
                        let key = ObjectIdentifier(atomic)
                        let raw = atomic.load(ordering: .relaxed)
                        count(metric, [("service", name)], by: raw - (state.lastRaw[key]?.first ?? 0))
                        state.lastRaw[key] = [raw]
                        seenBackends.insert(key)
                    }
                }
                for instance in service.instances {
                    let labels = [("service", name), ("instance", String(instance.index))]
                    gauge("muster_instance_up", labels, instance.state.hasProcess ? 1 : 0)
                    gauge("muster_instance_ready", labels, instance.ready ? 1 : 0)
                    gauge("muster_instance_restarts", labels, Double(instance.restarts))
                    if let cpu = instance.cpuSeconds { gauge("muster_instance_cpu_seconds", labels, cpu) }
                    if let memory = instance.memoryBytes { gauge("muster_instance_memory_bytes", labels, Double(memory)) }
                    guard service.proxy != nil else { continue }
                    var inFlight = 0
                    var deltas = [Int](repeating: 0, count: 11)
                    var latency = state.latency["\(name)/\(instance.index)"] ?? (Array(repeating: 0, count: LatencyHistogram.bounds.count + 1), 0)
                    for backend in instance.backends {
                        let key = ObjectIdentifier(backend)
                        seenBackends.insert(key)
                        let counters = backend.counters
                        inFlight += counters.inFlight.load(ordering: .relaxed)
                        var raw = counters.responses.map { $0.load(ordering: .relaxed) }
                        raw += [counters.bytesToInstance.load(ordering: .relaxed), counters.bytesFromInstance.load(ordering: .relaxed),
                                counters.connectFailures.load(ordering: .relaxed), counters.ejections.load(ordering: .relaxed)]
                        raw.append(counters.latency.sumNanos.load(ordering: .relaxed))
                        let bucketsNow = counters.latency.buckets.map { $0.load(ordering: .relaxed) }
                        let last = state.lastRaw[key] ?? Array(repeating: 0, count: raw.count + bucketsNow.count)
                        for i in 0..<10 { deltas[i] += raw[i] - last[i] }
                        latency.sumNanos += raw[10] - last[10]
                        for (b, value) in bucketsNow.enumerated() { latency.buckets[b] += value - last[11 + b] }
                        state.lastRaw[key] = raw + bucketsNow
                    }
                    state.latency["\(name)/\(instance.index)"] = latency
                    gauge("muster_proxy_in_flight", labels, Double(inFlight))
                    for (slot, code) in ["none", "1xx", "2xx", "3xx", "4xx", "5xx"].enumerated() {
                        count("muster_proxy_requests_total", labels + [("code", code)], by: deltas[slot])
                    }
                    count("muster_proxy_bytes_total", labels + [("direction", "to_instance")], by: deltas[6])
                    count("muster_proxy_bytes_total", labels + [("direction", "from_instance")], by: deltas[7])
                    count("muster_proxy_connect_failures_total", labels, by: deltas[8])
                    count("muster_proxy_ejections_total", labels, by: deltas[9])
                }
            }
            state.lastRaw = state.lastRaw.filter { seenBackends.contains($0.key) }
            for (key, handle) in state.gauges where !seenGauges.contains(key) {
                handle.destroy()
                state.gauges[key] = nil
            }
            var out = registry.emitToBuffer()
            Self.writeHistograms(state.latency, into: &out)
            return out
        }
    }

    /// `muster_proxy_response_latency_seconds`: request sent (or connect started) to first
    /// response byte, per instance.
    private static func writeHistograms(_ latency: [String: (buckets: [Int], sumNanos: Int)], into out: inout [UInt8]) {
        guard !latency.isEmpty else { return }
        var text = "# TYPE muster_proxy_response_latency_seconds histogram\n"
        for key in latency.keys.sorted() {
            let (buckets, sumNanos) = latency[key]!
            let parts = key.split(separator: "/", maxSplits: 1)
            let labels = "service=\"\(parts[0])\",instance=\"\(parts.count > 1 ? parts[1] : "")\""
            var cumulative = 0
            for (i, bound) in LatencyHistogram.bounds.enumerated() {
                cumulative += buckets[i]
                text += "muster_proxy_response_latency_seconds_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += buckets[LatencyHistogram.bounds.count]
            text += "muster_proxy_response_latency_seconds_bucket{\(labels),le=\"+Inf\"} \(cumulative)\n"
            text += "muster_proxy_response_latency_seconds_sum{\(labels)} \(Double(sumNanos) / 1e9)\n"
            text += "muster_proxy_response_latency_seconds_count{\(labels)} \(cumulative)\n"
        }
        out += Array(text.utf8)
    }
}
