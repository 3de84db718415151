/// One service as its manifest describes it, validated. Pure value: equal specs mean "unchanged"
/// for reload.
public struct ServiceSpec: Sendable, Equatable {
    public var name: String
    public var command: [String]
    public var directory: String
    public var user: String?
    public var group: String?
    public var environment: [String: String]
    public var inheritEnvironment: Bool
    public var instances: Int
    public var restart: RestartSpec
    public var stop: StopSpec
    public var resources: ResourceLimits
    public var logs: LogSpec
    /// The listener in front of the instances; nil when the service has none.
    public var proxy: ProxySpec?
    public var health: HealthSpec = .init()
    /// Bounds and signal for the autoscaler; nil: the instance count is the operator's alone.
    /// With it, `instances` is only the starting count.
    public var autoscale: AutoscaleSpec?
    /// `[export] image`: the container image `musterctl export kubernetes` names; musterd itself
    /// never reads it.
    public var exportImage: String?
    /// `[isolation]`: namespaces, mounts, capabilities and rlimits the shim applies before exec.
    public var isolation = IsolationSpec()
    /// The file this came from; not part of what makes two specs equal.
    public var sourcePath: String

    public init(
        name: String, command: [String], directory: String = "/", user: String? = nil, group: String? = nil,
        environment: [String: String] = [:], inheritEnvironment: Bool = false, instances: Int = 1,
        restart: RestartSpec = .init(), stop: StopSpec = .init(), resources: ResourceLimits = .init(),
        logs: LogSpec = .init(), sourcePath: String = ""
    ) {
        self.name = name
        self.command = command
        self.directory = directory
        self.user = user
        self.group = group
        self.environment = environment
        self.inheritEnvironment = inheritEnvironment
        self.instances = instances
        self.restart = restart
        self.stop = stop
        self.resources = resources
        self.logs = logs
        self.sourcePath = sourcePath
    }

    public static func == (lhs: ServiceSpec, rhs: ServiceSpec) -> Bool {
        var left = lhs, right = rhs
        left.sourcePath = ""
        right.sourcePath = ""
        return left.isEqualIgnoringSource(right)
    }

    private func isEqualIgnoringSource(_ other: ServiceSpec) -> Bool {
        name == other.name && command == other.command && directory == other.directory && user == other.user
            && group == other.group && environment == other.environment
            && inheritEnvironment == other.inheritEnvironment && instances == other.instances
            && restart == other.restart && stop == other.stop && resources == other.resources && logs == other.logs
            && proxy == other.proxy && health == other.health && autoscale == other.autoscale && exportImage == other.exportImage
            && isolation == other.isolation
    }

    /// Differs in what its processes are started with: only a restart applies such a change.
    /// The instance count, the proxy, the health check and the autoscaler apply to running processes.
    public func needsRestart(comparedTo other: ServiceSpec) -> Bool {
        var copy = other
        copy.instances = instances
        copy.proxy = proxy
        copy.health = health
        copy.autoscale = autoscale
        copy.exportImage = exportImage
        return copy != self
    }

    /// Equal in everything but the instance count: such a change scales instead of restarting.
    public func differsOnlyInInstances(from other: ServiceSpec) -> Bool {
        var copy = other
        copy.instances = instances
        return copy == self && other.instances != instances
    }
}

public enum RestartPolicy: String, Sendable, Equatable, CaseIterable {
    case always
    case onFailure = "on-failure"
    case never
}

public struct RestartSpec: Sendable, Equatable {
    public var policy: RestartPolicy = .always
    /// Up this long counts as started.
    public var startSeconds: Double = 1
    public var maxFailedStarts: Int = 5
    public var backoffMin: Duration = .milliseconds(200)
    public var backoffMax: Duration = .seconds(30)
    public var successExitCodes: [Int32] = [0]
    public init() {}
}

public struct StopSpec: Sendable, Equatable {
    public var signal: Int32 = 15
    public var timeout: Duration = .seconds(10)
    public init() {}
}

public struct ResourceLimits: Sendable, Equatable {
    public var memoryMax: UInt64?
    /// Cores: 0.5 is half of one CPU.
    public var cpuMax: Double?
    public var pidsMax: Int?
    public init(memoryMax: UInt64? = nil, cpuMax: Double? = nil, pidsMax: Int? = nil) {
        self.memoryMax = memoryMax
        self.cpuMax = cpuMax
        self.pidsMax = pidsMax
    }
    public var isEmpty: Bool { memoryMax == nil && cpuMax == nil && pidsMax == nil }
}

public struct LogSpec: Sendable, Equatable {
    public enum Target: String, Sendable, Equatable, CaseIterable {
        /// `<log_dir>/<service>/<index>.log`, rotated by musterd.
        case file
        /// stdout and stderr connected straight to journald (`sd_journal_stream_fd`).
        case journal
    }

    public var target: Target = .file
    public var maxBytes: UInt64 = 10 << 20
    public var backups: Int = 5
    public init() {}

    /// The journal's SYSLOG_IDENTIFIER for an instance: `muster/web/0`.
    public static func journalIdentifier(service: String, index: Int) -> String { "muster/\(service)/\(index)" }
}
