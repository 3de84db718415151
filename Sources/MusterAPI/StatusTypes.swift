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
    /// The service's proxy listener; nil when it has no `[proxy]`.
    public var proxy: ProxyStatus?
    /// The autoscaler's state; nil when the service has no `[autoscale]`.
    public var autoscale: AutoscaleSummary?
    /// The revision the service's own instances run; nil before any is recorded.
    public var revision: Int?
    /// A canary being judged or promoted; nil when there is none.
    public var canary: CanaryStatus?
    /// Services it `requires` and `wants` (manifest order).
    public var requires: [String] = []
    public var wants: [String] = []
    /// Services it waits for before its instances may run: a required one not ready yet or down,
    /// a wanted one still starting. Empty when nothing holds it back.
    public var waitingFor: [String] = []

    private enum CodingKeys: String, CodingKey {
        case name, desired, started, instances, source, proxy, autoscale, requires, wants, revision, canary
        case waitingFor = "waiting_for"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        desired = try c.decode(Int.self, forKey: .desired)
        started = try c.decode(Bool.self, forKey: .started)
        instances = try c.decode([InstanceStatus].self, forKey: .instances)
        source = try c.decode(String.self, forKey: .source)
        proxy = try c.decodeIfPresent(ProxyStatus.self, forKey: .proxy)
        autoscale = try c.decodeIfPresent(AutoscaleSummary.self, forKey: .autoscale)
        // A daemon from before dependencies leaves these out.
        requires = try c.decodeIfPresent([String].self, forKey: .requires) ?? []
        wants = try c.decodeIfPresent([String].self, forKey: .wants) ?? []
        waitingFor = try c.decodeIfPresent([String].self, forKey: .waitingFor) ?? []
        revision = try c.decodeIfPresent(Int.self, forKey: .revision)
        canary = try c.decodeIfPresent(CanaryStatus.self, forKey: .canary)
    }

    public init(name: String, desired: Int, started: Bool, instances: [InstanceStatus], source: String, proxy: ProxyStatus? = nil,
                autoscale: AutoscaleSummary? = nil) {
        self.name = name
        self.autoscale = autoscale
        self.desired = desired
        self.started = started
        self.proxy = proxy
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
    /// In the proxy's rotation (its readiness check passed, or it is running without a check).
    public var ready: Bool = false
    /// The last readiness check: "ok", "HTTP 503", "connection refused", …; null before the first
    /// or without a check.
    public var health: String?
    /// Requests (http) or connections (tcp) the proxy has open to it now; null without a proxy.
    public var connections: Int?
    /// Requests (or connections) per second through the proxy, over the last second or more.
    public var rps: Double?
    /// While the proxy holds it out of the rotation for failing (`eject_after`): when it comes
    /// back, in seconds since the Unix epoch; null otherwise.
    public var ejectedUntil: Double?
    /// A container instance: of which image or root folder; null for a host process.
    public var container: ContainerInstanceStatus?

    enum CodingKeys: String, CodingKey {
        case id, index, state, pid, port, restarts, cgroup, reason, user, ready, health, connections, rps, container
        case ejectedUntil = "ejected_until"
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
        try c.encode(ready, forKey: .ready)
        try c.encode(health, forKey: .health)
        try c.encode(connections, forKey: .connections)
        try c.encode(rps, forKey: .rps)
        try c.encode(ejectedUntil, forKey: .ejectedUntil)
        try c.encode(container, forKey: .container)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        index = try c.decode(Int.self, forKey: .index)
        state = try c.decode(String.self, forKey: .state)
        pid = try c.decodeIfPresent(Int32.self, forKey: .pid)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        restarts = try c.decode(Int.self, forKey: .restarts)
        uptimeSeconds = try c.decodeIfPresent(Double.self, forKey: .uptimeSeconds)
        cgroup = try c.decodeIfPresent(String.self, forKey: .cgroup)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        cpuSeconds = try c.decodeIfPresent(Double.self, forKey: .cpuSeconds)
        cpuPercent = try c.decodeIfPresent(Double.self, forKey: .cpuPercent)
        memoryBytes = try c.decodeIfPresent(UInt64.self, forKey: .memoryBytes)
        user = try c.decode(String.self, forKey: .user)
        ready = try c.decodeIfPresent(Bool.self, forKey: .ready) ?? false
        health = try c.decodeIfPresent(String.self, forKey: .health)
        connections = try c.decodeIfPresent(Int.self, forKey: .connections)
        rps = try c.decodeIfPresent(Double.self, forKey: .rps)
        ejectedUntil = try c.decodeIfPresent(Double.self, forKey: .ejectedUntil)
        container = try c.decodeIfPresent(ContainerInstanceStatus.self, forKey: .container)
    }
}

/// What `status` says of a container instance.
public struct ContainerInstanceStatus: Codable, Sendable, Equatable {
    /// `sha256:…` of the image manifest it runs; null when it runs a `rootfs` folder.
    public var image: String?
    /// The `rootfs` folder it runs; null when it runs an image.
    public var rootfs: String?

