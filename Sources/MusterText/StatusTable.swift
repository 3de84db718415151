import MusterAPI
import MusterCore
import MusterHost

/// `NAME  STATE  READY  PID  PORT  UPTIME  RESTARTS  CPU  MEM  CONNS  RPS  REASON`, one row per
/// instance (REASON ends in "as root" for a process running as root), then one line per proxy.
/// READY says `ejected` while the proxy holds a ready instance out for failing.
/// musterd renders it (`GET /v1/status` with `Accept: text/plain`): at 2,000 instances decoding the
/// 700 KB JSON document in the CLI took longer than the daemon took to build it.
public enum StatusTable {
    public static func render(_ status: StatusResponse, now: Double = WallClock.now()) -> String {
        var rows: [[String]] = [["NAME", "STATE", "READY", "PID", "PORT", "UPTIME", "RESTARTS", "CPU", "MEM", "CONNS", "RPS", "REASON"]]
        for service in status.services {
            if service.instances.isEmpty {
                rows.append([service.name, service.started ? "-" : "stopped", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                             "no instances (desired \(service.desired))"])
            }
            for instance in service.instances {
                var reason = instance.reason ?? ""
                if let health = instance.health, !instance.ready, instance.state == "running" || instance.state == "starting" {
                    reason = reason.isEmpty ? "health: \(health)" : reason + "; health: \(health)"
                }
                if let until = instance.ejectedUntil {
                    let ejected = "ejected by the proxy for failing, back in \(DurationText.format(.seconds(max(0, (until - now).rounded(.up)))))"
                    reason = reason.isEmpty ? ejected : reason + "; " + ejected
                }
                // Said out loud, as `musterd --check` warns: root is rarely what a service needs.
                if instance.user == "root" && instance.pid != nil {
                    reason = reason.isEmpty ? "as root" : reason + "; as root"
                }
                rows.append([
                    instance.id, instance.state.uppercased(), instance.ejectedUntil != nil ? "ejected" : instance.ready ? "yes" : "no",
                    instance.pid.map(String.init) ?? "-", instance.port.map(String.init) ?? "-",
                    instance.uptimeSeconds.map(uptime) ?? "-", String(instance.restarts),
                    instance.cpuPercent.map { String(format1($0)) + "%" } ?? "-",
                    instance.memoryBytes.map(ByteSize.format) ?? "-",
                    instance.connections.map(String.init) ?? "-",
                    instance.rps.map(format1) ?? "-",
                    reason,
                ])
            }
        }
        let widths = (0..<rows[0].count - 1).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var lines = rows.map { row in
            let padded = zip(row.dropLast(), widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }
            return (padded + [row.last!]).joined(separator: "  ").trimmingTrailingSpaces()
        }
        for service in status.services {
            guard let proxy = service.proxy else { continue }
            var line = "\(service.name): \(proxy.protocol) proxy on \(proxy.listen.joined(separator: ", ")): "
                + "\(proxy.openConnections) open connection\(proxy.openConnections == 1 ? "" : "s"), \(format1(proxy.rps)) req/s, \(proxy.requestsTotal) total"
            if proxy.balance != "round-robin" { line += ", \(proxy.balance)" }
            if proxy.ejected > 0 { line += ", \(proxy.ejected) ejected for failing" }
            if proxy.queued > 0 { line += ", \(proxy.queued) waiting for a ready instance" }
            if let error = proxy.error { line += "; NOT LISTENING: \(error)" }
            lines.append(line)
        }
        for service in status.services {
            // Which image (or root folder) its containers run; during a rollout, more than one.
            var sources: [String: [String]] = [:]
            var order: [String] = []
            for instance in service.instances {
                guard let container = instance.container else { continue }
                let source = container.image.map { "image " + Self.shortDigest($0) } ?? "root folder \(container.rootfs ?? "?")"
                if sources[source] == nil { order.append(source) }
                sources[source, default: []].append(instance.id)
            }
            guard !order.isEmpty else { continue }
            let parts = order.map { order.count == 1 ? $0 : "\($0) (\(sources[$0]!.joined(separator: ", ")))" }
            lines.append("\(service.name): containers of " + parts.joined(separator: "; "))
        }
        for service in status.services where !service.requires.isEmpty || !service.wants.isEmpty {
            var parts: [String] = []
            if !service.requires.isEmpty { parts.append("requires \(service.requires.joined(separator: ", "))") }
            if !service.wants.isEmpty { parts.append("wants \(service.wants.joined(separator: ", "))") }
            var line = "\(service.name): " + parts.joined(separator: "; ")
            if !service.waitingFor.isEmpty { line += "; waiting for \(service.waitingFor.joined(separator: ", "))" }
            lines.append(line)
        }
        for service in status.services {
            guard let scaler = service.autoscale else { continue }
            let load = scaler.load.map { scaler.metric == "memory" ? ByteSize.format(UInt64(max(0, $0))) : format1($0) } ?? "-"
            var line = "\(service.name): autoscaled on \(scaler.metric) \(load) (target \(scaler.metric == "memory" ? ByteSize.format(UInt64(scaler.target)) : format1(scaler.target)) per instance), "
                + "\(scaler.current) serving, \(scaler.desired) desired, \(scaler.min)-\(scaler.max)"
            if scaler.panicking { line += ", panic mode" }
            if scaler.paused { line += ", paused" }
            lines.append(line)
        }
        for service in status.services {
            guard let canary = service.canary else { continue }
            let pids = canary.instances.map { "\($0.id) \($0.state)" + ($0.pid.map { " pid \($0)" } ?? "") }
            lines.append("\(service.name): " + CanaryText.progress(canary)
                         + " (running revision \(service.revision.map(String.init) ?? "-"); canary instances: \(pids.isEmpty ? "none yet" : pids.joined(separator: ", ")))")
        }
        return lines.joined(separator: "\n")
    }

    /// supervisorctl's H:MM:SS.
    /// `sha256:a0c5b208c20f`: twelve hex digits, as docker and podman show image ids.
    public static func shortDigest(_ digest: String) -> String {
        guard digest.hasPrefix("sha256:") else { return digest }
        return String(digest.prefix(7 + 12))
    }

    public static func uptime(_ seconds: Double) -> String {
        let total = Int(seconds)
        let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60)
        return "\(hours):\(minutes < 10 ? "0" : "")\(minutes):\(secs < 10 ? "0" : "")\(secs)"
    }

    public static func format1(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return String(rounded)
    }
}

extension String {
    public func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
