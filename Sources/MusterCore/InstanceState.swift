/// supervisord's states, which operators already know.
public enum InstanceState: String, Sendable, Equatable, CaseIterable, Codable {
    case starting, running, backoff, stopping, stopped, exited, fatal

    /// A process exists for the instance in this state.
    public var hasProcess: Bool { self == .starting || self == .running || self == .stopping }
}

/// How a process ended, as `waitid` tells it.
public enum ExitStatus: Sendable, Equatable {
    case exited(code: Int32)
    case killed(signal: Int32, coreDumped: Bool)

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .killed(let signal, let core): "killed by \(SignalName.name(signal))" + (core ? " (core dumped)" : "")
        }
    }
}

/// Why an instance is being stopped, which decides what follows the stop.
public enum StopPurpose: Sendable, Equatable {
    /// Stop and stay stopped (`stop`, scale down, removal, shutdown).
    case halt
    /// Stop, then start a fresh process (`restart`, a changed manifest).
    case restart
}

/// Everything the supervisor knows about one instance slot of a service. Pure value; the kernel
/// side (pidfd, cgroup, pipes) lives with the runtime and is keyed by `generation`.
public struct InstanceRecord: Sendable, Equatable {
    public var index: Int
    public var state: InstanceState
    /// Counts spawns of this slot; an exit report for an older generation is stale.
    public var generation: Int = 0
    public var pid: Int32?
    public var spawnedAt: ContinuousClock.Instant?
    public var runningSince: ContinuousClock.Instant?
    /// Failed starts in a row; reset once an instance reaches running.
    public var failedStarts: Int = 0
    /// Exits in a row after a short run; reset by a run longer than `backoff_max`.
    public var quickExits: Int = 0
    /// Restarts after the first start.
    public var restarts: Int = 0
    /// When something is due: starting → running, end of backoff, stop timeout.
    public var deadline: ContinuousClock.Instant?
    public var stopPurpose: StopPurpose?
    /// The stop timeout passed and the whole cgroup was killed.
    public var killSent: Bool = false
    public var reason: String?
    public var lastExit: ExitStatus?
    /// In the proxy's rotation: its readiness check passed `rise` times (or, without a check, it
    /// reached running). Only a starting or running instance can be ready.
    public var ready: Bool = false
    /// Stopping, out of the rotation, its in-flight requests finishing; the stop signal follows.
    public var draining: Bool = false
    /// The current process's readiness from its `[health]` check; nil without a check.
    public var health: HealthTracker?

    public init(index: Int, state: InstanceState = .stopped) {
        self.index = index
        self.state = state
    }
}
