/// One instance's readiness, judged from its `[health]` results: `rise` successes in a row put it
/// in the proxy's rotation, `fall` failures in a row take it out (and make it unhealthy, which the
/// caller answers with a restart when `restart_unhealthy` is set). Pure: the caller runs the
/// probes, passes each result with its time, and acts on the transition it gets back.
///
/// Which inputs count depends on the check: probe results for tcp, http and exec; `READY=1` for
/// notify. The others are ignored, so the caller can forward everything it sees without knowing
/// the rules. Without a check there is no tracker: `Readiness` makes a running instance ready.
public struct HealthTracker: Sendable, Equatable {
    /// One check's outcome, as shown in status.
    public struct CheckResult: Sendable, Equatable {
        public var healthy: Bool
        /// Short and human: "HTTP 200", "connection refused", "timed out after 1s", "READY=1".
        public var message: String
        public var at: ContinuousClock.Instant

        public init(healthy: Bool, message: String, at: ContinuousClock.Instant) {
            self.healthy = healthy
            self.message = message
            self.at = at
        }
    }

    /// What the caller must do after an input.
    public enum Transition: Sendable, Equatable {
        case none
        /// Put the instance in the rotation.
        case becameReady
        /// `fall` failures in a row: take it out of the rotation (when `wasReady`) and restart it
        /// when `restart_unhealthy` is set. Reported once per run of failures.
        case becameUnhealthy(wasReady: Bool)
    }

    public let check: HealthSpec.Check
    public let rise: Int
    public let fall: Int
    /// Failures before this instant, while the instance has never been ready, do not count toward
    /// `fall`: a slow starter is not restarted for refusing connections while it boots.
    public let graceUntil: ContinuousClock.Instant?

    public private(set) var isReady = false
    /// Ready at least once since the start (readiness is per process: a new tracker per spawn).
    public private(set) var hasBeenReady = false
    public private(set) var consecutiveSuccesses = 0
    public private(set) var consecutiveFailures = 0
    public private(set) var lastResult: CheckResult?

    /// - Parameters:
    ///   - spec: the service's `[health]` table; `rise` and `fall` below 1 count as 1.
    ///   - startedAt: when the process was spawned.
    ///   - grace: how long after the start failures are forgiven until the first ready (the
    ///     caller passes `start_seconds`, or zero to count every failure).
    public init(spec: HealthSpec, startedAt: ContinuousClock.Instant, grace: Duration = .zero) {
        check = spec.check
        rise = max(1, spec.rise)
        fall = max(1, spec.fall)
        graceUntil = grace > .zero ? startedAt + grace : nil
    }

    /// Failures in a row have reached `fall` (cleared by the next success).
    public var isUnhealthy: Bool { consecutiveFailures >= fall }

    /// Whether the caller runs a periodic probe for this check (tcp, http, exec).
    public var isProbed: Bool { Self.isProbed(check) }

    public static func isProbed(_ check: HealthSpec.Check) -> Bool {
        switch check {
        case .tcp, .http, .exec: true
        case .none, .notify: false
        }
    }

    /// A probe's result. Ignored (`.none`) unless the check is tcp, http or exec.
    public mutating func record(_ result: CheckResult) -> Transition {
        guard isProbed else { return .none }
        lastResult = result
        if result.healthy {
            consecutiveFailures = 0
            consecutiveSuccesses += 1
            if !isReady && consecutiveSuccesses >= rise { return becomeReady() }
            return .none
        }
        consecutiveSuccesses = 0
        if !hasBeenReady, let graceUntil, result.at < graceUntil { return .none }
        consecutiveFailures += 1
        guard consecutiveFailures == fall else { return .none }
        let wasReady = isReady
        isReady = false
        return .becameUnhealthy(wasReady: wasReady)
    }

    /// The instance sent `READY=1` on its notify socket. Counts only with check = notify: a
    /// service with a probe is judged by the probe.
    public mutating func notifyReady(at now: ContinuousClock.Instant) -> Transition {
        guard check == .notify else { return .none }
        lastResult = CheckResult(healthy: true, message: "READY=1", at: now)
        consecutiveSuccesses += 1
        return isReady ? .none : becomeReady()
    }

    private mutating func becomeReady() -> Transition {
        isReady = true
        hasBeenReady = true
        return .becameReady
    }
}