    public init(image: String?, rootfs: String?) {
        self.image = image
        self.rootfs = rootfs
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encode(rootfs, forKey: .rootfs)
    }
}

/// One service's proxy as `status` shows it.
public struct ProxyStatus: Codable, Sendable, Equatable {
    /// The addresses listened on.
    public var listen: [String]
    /// "http" or "tcp".
    public var `protocol`: String
    /// Client connections open now.
    public var openConnections: Int
    /// Requests (or connections) waiting for a ready instance now.
    public var queued: Int
    /// Requests (http) or connections (tcp) handled since musterd started.
    public var requestsTotal: Int
    /// Over the last second or more.
    public var rps: Double
    /// Why a listen address is not bound, when it is not; null when all are.
    public var error: String?
    /// `[proxy] balance`: "round-robin" or "least-request".
    public var balance: String = "round-robin"
    /// Instances held out of the rotation now for failing (`eject_after`).
    public var ejected: Int = 0

    enum CodingKeys: String, CodingKey {
        case listen, `protocol`, queued, rps, error, balance, ejected
        case openConnections = "open_connections"
        case requestsTotal = "requests_total"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        listen = try c.decode([String].self, forKey: .listen)
        `protocol` = try c.decode(String.self, forKey: .protocol)
        openConnections = try c.decode(Int.self, forKey: .openConnections)
        queued = try c.decode(Int.self, forKey: .queued)
        requestsTotal = try c.decode(Int.self, forKey: .requestsTotal)
        rps = try c.decode(Double.self, forKey: .rps)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        // A daemon from before balancing leaves these out.
        balance = try c.decodeIfPresent(String.self, forKey: .balance) ?? "round-robin"
        ejected = try c.decodeIfPresent(Int.self, forKey: .ejected) ?? 0
    }

    public init(listen: [String], protocol: String, openConnections: Int, queued: Int, requestsTotal: Int, rps: Double, error: String?) {
        self.listen = listen
        self.protocol = `protocol`
        self.openConnections = openConnections
        self.queued = queued
        self.requestsTotal = requestsTotal
        self.rps = rps
        self.error = error
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(listen, forKey: .listen)
        try c.encode(`protocol`, forKey: .protocol)
        try c.encode(openConnections, forKey: .openConnections)
        try c.encode(queued, forKey: .queued)
        try c.encode(requestsTotal, forKey: .requestsTotal)
        try c.encode(rps, forKey: .rps)
        try c.encode(error, forKey: .error)
        try c.encode(balance, forKey: .balance)
        try c.encode(ejected, forKey: .ejected)
    }
}

/// A canary deploy in progress: the new revision's instances beside the old ones.
public struct CanaryStatus: Codable, Sendable, Equatable {
    public var revision: Int
    /// "starting" (not every canary instance ready yet), "judging", "promoting" (the rolling
    /// restart to the new revision is under way).
    public var phase: String
    /// Share of the proxy's requests sent to the canary, 0…1.
    public var weight: Double
    public var durationSeconds: Double
    /// Time judged so far (since every canary instance was ready).
    public var elapsedSeconds: Double?
    public var requests: Int
    public var errorRate: Double
    /// Upper bound of the latency bucket holding the 99th percentile; nil before any request.
    public var p99Seconds: Double?
    public var instances: [InstanceStatus]

    public init(revision: Int, phase: String, weight: Double, durationSeconds: Double, elapsedSeconds: Double?,
                requests: Int, errorRate: Double, p99Seconds: Double?, instances: [InstanceStatus]) {
        self.revision = revision
        self.phase = phase
        self.weight = weight
        self.durationSeconds = durationSeconds
        self.elapsedSeconds = elapsedSeconds
        self.requests = requests
        self.errorRate = errorRate
        self.p99Seconds = p99Seconds
        self.instances = instances
    }

    enum CodingKeys: String, CodingKey {
        case revision, phase, weight, requests, instances
        case durationSeconds = "duration_seconds", elapsedSeconds = "elapsed_seconds", errorRate = "error_rate", p99Seconds = "p99_seconds"
    }
}

/// `GET /v1/services/{name}/history`.
public struct HistoryResponse: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var number: Int
        /// Seconds since 1970.
        public var time: Double
        public var changes: [String]
        public var source: String
        /// "deployed", "promoted", "rolled back: <reason>", "superseded", "canary (being judged)".
        public var outcome: String
        /// The service's own instances run this one.
        public var current: Bool

        public init(number: Int, time: Double, changes: [String], source: String, outcome: String, current: Bool) {
            self.number = number
            self.time = time
            self.changes = changes
            self.source = source
            self.outcome = outcome
            self.current = current
        }
    }

    public var service: String
    public var revisions: [Entry]

    public init(service: String, revisions: [Entry]) {
        self.service = service
        self.revisions = revisions
    }
}
