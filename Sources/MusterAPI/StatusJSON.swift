/// `GET /v1/status` as JSON, written directly. With 200 instances Foundation's JSONEncoder took
/// ~3 ms of the ~7 ms a status request costs the daemon (generic Codable boxing per field); this
/// writes the same document (same keys, order and nulls; see `InstanceStatus.encode(to:)`) in a
/// tenth of that. Tests decode it with JSONDecoder and compare.
extension StatusResponse {
    public func jsonBytes() -> [UInt8] {
        var out = JSONWriter()
        out.raw("{\"services\":[")
        for (i, service) in services.enumerated() {
            if i > 0 { out.raw(",") }
            out.raw("{\"name\":"); out.string(service.name)
            out.raw(",\"desired\":"); out.integer(service.desired)
            out.raw(",\"started\":"); out.raw(service.started ? "true" : "false")
            out.raw(",\"instances\":[")
            Self.write(service.instances, to: &out)
            out.raw("],\"source\":"); out.string(service.source)
            out.raw(",\"proxy\":")
            if let proxy = service.proxy {
                out.raw("{\"listen\":[")
                for (k, address) in proxy.listen.enumerated() {
                    if k > 0 { out.raw(",") }
                    out.string(address)
                }
                out.raw("],\"protocol\":"); out.string(proxy.protocol)
                out.raw(",\"open_connections\":"); out.integer(proxy.openConnections)
                out.raw(",\"queued\":"); out.integer(proxy.queued)
                out.raw(",\"requests_total\":"); out.integer(proxy.requestsTotal)
                out.raw(",\"rps\":"); out.number(proxy.rps)
                out.raw(",\"error\":"); out.string(proxy.error)
                out.raw(",\"balance\":"); out.string(proxy.balance)
                out.raw(",\"ejected\":"); out.integer(proxy.ejected)
                out.raw("}")
            } else {
                out.raw("null")
            }
            out.raw(",\"autoscale\":")
            if let scaler = service.autoscale {
                out.raw("{\"metric\":"); out.string(scaler.metric)
                out.raw(",\"target\":"); out.number(scaler.target)
                out.raw(",\"min\":"); out.integer(scaler.min)
                out.raw(",\"max\":"); out.integer(scaler.max)
                out.raw(",\"desired\":"); out.integer(scaler.desired)
                out.raw(",\"current\":"); out.integer(scaler.current)
                out.raw(",\"load\":"); out.number(scaler.load)
                out.raw(",\"paused\":"); out.raw(scaler.paused ? "true" : "false")
                out.raw(",\"panicking\":"); out.raw(scaler.panicking ? "true" : "false")
                out.raw("}")
            } else {
                out.raw("null")
            }
            let lists: [(StaticString, [String])] = [(",\"requires\":[", service.requires), (",\"wants\":[", service.wants),
                                                     (",\"waiting_for\":[", service.waitingFor)]
            for (key, names) in lists {
                out.raw(key)
                for (k, name) in names.enumerated() {
                    if k > 0 { out.raw(",") }
                    out.string(name)
                }
                out.raw("]")
            }
            // Written only when present, as Codable's encodeIfPresent would.
            if let revision = service.revision { out.raw(",\"revision\":"); out.integer(revision) }
            if let canary = service.canary {
                out.raw(",\"canary\":{\"revision\":"); out.integer(canary.revision)
                out.raw(",\"phase\":"); out.string(canary.phase)
                out.raw(",\"weight\":"); out.number(canary.weight)
                out.raw(",\"duration_seconds\":"); out.number(canary.durationSeconds)
                if let elapsed = canary.elapsedSeconds { out.raw(",\"elapsed_seconds\":"); out.number(elapsed) }
                out.raw(",\"requests\":"); out.integer(canary.requests)
                out.raw(",\"error_rate\":"); out.number(canary.errorRate)
                if let p99 = canary.p99Seconds, p99.isFinite { out.raw(",\"p99_seconds\":"); out.number(p99) }
                out.raw(",\"instances\":[")
                Self.write(canary.instances, to: &out)
                out.raw("]}")
            }
            out.raw("}")
        }
        out.raw("]}\n")
        return out.bytes
    }

    private static func write(_ instances: [InstanceStatus], to out: inout JSONWriter) {
        for (j, row) in instances.enumerated() {
            if j > 0 { out.raw(",") }
            out.raw("{\"id\":"); out.string(row.id)
            out.raw(",\"index\":"); out.integer(row.index)
            out.raw(",\"state\":"); out.string(row.state)
            out.raw(",\"pid\":"); out.integer(row.pid.map(Int.init))
            out.raw(",\"port\":"); out.integer(row.port)
            out.raw(",\"restarts\":"); out.integer(row.restarts)
            out.raw(",\"uptime_seconds\":"); out.number(row.uptimeSeconds)
            out.raw(",\"cgroup\":"); out.string(row.cgroup)
            out.raw(",\"reason\":"); out.string(row.reason)
            out.raw(",\"cpu_seconds\":"); out.number(row.cpuSeconds)
            out.raw(",\"cpu_percent\":"); out.number(row.cpuPercent)
            out.raw(",\"memory_bytes\":"); out.unsigned(row.memoryBytes)
            out.raw(",\"user\":"); out.string(row.user)
            out.raw(",\"ready\":"); out.raw(row.ready ? "true" : "false")
            out.raw(",\"health\":"); out.string(row.health)
            out.raw(",\"connections\":"); out.integer(row.connections)
            out.raw(",\"rps\":"); out.number(row.rps)
            out.raw(",\"ejected_until\":"); out.number(row.ejectedUntil)
            out.raw(",\"container\":")
            if let container = row.container {
                out.raw("{\"image\":"); out.string(container.image)
                out.raw(",\"rootfs\":"); out.string(container.rootfs)
                out.raw("}")
            } else {
                out.raw("null")
            }
            out.raw("}")
        }
    }
}

/// Appends JSON tokens to a byte buffer.
struct JSONWriter {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(64 * 1024) }

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func integer(_ value: Int?) {
        guard let value else { return raw("null") }
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func unsigned(_ value: UInt64?) {
        guard let value else { return raw("null") }
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Finite doubles in Swift's shortest round-trip form, which is valid JSON; others are null.
    mutating func number(_ value: Double?) {
        guard let value, value.isFinite else { return raw("null") }
        bytes.append(contentsOf: value.description.utf8)
    }

    mutating func string(_ value: String?) {
        guard let value else { return raw("null") }
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
        switch byte {
        case UInt8(ascii: "\""): raw("\\\"")
        case UInt8(ascii: "\\"): raw("\\\\")
        case UInt8(ascii: "\n"): raw("\\n")
        case UInt8(ascii: "\r"): raw("\\r")
        case UInt8(ascii: "\t"): raw("\\t")
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]])
        default: bytes.append(byte)
        }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
