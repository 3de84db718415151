import MusterAPI
import MusterCore
import MusterProxy

/// The charts' data: once a second every service's rate, p99, instance counts, CPU and memory
/// go into its `ServiceTimeline`, and each scaling decision is marked. Bounded: 900 samples and
/// 100 marks a service (docs/operations.md has the bytes).
extension Supervisor {
    static let timelineInterval: Duration = .seconds(1)

    func runTimelineSampler() async {
        while !Task.isCancelled && !shuttingDown {
            try? await Task.sleep(for: Self.timelineInterval)
            recordTimelines(now: .now)
        }
    }

    /// Services whose cgroup folder is read in one tick, at most. Beyond that many services the
    /// CPU and memory charts are refreshed in turn (each every ⌈services/48⌉ seconds, the value
    /// held between), so the sampler's system calls stay bounded however many services run.
    static let usageReadsPerTick = 48

    func recordTimelines(now: ContinuousClock.Instant) {
        let time = WallClock.now()
        var names = services.compactMap { $0.value.canaryOf == nil ? $0.key : nil }
        var due: Set<String>?   // nil: every service
        if names.count > Self.usageReadsPerTick {
            names.sort()
            due = Set((0..<Self.usageReadsPerTick).map { names[(timelineReadCursor + $0) % names.count] })
            timelineReadCursor = (timelineReadCursor + Self.usageReadsPerTick) % names.count
        }
        for name in names {
            guard let entry = services[name] else { continue }
            timelines[name, default: ServiceTimeline()].record(timelineReading(name, entry, readUsage: due?.contains(name) ?? true, now: now),
                                                               at: time, bounds: LatencyHistogram.bounds)
        }
        // A removed service's history goes with it.
        for name in timelines.keys where services[name] == nil { timelines[name] = nil }
        for name in timelineUsage.keys where services[name] == nil { timelineUsage[name] = nil }
    }

    private func timelineReading(_ name: String, _ entry: ServiceEntry, readUsage: Bool, now: ContinuousClock.Instant) -> ServiceTimeline.Reading {
        // Only a service behind a proxy has backends (and their counters) to add up.
        let backends = entry.spec.proxy == nil ? [] : entry.live.values.compactMap(\.backend) + entry.retiring.compactMap(\.live.backend)
        var latency = Array(repeating: 0, count: LatencyHistogram.bounds.count + 1)
        for backend in backends {
            for (i, bucket) in backend.counters.latency.buckets.enumerated() { latency[i] += bucket.load(ordering: .relaxed) }
        }
        // Between reads the chart holds the service's previous value.
        let previous = timelines[name]?.samples.last
        let (cpu, memory) = readUsage ? timelineCPUAndMemory(name, entry, now: now) : (previous?.cpuPercent ?? 0, previous?.memoryBytes ?? 0)
        let requests = backends.reduce(0) { $0 + $1.counters.requestsTotal } + (endedRequests[name] ?? 0)
        return ServiceTimeline.Reading(
            requestsTotal: requests, latencyCounts: latency,
            ready: entry.readyCount,
            desired: entry.removing || !entry.intent.started ? 0 : entry.intent.desired,
            cpuPercent: cpu, memoryBytes: memory)
    }

    /// CPU % and memory of the whole service from its cgroup folder: one read a service a second,
    /// where reading every instance's files was 95 % of an idle musterd's CPU at 2,000 instances
    /// (perf, 2026-12-07: 2.1 % of a core). Without a service-wide memory file (hybrid hosts) the
    /// instances' own readings are summed, once every `instanceMemoryInterval`.
    private func timelineCPUAndMemory(_ name: String, _ entry: ServiceEntry, now: ContinuousClock.Instant) -> (Double, Int) {
        if timelineUsage[name] == nil, !entry.live.isEmpty, let reader = deps.cgroups.serviceUsageReader(name) {
            _ = reader.read(now: now)   // the baseline: the first rate is from here, not from zero
            timelineUsage[name] = TimelineUsage(reader: reader)
        }
        guard var usage = timelineUsage[name] else { return instanceSums(entry, now: now) }
        let reading = usage.reader.read(now: now)
        // The folder went away (service removed and added again): open the new one next time.
        guard reading.cpuSeconds != nil else {
            timelineUsage[name] = nil
            return instanceSums(entry, now: now)
        }
        var memory = Int(reading.memoryBytes ?? 0)
        if !usage.reader.readsMemory {
            if usage.instanceMemory == nil || now - usage.instanceMemory!.at >= TimelineUsage.instanceMemoryInterval {
                usage.instanceMemory = (entry.live.values.reduce(0) { $0 + Int($1.usage?.readMemory() ?? 0) }, now)
                timelineUsage[name] = usage
            }
            memory = usage.instanceMemory!.bytes
        }
        return (reading.cpuPercent ?? 0, memory)
    }

    /// Without cgroups (or before the service's folder exists): each instance's own reading.
    private func instanceSums(_ entry: ServiceEntry, now: ContinuousClock.Instant) -> (Double, Int) {
        var cpu = 0.0, memory = 0
        for live in entry.live.values {
            let usage = live.usage?.read(now: now)
            cpu += usage?.cpuPercent ?? 0
            memory += Int(usage?.memoryBytes ?? 0)
        }
        return (cpu, memory)
    }

    func markScaling(_ name: String, from: Int, to: Int, reason: String) {
        timelines[name, default: ServiceTimeline()].mark(.init(time: WallClock.now(), from: from, to: to, reason: reason))
    }

    /// `GET /v1/history[?service=NAME][&since=10s]`: `since` (Unix time) keeps only what is newer,
    /// so a view refreshed every second (`musterctl top`, the dashboard) reads a few samples, not 900.
    public func metricsHistory(services names: [String], since: Double? = nil) throws(ControlError) -> MetricsHistoryResponse {
        for name in names where services[name] == nil || services[name]!.canaryOf != nil { throw notFound(name) }
        let chosen = services.keys.sorted().filter { (names.isEmpty || names.contains($0)) && services[$0]!.canaryOf == nil }
        return MetricsHistoryResponse(
            intervalSeconds: Self.timelineInterval.seconds, capacity: ServiceTimeline.sampleCapacity,
            services: chosen.map { name in
                let timeline = timelines[name] ?? ServiceTimeline()
                return ServiceMetricsHistory(
                    name: name,
                    samples: timeline.samples.elements.filter { $0.time > since ?? -.infinity }.map {
                        HistorySample(time: $0.time, rps: $0.rps, p50Seconds: $0.p50Seconds, p99Seconds: $0.p99Seconds, ready: $0.ready, desired: $0.desired,
                                      cpuPercent: $0.cpuPercent, memoryBytes: $0.memoryBytes)
                    },
                    decisions: timeline.marks.elements.filter { $0.time > since ?? -.infinity }.map { AutoscaleReport.Decision(time: $0.time, from: $0.from, to: $0.to, reason: $0.reason) })
            })
    }
}

/// A service's cgroup folder held open for the charts' sampler.
struct TimelineUsage {
    /// How stale the memory chart may be where it is the sum of every instance's reading.
    static let instanceMemoryInterval: Duration = .seconds(30)

    let reader: UsageReader
    /// Where the folder has no memory file (`reader.readsMemory` false): the instances' sum.
    var instanceMemory: (bytes: Int, at: ContinuousClock.Instant)?
}
