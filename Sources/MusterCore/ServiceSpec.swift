/// One service as its manifest describes it, validated. Pure value: equal specs mean "unchanged"
/// for reload.
public struct ServiceSpec: Sendable, Equatable, Codable {
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
    /// `[container]`: the instances run as containers of this image or root folder; nil: as host
    /// processes.
    public var container: ContainerSpec?
    /// `[isolation]`: namespaces, mounts, capabilities and rlimits the shim applies before exec.
    public var isolation = IsolationSpec()
    /// `requires`: services that must be ready before this one starts; this one stops before
    /// them, and is stopped while any of them is stopped or fatal.
    public var requires: [String] = []
    /// `wants`: services this one starts after, when they are there; nothing more.
    public var wants: [String] = []
    /// `env_file`: dotenv files, in order (later files win over earlier).
    public var envFiles: [EnvFileRef] = []
    /// What the env files said when the manifest was read, merged in order. `environment` wins
    /// over it at launch. Part of the spec, so an edited env file is a changed service on reload.
    public var envFileEnvironment: [String: String] = [:]
    /// `[deploy]`: how a changed manifest replaces the running instances.
    public var deploy = DeploySpec()
    /// Where each service this one requires or wants is reached, by name: filled in by
    /// `DependencyGraph.validate` from the peers' `[proxy]`. Part of the spec, so a peer's moved
    /// listener restarts its dependents on reload (their environment names it).
    public var peerAddresses: [String: PeerAddress] = [:]
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
            && isolation == other.isolation && container == other.container && requires == other.requires && wants == other.wants
            && envFiles == other.envFiles && envFileEnvironment == other.envFileEnvironment && deploy == other.deploy
            && peerAddresses == other.peerAddresses
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
        if copy.container != nil { copy.container?.imageRef = container?.imageRef }
        copy.deploy = deploy
        return copy != self
    }

    /// Equal in everything but the instance count: such a change scales instead of restarting.
    public func differsOnlyInInstances(from other: ServiceSpec) -> Bool {
        var copy = other
        copy.instances = instances
        return copy == self && other.instances != instances
    }
}

public enum RestartPolicy: String, Sendable, Equatable, CaseIterable, Codable {
    case always
    case onFailure = "on-failure"
    case never
}

public struct RestartSpec: Sendable, Equatable, Codable {
    public var policy: RestartPolicy = .always
    /// Up this long counts as started.
    public var startSeconds: Double = 1
    public var maxFailedStarts: Int = 5
    public var backoffMin: Duration = .milliseconds(200)
    public var backoffMax: Duration = .seconds(30)
    public var successExitCodes: [Int32] = [0]
    public init() {}
}

public struct StopSpec: Sendable, Equatable, Codable {
    public var signal: Int32 = 15
    public var timeout: Duration = .seconds(10)
    public init() {}
}

public struct ResourceLimits: Sendable, Equatable, Codable {
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

public struct LogSpec: Sendable, Equatable, Codable {
    public enum Target: String, Sendable, Equatable, CaseIterable, Codable {
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
