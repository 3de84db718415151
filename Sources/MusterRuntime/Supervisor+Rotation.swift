import Glibc
import MusterAPI
import MusterCore
import MusterProxy
import NIOCore

/// A process replaced by a rolling restart. It serves until its successor in the slot is ready,
/// then drains and stops like any instance, but holds no slot: the slot already runs the successor.
struct RetiringInstance {
    enum Phase { case serving, draining, stopping }
    var record: InstanceRecord
    var live: LiveInstance
    var stop: StopSpec
    var drainTimeout: Duration
    /// Its port's owner name in the allocator, released when it ends.
    var portOwner: String
    var phase: Phase
}

typealias LiveInstance = Supervisor.LiveInstance

/// The proxy side of the supervisor: listeners, the rotation each proxy balances over, draining
/// before a stop, and rolling restarts. All of it runs on the actor, like every other state change.
extension Supervisor {
    static func backend(service: String, index: Int, generation: Int, port: Int) -> Backend? {
        guard let address = try? SocketAddress(ipAddress: "127.0.0.1", port: port) else { return nil }
        return Backend(service: service, index: index, generation: generation, address: address)
    }

    // MARK: Listeners

    /// Binds every service's listeners (once; `start` calls it too). A service whose address
    /// cannot be bound runs without its proxy; `status` and the event log say why. musterd tells
    /// systemd READY=1 after this and the control socket, before instances are up.
    public func bindListeners() async {
        guard !listenersBound else { return }
        listenersBound = true
        let inherited = adoptInheritedSockets()
        for name in services.keys.sorted() {
            guard let spec = services[name]?.spec, let proxySpec = spec.proxy else { continue }
            let proxy = ServiceProxy(service: name, spec: proxySpec, eventLoopGroup: deps.eventLoopGroup, logger: logger)
            watchEjections(proxy)
            proxies[name] = proxy
            do {
                try await proxy.apply(proxySpec, inherited: inherited[name] ?? [:])
                proxyErrors[name] = nil
                emit("proxy-listening", service: name, message: "\(proxySpec.mode.rawValue) proxy listening on \(proxySpec.listen.map(\.description).joined(separator: ", "))")
            } catch {
                proxyErrors[name] = "\(error)"
                emit("proxy-failed", service: name, message: "\(error)")
            }
        }
    }

    /// Matches sockets systemd passed to the services' `listen` addresses (musterd keeps the one
    /// named `control` for the control API and passes the rest here): a socket named after
    /// a service and bound to one of its addresses becomes that listener, so systemd holds the
    /// port across musterd restarts and no connection is refused meanwhile. Any other passed
    /// socket is closed, with a warning.
    private func adoptInheritedSockets() -> [String: [ListenAddress: CInt]] {
        var result: [String: [ListenAddress: CInt]] = [:]
        for (name, fd) in deps.inheritedSockets {
            let bound = SocketAddressText.localAddress(of: fd)
            guard let listen = services[name]?.spec.proxy?.listen else {
                emit("socket-ignored", message: "systemd passed a socket named \"\(name)\" (\(bound?.description ?? "not a TCP socket")), but no service of that name has a [proxy]; closed it")
                Glibc.close(fd)
                continue
            }
            guard let bound, let address = listen.first(where: { Self.sameAddress($0, bound) }) else {
                emit("socket-ignored", service: name, message: "systemd passed a socket bound to \(bound?.description ?? "something that is not TCP"), which [proxy] listen does not name; closed it")
                Glibc.close(fd)
                continue
            }
            result[name, default: [:]][address] = fd
            emit("socket-adopted", service: name, message: "listening on \(address) through the socket systemd holds")
        }
        return result
    }

    /// "localhost" is not resolved: systemd sockets are bound to numeric addresses, and so should
    /// the manifest name them for the match.
    static func sameAddress(_ listen: ListenAddress, _ bound: ListenAddress) -> Bool {
        guard listen.port == bound.port else { return false }
        if listen.host == bound.host { return true }
        // "::" written as "[::]" vs inet_ntop's "::", "0.0.0.0": compare parsed forms.
        var a = in6_addr(), b = in6_addr()
        return inet_pton(AF_INET6, listen.host, &a) == 1 && inet_pton(AF_INET6, bound.host, &b) == 1
            && withUnsafeBytes(of: &a) { x in withUnsafeBytes(of: &b) { y in x.elementsEqual(y) } }
    }

