/// A service's `[deploy]` table: how a changed manifest replaces the running instances.
public struct DeploySpec: Sendable, Equatable, Codable {
    public enum Strategy: String, Sendable, Equatable, CaseIterable, Codable {
        /// One slot at a time: a replacement starts, becomes ready, then the old process drains.
        case rolling
        /// A few instances of the new revision beside the old ones, judged on live traffic, then
        /// promoted by a rolling restart or rolled back.
        case canary
    }

    public var strategy: Strategy = .rolling
    public var canaryInstances: Int = 1
    /// Share of the proxy's requests sent to the canary, 0…1 (`canary_weight = "10%"` is 0.1).
    public var canaryWeight: Double = 0.1
    /// How long the canary must stay within its limits before it is promoted.
    public var canaryDuration: Duration = .seconds(30)
    /// Most 5xx answers and failed connections, as a share of the canary's requests (0.01 = 1%).
    public var maxErrorRate: Double = 0.01
    /// The canary's p99 latency bound; nil: latency is not judged.
    public var maxP99: Duration?

    public init(strategy: Strategy = .rolling) {
        self.strategy = strategy
    }
}

/// One entry of `env_file`: a dotenv file, relative to the manifest. Written `"-local.env"`, a
/// missing file is skipped (systemd's `EnvironmentFile=-` convention).
public struct EnvFileRef: Sendable, Equatable, Codable {
    /// Absolute, resolved against the manifest's folder.
    public var path: String
    public var optional: Bool

    public init(path: String, optional: Bool = false) {
        self.path = path
        self.optional = optional
    }
}
