import MusterCore

/// Readiness of instances from their `[health]` check: a probe loop per instance for tcp, http
/// and exec, a notify socket per instance for notify. Results come back to the actor, where the
/// instance's `HealthTracker` turns them into joining or leaving the rotation.
extension Supervisor {
    /// One epoll thread for every probe socket and notify socket of the daemon, started on first use.
    static let readinessLoop = EpollLoop(name: "muster-health")
    static let probe = HealthProbe(loop: readinessLoop)

    /// The notify socket an instance gets as NOTIFY_SOCKET, when its check is notify.
    func openNotifySocket(service: String, index: Int, generation: Int, owner: Credentials?) throws(NotifySocket.Failure) -> NotifySocket {
        do { try FileSystem.makeDirectories(deps.notifyDir) }
        catch { throw NotifySocket.Failure(description: "cannot create \(deps.notifyDir): \(error)") }
        return try NotifySocket(path: "\(deps.notifyDir)/\(service)-\(index)-\(generation).sock", owner: owner, loop: Self.readinessLoop)
    }

    /// Starts what judges a new process's readiness; the task ends with the process. Exec probes
    /// run with the instance's `isolation`, inside its mount namespace (`instance`'s).
    func watchReadiness(service: String, index: Int, generation: Int, spec: ServiceSpec, port: Int,
                        environment: [String], credentials: Credentials?, notifySocket: NotifySocket?,
                        isolation: IsolationSpec = .unconfined, instance: ProcessHandle? = nil) -> Task<Void, Never>? {
        let container = spec.container != nil
        if let notifySocket {
            return Task {
                for await message in notifySocket.messages where message.isReady {
                    await self.readinessReport(service: service, index: index, generation: generation, notifyReady: true, result: nil)
                }
            }
        }
        guard HealthTracker.isProbed(spec.health.check) else { return nil }
        let health = spec.health
        return Task {
            // The first probe soon after the start, so a quick starter is ready quickly.
            try? await Task.sleep(for: .milliseconds(100))
            while !Task.isCancelled {
                guard let result = await Self.probe.check(health, port: port, environment: environment, credentials: credentials,
                                                          isolation: isolation, instance: instance, container: container) else { return }
                guard !Task.isCancelled else { return }
                await self.readinessReport(service: service, index: index, generation: generation, notifyReady: false, result: result)
                try? await Task.sleep(for: health.interval)
            }
        }
    }

    private func readinessReport(service: String, index: Int, generation: Int, notifyReady: Bool, result: HealthResult?) {
        guard var entry = services[service], let live = entry.live[index], live.generation == generation,
              var record = entry.records[index], record.state == .starting || record.state == .running,
              var tracker = record.health else { return }
        let now = ContinuousClock.now
        let transition = notifyReady
            ? tracker.notifyReady(at: now)
            : tracker.record(.init(healthy: result?.healthy ?? false, message: result?.message ?? "", at: now))
        record.health = tracker
        entry.records[index] = record
        switch transition {
        case .none:
            services[service] = entry
            return
        case .becameReady:
            entry.records[index]!.ready = true
            emit("ready", service: service, index: index, message: "ready (\(tracker.lastResult?.message ?? "ok")); in the rotation")
        case .becameUnhealthy(let wasReady):
            entry.records[index]!.ready = false
            let why = "\(tracker.fall) failed check(s) in a row, last: \(tracker.lastResult?.message ?? "?")"
            if wasReady && entry.spec.health.restartUnhealthy {
                emit("unhealthy", service: service, index: index, message: "\(why); out of the rotation, restarting (restart_unhealthy)")
                restartRecords(&entry, [index], now: now)
            } else {
                emit("unhealthy", service: service, index: index, message: "\(why); out of the rotation")
            }
        }
        services[service] = entry
        reconcileSoon()
    }
}
