import MusterAPI
import MusterCore

/// How a row is drawn: by colour where the terminal has it, and nothing else depends on it.
public enum TopTone: Equatable, Sendable {
    case normal, good, warn, bad, dim, header
}

/// One row of the table: a service, or one of its instances when the service is expanded.
public struct TopRow: Equatable, Sendable {
    public enum Subject: Equatable, Sendable {
        case service(String)
        case instance(service: String, id: String)

        public var service: String {
            switch self {
            case .service(let name), .instance(let name, _): name
            }
        }

        /// What `musterctl restart` takes for this row: web, or web:1.
        public var target: String {
            switch self {
            case .service(let name): name
            case .instance(_, let id): id
            }
        }
    }

    public var subject: Subject
    public var cells: [String]
    public var tone: TopTone
}

/// The table's columns and the rows for a snapshot: a pure function of what musterd said.
public enum TopRows {
    /// Title and width of each column; NAME takes what the others leave.
    public static let columns: [(title: String, width: Int)] = [
        ("NAME", 0), ("STATE", 8), ("READY", 7), ("LOAD/TGT", 10), ("REQ/S", 6), ("P50", 5), ("P99", 5),
        ("CONN", 4), ("CPU", 5), ("MEM", 5), ("RST", 3),
    ]

    public static func rows(_ snapshot: TopSnapshot, expanded: Set<String>, filter: String) -> [TopRow] {
        var rows: [TopRow] = []
        for service in snapshot.status.services where filter.isEmpty || service.name.lowercased().contains(filter.lowercased()) {
            rows.append(serviceRow(service, snapshot.latestSample(service.name), expanded: expanded.contains(service.name)))
            guard expanded.contains(service.name) else { continue }
            for instance in service.instances + (service.canary?.instances ?? []) {
                rows.append(instanceRow(service.name, instance))
            }
        }
        return rows
    }

    /// stopped, idle (0 wanted), up (all wanted are ready), fatal (one gave up), canary, or
    /// partial (fewer ready than wanted: starting, restarting, failing).
    public static func state(_ service: ServiceStatus) -> (String, TopTone) {
        if !service.started { return ("stopped", .dim) }
        if service.instances.contains(where: { $0.state == "fatal" }) { return ("fatal", .bad) }
        if service.canary != nil { return ("canary", .warn) }
        let ready = service.instances.filter(\.ready).count
        if service.desired == 0 && ready == 0 { return ("idle", .dim) }
        if ready >= service.desired { return ("up", .good) }
        if service.instances.contains(where: { ["backoff", "exited"].contains($0.state) }) { return ("failing", .bad) }
        return ("partial", .warn)
    }

    static func serviceRow(_ service: ServiceStatus, _ sample: HistorySample?, expanded: Bool) -> TopRow {
        let (state, tone) = state(service)
        let ready = service.instances.filter(\.ready).count
        let load = service.autoscale.map { "\($0.load.map(number) ?? "-")/\(number($0.target))" } ?? "-"
        let rps = service.proxy?.rps ?? sample?.rps
        let connections = service.proxy?.openConnections ?? service.instances.compactMap(\.connections).reduce(0, +)
        // The sampler's CPU (its own one-second window), so two viewers do not skew each other's.
        let cpu = sample?.cpuPercent ?? service.instances.compactMap(\.cpuPercent).reduce(0, +)
        let memory = sample.map { UInt64($0.memoryBytes) } ?? service.instances.compactMap(\.memoryBytes).reduce(0, +)
        let marker = service.instances.isEmpty ? "  " : (expanded ? "- " : "+ ")
        return TopRow(subject: .service(service.name), cells: [
            marker + service.name, state, "\(ready)/\(service.desired)", load, rps.map(number) ?? "-",
            sample?.p50Seconds.map(latency) ?? "-", sample?.p99Seconds.map(latency) ?? "-",
            String(connections), percent(cpu), memory > 0 ? ByteSize.format(memory) : "-",
            String(service.instances.map(\.restarts).reduce(0, +)),
        ], tone: tone)
    }

    /// An instance's row: PID where the load is, uptime across P50 and P99, health where READY is
    /// ("ejected" while the proxy's outlier detection keeps it out of the rotation, as `status` says).
    static func instanceRow(_ service: String, _ instance: InstanceStatus) -> TopRow {
        let ejected = instance.ejectedUntil != nil
        let tone: TopTone = instance.state == "fatal" || instance.state == "backoff" ? .bad : (instance.ready && !ejected ? .normal : .warn)
        let ready = ejected ? "ejected" : instance.ready ? "yes" : (instance.health ?? "no")
        return TopRow(subject: .instance(service: service, id: instance.id), cells: [
            "    " + instance.id, instance.state, ready, instance.pid.map { "pid \($0)" } ?? "-", instance.rps.map(number) ?? "-",
            instance.uptimeSeconds.map { "up " + uptime($0) } ?? "-", "",
            instance.connections.map(String.init) ?? "-", instance.cpuPercent.map(percent) ?? "-",
            instance.memoryBytes.map(ByteSize.format) ?? "-", String(instance.restarts),
        ], tone: tone)
    }

    /// 0.25 → "250ms", 0.0025 → "2.5ms", 2 → "2s".
    public static func latency(_ seconds: Double) -> String {
        seconds >= 1 ? number(seconds) + "s" : number(seconds * 1000) + "ms"
    }

    /// One decimal below 100, none from there on: 12.5, 100, 1234.
    public static func number(_ value: Double) -> String {
        if value >= 100 || value == value.rounded() { return String(Int(value.rounded())) }
        return String((value * 10).rounded() / 10)
    }

    static func percent(_ value: Double) -> String { number(value) + "%" }

    static func uptime(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }
}
