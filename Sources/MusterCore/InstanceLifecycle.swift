/// The instance state machine: how one event moves a record. Pure: the caller passes the time and
/// a jitter source, and performs whatever the new state implies (the planner says what).
public enum InstanceLifecycle {
    /// A process was started for the slot.
    public static func spawned(_ record: inout InstanceRecord, pid: Int32, spec: RestartSpec, now: ContinuousClock.Instant) {
        if record.generation > 0 { record.restarts += 1 }
        record.generation += 1
        record.pid = pid
        record.spawnedAt = now
        record.runningSince = nil
        record.stopPurpose = nil
        record.killSent = false
        record.reason = nil
        record.ready = false
        record.draining = false
        record.health = nil
        if spec.startSeconds <= 0 {
            becomeRunning(&record, now: now)
        } else {
            record.state = .starting
            record.deadline = now + .seconds(spec.startSeconds)
        }
    }

    /// The process could not be started (exec failed, cgroup refused, …): a failed start.
    public static func spawnFailed(_ record: inout InstanceRecord, reason: String, spec: RestartSpec,
                                   now: ContinuousClock.Instant, jitter: Double) {
        if record.generation > 0 { record.restarts += 1 }
        record.generation += 1
        record.pid = nil
        failedStart(&record, reason: reason, spec: spec, now: now, jitter: jitter)
    }

    /// A timer came due.
    public static func deadlinePassed(_ record: inout InstanceRecord, now: ContinuousClock.Instant) {
        guard let deadline = record.deadline, deadline <= now else { return }
        switch record.state {
        case .starting:
            becomeRunning(&record, now: now)
        case .stopping:
            // The caller kills the cgroup now; the exit report finishes the stop.
            record.killSent = true
            record.deadline = nil
        default:
            break
        }
    }

    /// A stop was asked for. Returns true when a process must be signalled.
    public static func stopRequested(_ record: inout InstanceRecord, purpose: StopPurpose, timeout: Duration,
                                     now: ContinuousClock.Instant) -> Bool {
        switch record.state {
        case .starting, .running:
            record.state = .stopping
            record.ready = false
            record.stopPurpose = purpose
            record.deadline = now + timeout
            return true
        case .stopping:
            // Already on its way down; a restart request upgrades a plain stop.
            if purpose == .restart { record.stopPurpose = .restart }
            return false
        case .backoff, .exited, .fatal, .stopped:
            record.state = .stopped
            record.deadline = nil
            record.pid = nil
            if purpose == .restart { record.failedStarts = 0; record.quickExits = 0 }
            return false
        }
    }

    /// `musterctl start` on a slot: fatal and exited slots may run again.
    public static func startRequested(_ record: inout InstanceRecord) {
        switch record.state {
        case .fatal, .exited, .backoff:
            record.state = .stopped
            record.deadline = nil
            record.failedStarts = 0
            record.quickExits = 0
            record.reason = nil
        default:
            break
        }
    }

    /// The process ended.
    public static func exited(_ record: inout InstanceRecord, status: ExitStatus, reason: String? = nil,
                              spec: RestartSpec, now: ContinuousClock.Instant, jitter: Double) {
        record.pid = nil
        record.lastExit = status
        record.ready = false
        record.draining = false
        let what = reason ?? status.description
        switch record.state {
        case .stopping:
            record.state = .stopped
            record.deadline = nil
            record.reason = record.stopPurpose == .restart ? nil : (record.killSent ? "killed after stop timeout" : nil)
            if record.stopPurpose == .restart { record.failedStarts = 0; record.quickExits = 0 }
        case .starting:
            let startSeconds = DurationText.format(.seconds(spec.startSeconds))
            failedStart(&record, reason: "\(what) before start_seconds (\(startSeconds))", spec: spec, now: now, jitter: jitter)
        case .running:
            let ranFor = record.runningSince.map { now - $0 } ?? .zero
            record.runningSince = nil
            guard shouldRestart(status, spec: spec) else {
                record.state = .exited
                record.deadline = nil
                record.reason = what
                return
            }
            if ranFor > spec.backoffMax { record.quickExits = 0 }
            record.quickExits += 1
            // The first exit after a long run restarts at once; a process that keeps dying soon
            // after starting backs off like a failed start would.
            let delay: Duration = record.quickExits <= 1 ? .zero
                : Backoff.delay(attempt: record.quickExits - 1, minimum: spec.backoffMin, maximum: spec.backoffMax, jitter: jitter)
            record.state = .backoff
            record.deadline = now + delay
            record.reason = what
        case .backoff, .stopped, .exited, .fatal:
            break
        }
    }

    public static func shouldRestart(_ status: ExitStatus, spec: RestartSpec) -> Bool {
        switch spec.policy {
        case .always: return true
        case .never: return false
        case .onFailure:
            if case .exited(let code) = status { return !spec.successExitCodes.contains(code) }
            return true
        }
    }

    private static func becomeRunning(_ record: inout InstanceRecord, now: ContinuousClock.Instant) {
        record.state = .running
        record.runningSince = now
        record.deadline = nil
        record.failedStarts = 0
    }

    private static func failedStart(_ record: inout InstanceRecord, reason: String, spec: RestartSpec,
                                    now: ContinuousClock.Instant, jitter: Double) {
        record.failedStarts += 1
        record.runningSince = nil
        if record.failedStarts >= spec.maxFailedStarts {
            record.state = .fatal
            record.deadline = nil
            record.reason = "\(reason); gave up after \(record.failedStarts) failed starts in a row"
        } else {
            record.state = .backoff
            record.deadline = now + Backoff.delay(attempt: record.failedStarts, minimum: spec.backoffMin,
                                                  maximum: spec.backoffMax, jitter: jitter)
            record.reason = reason
        }
    }
}