    /// A reload's listeners, applied before anything else of the reload: a new address that cannot
    /// be bound refuses the whole reload and leaves every listener as it was.
    func applyProxies(_ specs: [ServiceSpec]) async throws(ControlError) {
        var applied: [(name: String, previous: ProxySpec?)] = []
        var created: [String] = []
        for spec in specs {
            guard let next = spec.proxy else { continue }
            let previous = services[spec.name].flatMap { $0.removing ? nil : $0.spec.proxy }
            guard previous != next || proxies[spec.name] == nil || proxyErrors[spec.name] != nil else { continue }
            let proxy: ServiceProxy
            if let existing = proxies[spec.name] { proxy = existing }
            else {
                proxy = ServiceProxy(service: spec.name, spec: next, eventLoopGroup: deps.eventLoopGroup, logger: logger)
                watchEjections(proxy)
                proxies[spec.name] = proxy
                created.append(spec.name)
            }
            do {
                try await proxy.apply(next)
                proxyErrors[spec.name] = nil
                applied.append((spec.name, previous))
            } catch {
                for (name, previous) in applied.reversed() {
                    if let previous { try? await proxies[name]?.apply(previous) }
                }
                for name in created { await proxies.removeValue(forKey: name)?.close() }
                emit("reload-failed", service: spec.name, message: "reload refused, nothing changed: \(error)")
                throw ControlError(status: 409, code: "listen_failed", message: "reload refused: \(error); nothing was changed")
            }
        }
        // A service that dropped its [proxy] table, or was removed, stops accepting now; what is
        // in flight finishes as its instances drain.
        let keep = Set(specs.filter { $0.proxy != nil }.map(\.name))
        for name in proxies.keys where !keep.contains(name) { closeProxy(name) }
    }

