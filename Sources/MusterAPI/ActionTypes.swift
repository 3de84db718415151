/// `POST /v1/start|stop|restart`: targets are `web`, `web:1` or `all`.
public struct TargetsRequest: Codable, Sendable, Equatable {
    public var targets: [String]
    public init(targets: [String]) { self.targets = targets }
}

/// `POST /v1/signal`.
public struct SignalRequest: Codable, Sendable, Equatable {
    public var signal: String
    public var targets: [String]
    public init(signal: String, targets: [String]) {
        self.signal = signal
        self.targets = targets
    }
}

/// `POST /v1/services/{name}/scale`.
public struct ScaleRequest: Codable, Sendable, Equatable {
    public var instances: Int
    public init(instances: Int) { self.instances = instances }
}

/// What an action did, one line per instance or service touched.
public struct ActionResponse: Codable, Sendable, Equatable {
    public var results: [String]
    public init(results: [String]) { self.results = results }
}

/// `POST /v1/reload`: the plan, applied unless `dry_run` was asked.
public struct ReloadResponse: Codable, Sendable, Equatable {
    public struct Rescale: Codable, Sendable, Equatable {
        public var name: String
        public var from: Int
        public var to: Int
        public init(name: String, from: Int, to: Int) {
            self.name = name
            self.from = from
            self.to = to
        }
    }

    public var applied: Bool
    public var added: [String]
    public var removed: [String]
    public var changed: [String]
    public var rescaled: [Rescale]
    public var unchanged: [String]
    public var warnings: [String]

    public init(applied: Bool, added: [String], removed: [String], changed: [String], rescaled: [Rescale],
                unchanged: [String], warnings: [String] = []) {
        self.applied = applied
        self.added = added
        self.removed = removed
        self.changed = changed
        self.rescaled = rescaled
        self.unchanged = unchanged
        self.warnings = warnings
    }
}

/// Every non-2xx response: `{"error": "<code>", "message": "<sentence>"}`; `details` lists each
/// problem when there are several (a reload with invalid manifests).
public struct ErrorResponse: Codable, Sendable, Equatable, Error {
    public var error: String
    public var message: String
    public var details: [String]?
    public init(error: String, message: String, details: [String]? = nil) {
        self.error = error
        self.message = message
        self.details = details
    }
}

public struct VersionResponse: Codable, Sendable, Equatable {
    public var version: String
    public var pid: Int32
    public var cgroupMode: String
    public var cgroupRoot: String?

    enum CodingKeys: String, CodingKey {
        case version, pid
        case cgroupMode = "cgroup_mode"
        case cgroupRoot = "cgroup_root"
    }

    public init(version: String, pid: Int32, cgroupMode: String, cgroupRoot: String?) {
        self.version = version
        self.pid = pid
        self.cgroupMode = cgroupMode
        self.cgroupRoot = cgroupRoot
    }
}

public enum MusterVersion {
    public static let current = "0.1.0"
}

/// `POST /v1/services/{name}/deploy` and `/rollback`.
public struct DeployResponse: Codable, Sendable, Equatable {
    public var service: String
    /// The revision being deployed (a canary's, for strategy canary); nil when nothing changed.
    public var revision: Int?
    /// "canary", "rolling", or "none" (unchanged).
    public var strategy: String
    public var message: String

    public init(service: String, revision: Int?, strategy: String, message: String) {
        self.service = service
        self.revision = revision
        self.strategy = strategy
        self.message = message
    }
}

/// `POST /v1/services/{name}/rollback` body; no revision: the previous good one.
public struct RollbackRequest: Codable, Sendable, Equatable {
    public var revision: Int?
    public init(revision: Int? = nil) { self.revision = revision }
}
