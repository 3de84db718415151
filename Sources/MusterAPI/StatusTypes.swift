// Control API bodies, shared by musterd (server) and musterctl (client). Field names are the JSON
// contract in docs/api/openapi.json; keys are snake_case on the wire.

public struct StatusResponse: Codable, Sendable, Equatable {
    public var services: [ServiceStatus]
    public init(services: [ServiceStatus]) { self.services = services }
}

public struct ServiceStatus: Codable, Sendable, Equatable {
    public var name: String
    public var desired: Int
    /// False after `musterctl stop SERVICE`.
    public var started: Bool
    public var instances: [InstanceStatus]
    public var source: String

    public init(name: String, desired: Int, started: Bool, instances: [InstanceStatus], source: String) {
        self.name = name
        self.desired = desired
        self.started = started
        self.instances = instances
        self.source = source
    }
}

public struct InstanceStatus: Codable, Sendable, Equatable {
    public var id: String
    public var index: Int
    public var state: String
    public var pid: Int32?
    public var port: Int?
    public var restarts: Int
    public var uptimeSeconds: Double?
    public var cgroup: String?
    public var reason: String?
    /// CPU time used since the process started.
    public var cpuSeconds: Double?
    /// Share of one core since the previous status request (or since start, the first time).
    public var cpuPercent: Double?
    public var memoryBytes: UInt64?
    public var user: String

    enum CodingKeys: String, CodingKey {
        case id, index, state, pid, port, restarts, cgroup, reason, user
        case uptimeSeconds = "uptime_seconds"
        case cpuSeconds = "cpu_seconds"
        case cpuPercent = "cpu_percent"
        case memoryBytes = "memory_bytes"
    }

    public init(id: String, index: Int, state: String, pid: Int32?, port: Int?, restarts: Int,
                uptimeSeconds: Double?, cgroup: String?, reason: String?, cpuSeconds: Double?,
                cpuPercent: Double?, memoryBytes: UInt64?, user: String) {
        self.id = id
        self.index = index
        self.state = state
        self.pid = pid
        self.port = port
        self.restarts = restarts
        self.uptimeSeconds = uptimeSeconds
        self.cgroup = cgroup
        self.reason = reason
        self.cpuSeconds = cpuSeconds
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
        self.user = user
    }

    // Optional fields are written as null rather than left out, so clients can rely on every key.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(index, forKey: .index)
        try c.encode(state, forKey: .state)
        try c.encode(pid, forKey: .pid)
        try c.encode(port, forKey: .port)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(uptimeSeconds, forKey: .uptimeSeconds)
        try c.encode(cgroup, forKey: .cgroup)
        try c.encode(reason, forKey: .reason)
        try c.encode(cpuSeconds, forKey: .cpuSeconds)
        try c.encode(cpuPercent, forKey: .cpuPercent)
        try c.encode(memoryBytes, forKey: .memoryBytes)
        try c.encode(user, forKey: .user)
    }
}