    /// At shutdown: stop accepting, then keep the instances serving until the client connections
    /// already accepted are done (at most the longest `drain_timeout`), and only then let the
    /// instances drain and stop. Under socket activation the kernel queues new connections for
    /// the next musterd meanwhile, so a restart loses none.
    func serveLastConnections() async {
        guard !proxies.isEmpty else { return }
        servingLastConnections = true
        defer { servingLastConnections = false }
        for proxy in proxies.values { await proxy.close() }
        let bound = services.values.compactMap(\.spec.proxy?.drainTimeout).max() ?? .zero
        let deadline = ContinuousClock.now + bound
        // A connection the listener accepted just before it closed is counted only once its event
        // loop has set it up, a moment later: wait for a quiet spell, not a single zero.
        var quietChecks = 0
        while ContinuousClock.now < deadline, quietChecks < 5 {
            let open = proxies.values.contains { $0.counters.openConnections.load(ordering: .relaxed) > 0 }
            quietChecks = open ? 0 : quietChecks + 1
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    func closeProxy(_ name: String) {
        guard let proxy = proxies.removeValue(forKey: name) else { return }
        proxyErrors[name] = nil
        Task { await proxy.close() }
    }

    // MARK: Rotation

    /// Hands the proxy the instances that are ready and not on their way out, plus replaced ones
    /// still serving until their successor is ready.
    func publishRotation(_ entry: inout ServiceEntry) {
        let owner = entry.canaryOf ?? entry.spec.name
        guard let proxy = proxies[owner] else {
            entry.published = []
            entry.publishedBackends = []
            return
        }
        var rotation: [Backend] = []
        for (index, record) in entry.records where record.ready && !record.draining {
            if let backend = entry.live[index]?.backend { rotation.append(backend) }
        }
        for retiring in entry.retiring where retiring.phase == .serving {
            if let backend = retiring.live.backend { rotation.append(backend) }
        }
        let identities = rotation.map(ObjectIdentifier.init).sorted()
        guard identities != entry.published else { return }
        entry.published = identities
        entry.publishedBackends = rotation
        // The other half of the weighted rotation is read from the table, this half from `entry`
        // (the caller's copy, not yet stored back).
        let name = entry.spec.name
        let saved = services[name]
        services[name] = entry
        publishCombined(owner, proxy: proxy)
        services[name] = saved
    }

    // MARK: Draining

    /// Waits (off the actor) until nothing is in flight to `backend` or `timeout` passes, then
    /// lets the stop go on.
    func startDrain(service: String, backend: Backend, generation: Int, timeout: Duration) {
        backend.retired.store(true, ordering: .relaxed)
        let start = ContinuousClock.now
        let inFlight = backend.counters.inFlight.load(ordering: .relaxed)
        emit("draining", service: service, index: backend.index,
             message: "out of the rotation; \(inFlight) in flight, up to \(DurationText.format(timeout)) to finish")
        Task {
            // At least one pause: a request that picked this instance just before the rotation
            // changed counts itself in flight a moment later.
            repeat {
                try? await Task.sleep(for: .milliseconds(10))
            } while backend.counters.inFlight.load(ordering: .relaxed) > 0 && ContinuousClock.now - start < timeout
            await self.drainFinished(service: service, index: backend.index, generation: generation,
                                     leftover: backend.counters.inFlight.load(ordering: .relaxed))
        }
    }

    private func drainFinished(service: String, index: Int, generation: Int, leftover: Int) {
        guard var entry = services[service] else { return }
        let now = ContinuousClock.now
        if leftover > 0 {
            emit("drain-timeout", service: service, index: index, message: "\(leftover) still in flight after drain_timeout; stopping anyway")
        }
        if let live = entry.live[index], live.generation == generation, var record = entry.records[index], record.draining {
            record.draining = false
            record.deadline = now + entry.spec.stop.timeout
            entry.records[index] = record
            sendStopSignal(entry, index: index)
        } else if let position = entry.retiring.firstIndex(where: { $0.record.index == index && $0.live.generation == generation }),
                  entry.retiring[position].phase == .draining {
            var retiring = entry.retiring[position]
            _ = InstanceLifecycle.stopRequested(&retiring.record, purpose: .halt, timeout: retiring.stop.timeout, now: now)
            retiring.phase = .stopping
            let killed = deliverStopSignal(retiring.live, retiring.stop.signal)
            emit("stopping", service: service, index: index,
                 message: killed.map { "replaced: " + $0 } ?? "replaced: sent \(SignalName.name(retiring.stop.signal)) to pid \(retiring.live.handle.pid); SIGKILL to the group after \(DurationText.format(retiring.stop.timeout))",
                 pid: retiring.live.handle.pid)
            entry.retiring[position] = retiring
        }
        services[service] = entry
        reconcile()
    }

    // MARK: Replaced processes

    /// Moves replaced processes along: a serving one starts draining once its slot's successor is
    /// ready (or the slot will not get one); a stopping one is killed at its stop timeout.
    func reconcileRetiring(_ entry: inout ServiceEntry, now: ContinuousClock.Instant) {
        guard !entry.retiring.isEmpty else { return }
        for position in entry.retiring.indices {
            var retiring = entry.retiring[position]
            switch retiring.phase {
            case .serving:
                let slot = entry.records[retiring.record.index]
                let successorReady = slot?.ready == true
                let noSuccessorComing = shuttingDown || entry.removing || slot == nil
                    || [.fatal, .exited, .stopped, .stopping].contains(slot!.state)
                    || !entry.intent.wants(retiring.record.index)
                guard successorReady || noSuccessorComing else { continue }
                retiring.phase = .draining
                entry.retiring[position] = retiring
                publishRotation(&entry)
                if let backend = retiring.live.backend {
                    startDrain(service: entry.spec.name, backend: backend, generation: retiring.live.generation, timeout: retiring.drainTimeout)
                }
            case .draining:
                continue
            case .stopping:
                let wasKilled = retiring.record.killSent
                InstanceLifecycle.deadlinePassed(&retiring.record, now: now)
                if retiring.record.killSent && !wasKilled {
                    if let cgroup = retiring.live.cgroup { deps.cgroups.kill(cgroup) }
                    else { retiring.live.handle.signalGroup(SIGKILL); retiring.live.handle.signal(SIGKILL) }
                    emit("stop-timeout", service: entry.spec.name, index: retiring.record.index,
                         message: "replaced process still running after \(DurationText.format(retiring.stop.timeout)); killed every process in its cgroup",
                         pid: retiring.live.handle.pid)
                }
                entry.retiring[position] = retiring
            }
        }
    }

    /// The exit of a replaced process (or of nothing we know: a stale report).
    /// Generations count per slot, so a replaced process is known by its slot and generation.
    func retiredExited(_ entry: inout ServiceEntry, index: Int, generation: Int, status: ExitStatus) {
        guard let position = entry.retiring.firstIndex(where: { $0.record.index == index && $0.live.generation == generation }) else { return }
        let retiring = entry.retiring.remove(at: position)
        ports.release(retiring.portOwner)
        if let backend = retiring.live.backend { endedRequests[entry.spec.name, default: 0] += backend.counters.requestsTotal }
        publishRotation(&entry)
        cleanUp(retiring.live, service: entry.spec.name)
        emit(retiring.phase == .stopping ? "stopped" : "exited", service: entry.spec.name, index: retiring.record.index,
             message: "replaced pid \(retiring.live.handle.pid) \(status.description)", pid: retiring.live.handle.pid)
    }

    // MARK: Rolling restart

    /// Restarts the slots one at a time without leaving the service short: a replacement starts
    /// in the slot (on a new port) while the old process keeps serving; once the replacement is
    /// ready the old one drains and stops, then the next slot follows. A slot without a serving
    /// process restarts the plain way.
    func rollingRestart(_ name: String, indexes: [Int]) async {
        for index in indexes {
            guard !shuttingDown, var entry = services[name], !entry.removing else { return }
            guard let live = entry.live[index], var record = entry.records[index], record.ready, !record.draining,
                  let proxySpec = entry.spec.proxy else {
                restartRecords(&entry, [index], now: .now)
                services[name] = entry
                reconcile()
                await waitForSettled([(name, Optional(index))])
                continue
            }
            let owner = "\(name):\(index)@\(live.generation)"
            ports.transfer(from: "\(name):\(index)", to: owner)
            entry.retiring.append(RetiringInstance(record: record, live: live, stop: entry.spec.stop,
                                                   drainTimeout: proxySpec.drainTimeout, portOwner: owner, phase: .serving))
            entry.live[index] = nil
            record.state = .stopped
            record.pid = nil
            record.ready = false
            record.deadline = nil
            record.failedStarts = 0
            record.quickExits = 0
            entry.records[index] = record
            services[name] = entry
            emit("replacing", service: name, index: index, message: "rolling restart: starting a replacement while pid \(live.handle.pid) serves")
            reconcile()
            let generation = live.generation
            let bound = Duration.seconds(entry.spec.restart.startSeconds) + entry.spec.health.interval * (entry.spec.health.rise + 2)
                + entry.spec.health.timeout + .seconds(30)
            await waitUntil(timeout: bound) { supervisor in
                supervisor.services[name]?.retiring.first { $0.record.index == index && $0.live.generation == generation }.map { $0.phase == .stopping } ?? true
            }
            if services[name]?.retiring.contains(where: { $0.record.index == index && $0.live.generation == generation && $0.phase == .serving }) == true {
                emit("rollout-stalled", service: name, index: index,
                     message: "the replacement did not become ready within \(DurationText.format(bound)); the old process keeps serving, the remaining instances were not restarted")
                return
            }
        }
    }

    // MARK: Status

    func proxyStatus(_ name: String, entry: ServiceEntry, now: ContinuousClock.Instant) -> ProxyStatus? {
        guard let spec = entry.spec.proxy else { return nil }
        let proxy = proxies[name]
        let backends = entry.live.values.compactMap(\.backend) + entry.retiring.compactMap(\.live.backend)
        var total = backends.reduce(0) { $0 + $1.counters.requestsTotal }
        // Requests of instances that have ended are kept in the service's own tally.
        total += endedRequests[name] ?? 0
        let rate = proxy.map { rates.rate(ObjectIdentifier($0), total: total, now: now) } ?? 0
        var status = ProxyStatus(
            listen: spec.listen.map(\.description), protocol: spec.mode.rawValue,
            openConnections: proxy?.counters.openConnections.load(ordering: .relaxed) ?? 0,
            queued: proxy?.backends.queued.load(ordering: .relaxed) ?? 0,
            requestsTotal: total, rps: rate, error: proxyErrors[name])
        status.balance = spec.balance.rawValue
        status.ejected = proxy?.backends.ejectedCount ?? 0
        return status
    }

    func forgetRatesOfEndedInstances() {
        var keys = Set(proxies.values.map(ObjectIdentifier.init))
        for entry in services.values {
            for live in entry.live.values { if let backend = live.backend { keys.insert(ObjectIdentifier(backend)) } }
            for retiring in entry.retiring { if let backend = retiring.live.backend { keys.insert(ObjectIdentifier(backend)) } }
        }
        rates.keep(only: keys)
    }
}
