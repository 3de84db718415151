import Glibc
import Logging
import MusterAPI
import MusterCore
import MusterImage
import MusterProxy
import NIOCore
import NIOPosix

/// The one owner of process state. Every event (a command, an exit, a timer, a reload) changes
/// desired or actual state and ends in `reconcile()`, which asks the pure planner what to start,
/// signal or kill and does exactly that. No other code path starts or stops a process.
public actor Supervisor {
    public struct Dependencies: Sendable {
        public var cgroups: Cgroups
        public var reaper: Reaper
        public var logs: LogPump
        public var journal: EventJournal
        public var store: StateStore?
        public var logDir: String
        public var ports: ClosedRange<Int>
        public var daemonEnvironment: [String: String]
        public var logger: Logger
        /// Reads and validates every manifest again (reload).
        public var loadManifests: @Sendable () throws(ManifestErrors) -> [ServiceSpec]
        public var portIsFree: @Sendable (Int) -> Bool
        public var jitter: @Sendable () -> Double
        /// Tells the service manager (sd_notify) how things stand: "STATUS=…", "RELOADING=1",
        /// "READY=1", "STOPPING=1". A no-op outside systemd.
        public var notify: @Sendable (String) -> Void
        /// Where the proxies' listeners and connections run.
        public var eventLoopGroup: any EventLoopGroup
        /// Where instances with `check = "notify"` get their NOTIFY_SOCKET (kept short: a socket
        /// path holds 107 bytes).
        public var notifyDir: String
        /// Listening sockets systemd passed (socket activation), by name: a socket named after a
        /// service becomes that service's listener for the address it is bound to.
        public var inheritedSockets: [(name: String, fd: Int32)]
        /// Opens a stream into journald for `[logs] target = "journal"`: (identifier, priority) →
        /// a descriptor, or why not. musterd passes libsystemd's `sd_journal_stream_fd`.
        public var journalStream: @Sendable (String, Int32) -> Result<Int32, JournalUnavailable>
        /// How often the autoscaler samples load and decides (`metrics_interval`).
        public var metricsInterval: Duration
        /// `<state_dir>/containers`: container instances' writable layers; nil: no containers.
        public var containersDir: String?
        /// `<state_dir>/images`: the unpacked images container instances run.
        public var images: ImageStore?

        public init(cgroups: Cgroups, reaper: Reaper, logs: LogPump, journal: EventJournal, store: StateStore?,
                    logDir: String, ports: ClosedRange<Int>, daemonEnvironment: [String: String], logger: Logger,
                    loadManifests: @escaping @Sendable () throws(ManifestErrors) -> [ServiceSpec],
                    portIsFree: @escaping @Sendable (Int) -> Bool = PortProbe.isFree,
                    jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
                    notify: @escaping @Sendable (String) -> Void = { _ in },
                    eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                    notifyDir: String = "/run/muster/notify",
                    inheritedSockets: [(name: String, fd: Int32)] = [],
                    journalStream: @escaping @Sendable (String, Int32) -> Result<Int32, JournalUnavailable> = { _, _ in
                        .failure(JournalUnavailable(message: "journald is not available to this musterd"))
                    },
                    metricsInterval: Duration = .seconds(1), containersDir: String? = nil, images: ImageStore? = nil) {
            self.cgroups = cgroups
            self.reaper = reaper
            self.logs = logs
            self.journal = journal
            self.store = store
            self.logDir = logDir
            self.ports = ports
            self.daemonEnvironment = daemonEnvironment
            self.logger = logger
            self.loadManifests = loadManifests
            self.portIsFree = portIsFree
            self.jitter = jitter
            self.notify = notify
            self.eventLoopGroup = eventLoopGroup
            self.notifyDir = notifyDir
            self.inheritedSockets = inheritedSockets
            self.journalStream = journalStream
            self.containersDir = containersDir
            self.images = images
            self.metricsInterval = metricsInterval
        }
    }

    /// The kernel side of one running instance, keyed by the record's generation.
    struct LiveInstance {
        var generation: Int
        var handle: ProcessHandle
        var cgroup: InstanceCgroup?
        var usage: UsageReader?
        var port: Int
        /// The instance as the proxy sees it; nil when the service has no proxy.
        var backend: Backend?
        /// Probes its health or reads its notify socket; cancelled when the process ends.
        var readinessTask: Task<Void, Never>?
        var notifySocket: NotifySocket?
        /// A container's folders (`ContainerRoot`): its writable layer, removed when it ends.
        var containerFolder: String? = nil
        /// `sha256:…` of the image a container runs; nil for a root folder or a host process.
        var containerImage: String? = nil
    }

    struct ServiceEntry {
        var spec: ServiceSpec
        var intent: ServiceIntent
        var records: [Int: InstanceRecord] = [:]
        var live: [Int: LiveInstance] = [:]
        /// Removed by a reload: stop everything, then forget the service.
        var removing = false
        /// Processes replaced by a rolling restart: serving until their successor is ready, then
        /// drained and stopped. They hold no slot.
        var retiring: [RetiringInstance] = []
        /// The rotation last handed to the proxy, to publish only changes.
        var published: [ObjectIdentifier] = []
        var publishedBackends: [Backend] = []
        /// Set on a canary's internal entry ("web@7"): the service it is a canary of.
        var canaryOf: String?
        /// Records ready as of the last planning pass: the charts' sampler reads it each second
        /// instead of counting 2,000 records.
        var readyCount = 0
    }

    private struct Waiter {
        var id: Int
        var isSatisfied: @Sendable (isolated Supervisor) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    let deps: Dependencies
    var logger: Logger { deps.logger }
    var services: [String: ServiceEntry] = [:]
    var ports: PortAllocator
    var shuttingDown = false
    /// One per service with a `[proxy]`; listeners stay open across reloads.
    var proxies: [String: ServiceProxy] = [:]
    /// Why a service's listener is not open, for `status`.
    var proxyErrors: [String: String] = [:]
    var listenersBound = false
    /// Shutting down, listeners closed, instances still serving the connections already accepted.
    var servingLastConnections = false
    var rates = RateMeter<ObjectIdentifier>()
    /// Requests through instances that have ended, per service, so totals never go backwards.
    var endedRequests: [String: Int] = [:]
    /// One per service with an `[autoscale]` table.
    var autoscalers: [String: AutoscaleState] = [:]
    /// Canary deploys in progress, by service (Supervisor+Canary.swift).
    var canaries: [String: CanaryRun] = [:]
    /// Each service's revisions, as in the revision store.
    var histories: [String: RevisionHistory] = [:]
    /// Each service's last 15 minutes, a sample a second, for `GET /v1/history`.
    var timelines: [String: ServiceTimeline] = [:]
    /// The charts' CPU and memory, read from each service's cgroup folder (Supervisor+Timeline).
    var timelineUsage: [String: TimelineUsage] = [:]
    /// Where the next tick's cgroup reads start, when there are more services than one tick reads.
    var timelineReadCursor = 0
    var timelineTask: Task<Void, Never>?
    /// What each service's manifest said when it was last deployed from disk: reload compares
    /// the disk to this, so a rollback sticks until the manifest changes.
    var diskSpecs: [String: ServiceSpec] = [:]
    var canaryTallies: [String: CanaryTally] = [:]
    /// The autoscaler's loop, parked while no service autoscales (so an idle daemon without
    /// autoscaled services is not woken ten times a second); resumed when one appears or at shutdown.
    var autoscalerParked: CheckedContinuation<Void, Never>?
    private var autoscaleTask: Task<Void, Never>?
    private var wakeTask: Task<Void, Never>?
    private var wakeAt: ContinuousClock.Instant?
    private var waiters: [Waiter] = []
    private var nextWaiterID = 0
    private var cleanupsInFlight = 0
    /// The last STATUS= line sent, so an unchanged one is not sent again.
    private var lastStatusLine = ""
    /// A pass is queued on the actor (`reconcileSoon`).
    private var reconcileQueued = false
    /// False until what an earlier daemon left behind is stopped: until then nothing may start,
    /// or a new instance could meet an orphan on its port. Commands that arrive meanwhile only
    /// change intent.
    private var leftoversCleared = false
    /// What `requires` and `wants` allow each service now (only those not `.open`).
    var dependencyVerdicts: [String: DependencyGate.Verdict] = [:]

    public init(specs: [ServiceSpec], dependencies: Dependencies) {
        deps = dependencies
        ports = PortAllocator(range: dependencies.ports)
        let saved = dependencies.store?.load() ?? [:]
        for spec in specs {
            services[spec.name] = ServiceEntry(spec: spec, intent: Self.restoredIntent(saved[spec.name], spec: spec))
        }
    }

    /// The saved intent, unless the manifest's `instances` changed since it was saved: an edited
    /// manifest is the operator's newer word.
    static func restoredIntent(_ saved: ServiceIntent?, spec: ServiceSpec) -> ServiceIntent {
        guard var intent = saved else { return ServiceIntent(desired: spec.instances) }
        if intent.manifestInstances != spec.instances {
            intent.desired = spec.instances
            intent.manifestInstances = spec.instances
        }
        return intent
    }

    // MARK: Start and stop of the daemon

    /// Stops what an earlier daemon left in the cgroup tree, then starts every service.
    public func start() async {
        await bindListeners()
        await stopLeftovers()
        // With the leftover instances gone, no container layer is in use.
        if let containersDir = deps.containersDir { ContainerRoot.sweep(containersDir: containersDir) }
        leftoversCleared = true
        restoreRevisions()
        emit("daemon-started", message: "musterd started with \(services.count) service(s); cgroups: \(deps.cgroups.mode.rawValue)")
        syncAutoscalers(now: .now)
        saveIntents()
        reconcile()
        if autoscaleTask == nil { autoscaleTask = Task { await self.runAutoscaler() } }
        if timelineTask == nil { timelineTask = Task { await self.runTimelineSampler() } }
    }

    /// Instances found in the cgroup tree at start belong to a daemon that died without stopping
    /// them (SIGKILL, a crash). Each gets its service's stop signal, then its stop timeout, then
    /// SIGKILL to the whole group, so no orphan keeps a port and no two instances share one.
    private func stopLeftovers() async {
        let cgroups = deps.cgroups
        let leftovers = cgroups.leftovers()
        guard !leftovers.isEmpty else { return }
        var populated: [(group: InstanceCgroup, deadline: ContinuousClock.Instant)] = []
        let now = ContinuousClock.now
        for group in leftovers {
            let service = group.relativePath.split(separator: "/").dropFirst().first.map(String.init) ?? ""
            let spec = services[service]?.spec
            if cgroups.isPopulated(group) {
                let pids = cgroups.processes(group)
                emit("orphan-stopped", service: service, message: "stopping \(pids.count) process(es) left in \(group.displayPath ?? group.relativePath) by an earlier musterd")
                cgroups.signalAll(group, spec?.stop.signal ?? SIGTERM)
                populated.append((group, now + (spec?.stop.timeout ?? .seconds(10))))
            }
        }
        while !populated.isEmpty {
            try? await Task.sleep(for: .milliseconds(20))
            let now = ContinuousClock.now
            populated.removeAll { entry in
                if !cgroups.isPopulated(entry.group) { return true }
                if entry.deadline <= now { cgroups.kill(entry.group) }
                return false
            }
        }
        for group in leftovers {
            for _ in 0..<50 where !cgroups.remove(group) { try? await Task.sleep(for: .milliseconds(10)) }
        }
        // A canary's folder ("web@7") belongs to no service of the new daemon: remove it too.
        for service in Set(leftovers.compactMap { $0.relativePath.split(separator: "/").dropFirst().first.map(String.init) })
            where services[service] == nil {
            cgroups.removeService(service)
        }
    }

    /// Stops every instance in parallel within its stop timeout, removes the cgroups, and returns.
    public func shutdown() async {
        guard !shuttingDown else {
            await waitUntil(timeout: nil) { $0.isIdle }
            return
        }
        shuttingDown = true
        autoscalerParked.take()?.resume()
        deps.notify("STOPPING=1")
        emit("shutdown", message: "stopping all instances")
        await serveLastConnections()
        reconcile()
        await waitUntil(timeout: nil) { $0.isIdle }
        wakeTask?.cancel()
        autoscaleTask?.cancel()
        timelineTask?.cancel()
        deps.cgroups.tearDown()
        deps.journal.finishFollowers()
    }

    public var isShuttingDown: Bool { shuttingDown }

    /// No process of any instance is left, and every cgroup is cleaned up.
    var isIdle: Bool {
        cleanupsInFlight == 0 && services.values.allSatisfy { $0.live.isEmpty && $0.retiring.isEmpty }
    }

    // MARK: Reconcile

    /// Closes the gap between desired and actual for every service.
    func reconcile() {
        guard leftoversCleared else {
            resumeSatisfiedWaiters()
            return
        }
        let now = ContinuousClock.now
        // The pass's events reach events.log with one write at its end, not one each.
        deps.journal.holdingWrites {
            refreshDependencyVerdicts()
            // Once more while a dependency's verdict changes (bounded by the chain's length), so a
            // service whose requirement just became ready starts in this same turn.
            for _ in 0...services.count {
                planServices(now: now)
                guard refreshDependencyVerdicts() else { break }
            }
        }
        scheduleWake()
        resumeSatisfiedWaiters()
        reportStatusLine()
    }

    /// A reconcile pass after whatever is already queued on the actor, once however often it is
    /// asked for meanwhile. Events that come in bursts, one an instance (exits, health results),
    /// use it: a `stop all` of 2,000 instances ends 2,000 processes within milliseconds, and a pass
    /// each made stopping them O(N²) (9.7 s at 2,000, past their stop timeout, where supervisord
    /// took 1.1 s); batched, the burst costs a handful of passes.
    func reconcileSoon() {
        guard !reconcileQueued else { return }
        reconcileQueued = true
        Task { self.runQueuedReconcile() }
    }

    private func runQueuedReconcile() {
        reconcileQueued = false
        reconcile()
    }

    /// One planning pass over every service; independent services start side by side.
    private func planServices(now: ContinuousClock.Instant) {
        for name in services.keys.sorted() {
            guard var entry = services[name] else { continue }
            let before = entry.records.mapValues(\.state)
            let plan = ServicePlanner.plan(records: &entry.records, intent: entry.intent, spec: entry.spec,
                                           shuttingDown: (shuttingDown && !servingLastConnections) || entry.removing,
                                           gate: dependencyVerdict(name), now: now)
            for (index, record) in entry.records where before[index] == .starting && record.state == .running {
                emit("running", service: name, index: index, message: "running (pid \(record.pid ?? 0)) after \(DurationText.format(.seconds(entry.spec.restart.startSeconds)))", pid: record.pid)
            }
            for action in plan.actions {
                switch action {
                case .spawn(let index): spawn(&entry, index: index, now: now)
                case .signalStop(let index): signalStop(&entry, index: index, now: now)
                case .killGroup(let index): killGroup(&entry, index: index)
                }
            }
            Readiness.update(&entry.records, health: entry.spec.health)
            entry.readyCount = entry.records.values.reduce(0) { $0 + ($1.ready ? 1 : 0) }
            reconcileRetiring(&entry, now: now)
            publishRotation(&entry)
            noteServing(name, readyCount: entry.published.count)
            for index in before.keys where entry.records[index] == nil { ports.release("\(name):\(index)") }
            if entry.removing, entry.records.isEmpty, entry.live.isEmpty, entry.retiring.isEmpty {
                services[name] = nil
                closeProxy(name)
                deps.cgroups.removeService(name)
                if entry.canaryOf == nil { emit("removed", service: name, message: "service removed") }
                continue
            }
            services[name] = entry
        }
    }

    /// "3 services, 7/7 instances running, 1 fatal": what `systemctl status musterd` shows.
    public var statusLine: String {
        let records = services.values.flatMap(\.records.values)
        let desired = services.values.filter { !$0.removing && $0.intent.started }.map(\.intent.desired).reduce(0, +)
        var line = "\(services.count) service\(services.count == 1 ? "" : "s"), "
            + "\(records.filter { $0.state == .running }.count)/\(desired) instances running"
        let fatal = records.filter { $0.state == .fatal }.count
        if fatal > 0 { line += ", \(fatal) fatal" }
        let backoff = records.filter { $0.state == .backoff }.count
        if backoff > 0 { line += ", \(backoff) in backoff" }
        if shuttingDown { line = "stopping: " + line }
        return line
    }

    private func reportStatusLine() {
        let line = statusLine
        guard line != lastStatusLine else { return }
        lastStatusLine = line
        deps.notify("STATUS=" + line)
    }

    /// A reconcile pass on request. The watchdog pings only after this returns: it can only return
    /// once the actor has worked through every event queued before it and the pass has finished,
    /// so a stuck reconcile loop or event handler stops the pings, and systemd restarts musterd.
    public func heartbeat() {
        reconcile()
    }

    private func scheduleWake() {
        let next = services.values.flatMap { $0.records.values.compactMap(\.deadline) + $0.retiring.compactMap(\.record.deadline) }.min()
        guard next != wakeAt else { return }
        wakeTask?.cancel()
        wakeAt = next
        guard let next else { return }
        wakeTask = Task {
            try? await Task.sleep(until: next, clock: .continuous)
            guard !Task.isCancelled else { return }
            self.timerFired()
        }
    }

    private func timerFired() {
        wakeAt = nil
        reconcile()
    }

    // MARK: Actions

    func spawn(_ entry: inout ServiceEntry, index: Int, now: ContinuousClock.Instant) {
        let spec = entry.spec
        var record = entry.records[index] ?? InstanceRecord(index: index)
        let id = "\(spec.name):\(index)"
        let failure: (String, Bool)
        launch: do {
            guard let port = ports.allocate(for: id, isFree: deps.portIsFree) else {
                failure = ("no free port left in instance_ports \(deps.ports.lowerBound)-\(deps.ports.upperBound)", false)
                break launch
            }
            var account: Accounts.User?
            var credentials: Credentials?
            var containerLower: String?
            var containerAccount: (name: String, home: String)?
            if spec.container != nil {
                // A container's user is one of its image's accounts, not the host's.
                do throws(SpawnError) {
                    let lower = try containerLowerLayer(spec)
                    let found = try ContainerRoot.account(lower: lower, spec: spec)
                    containerLower = lower
                    containerAccount = (found.name ?? String(found.uid), found.home)
                    credentials = Credentials(uid: found.uid, gid: found.gid, groups: found.groups.map { gid_t($0) })
                } catch {
                    failure = (error.description, false)
                    break launch
                }
            } else if let user = spec.user {
                guard let found = Accounts.user(named: user) else { failure = ("user \(user) does not exist", false); break launch }
                account = found
                credentials = Credentials(uid: found.uid, gid: found.gid, groups: Accounts.groupList(user: user, primary: found.gid))
            }
            if let group = spec.group, spec.container == nil {
                guard let found = Accounts.group(named: group) else { failure = ("group \(group) does not exist", false); break launch }
                let base = credentials ?? Credentials(uid: geteuid(), gid: found.gid, groups: [])
                credentials = Credentials(uid: base.uid, gid: found.gid, groups: Array(Set(base.groups + [found.gid])))
            }
            let plan = LaunchPlan(spec: spec, index: index, port: port, daemonEnvironment: deps.daemonEnvironment,
                                  account: account.map { ($0.name, $0.home) } ?? containerAccount)
            guard let program = spec.container != nil ? plan.argv[0] : plan.resolveProgram(isExecutable: FileSystem.isExecutableFile) else {
                failure = ("exec \(plan.argv[0]): not found in PATH (\(plan.path ?? LaunchPlan.defaultPath))", false)
                break launch
            }
            let cgroup: InstanceCgroup?
            do {
                cgroup = try deps.cgroups.createInstance(service: spec.name, leaf: "\(index)-\(record.generation + 1)", limits: spec.resources)
            } catch {
                // Limits that cannot be enforced here will not become enforceable by retrying.
                failure = (error.description, deps.cgroups.mode == .unavailable)
                break launch
            }
            let pipes: LogPump.Pipes
            switch spec.logs.target {
            case .file:
                do {
                    pipes = try deps.logs.attach(path: logPath(spec.name, index), maxBytes: spec.logs.maxBytes, backups: spec.logs.backups)
                } catch {
                    if let cgroup { deps.cgroups.remove(cgroup) }
                    failure = ("cannot open log pipes: \(error)", false)
                    break launch
                }
            case .journal:
                let identifier = LogSpec.journalIdentifier(service: spec.name, index: index)
                switch (deps.journalStream(identifier, LOG_INFO), deps.journalStream(identifier, LOG_WARNING)) {
                case (.success(let out), .success(let err)):
                    pipes = LogPump.Pipes(stdoutWrite: out, stderrWrite: err)
                case (let out, let err):
                    for case .success(let fd) in [out, err] { Glibc.close(fd) }
                    let why = [out, err].compactMap { if case .failure(let e) = $0 { e.message } else { nil } }.first ?? "?"
                    if let cgroup { deps.cgroups.remove(cgroup) }
                    failure = ("[logs] target = \"journal\": \(why)", false)
                    break launch
                }
            }
            var environment = plan.environment
            var notifySocket: NotifySocket?
            if spec.health.check == .notify {
                do {
                    notifySocket = try openNotifySocket(service: spec.name, index: index, generation: record.generation + 1, owner: credentials)
                    environment.append("NOTIFY_SOCKET=\(notifySocket!.path)")
                } catch {
                    pipes.closeWriteEnds()
                    if let cgroup { deps.cgroups.remove(cgroup) }
                    failure = (error.description, false)
                    break launch
                }
            }
            var request = LaunchRequest(program: program, argv: plan.argv, environment: environment, directory: plan.directory,
                                        credentials: credentials, stdoutFD: pipes.stdoutWrite, stderrFD: pipes.stderrWrite,
                                        cgroup: cgroup, v1ProcsPaths: cgroup.map(deps.cgroups.v1ProcsPaths) ?? [], isolation: plan.isolation)
            var containerFolder: String?
            if let containerLower {
                do throws(SpawnError) {
                    let prepared = try prepareContainer(spec, lower: containerLower, plan: plan, index: index,
                                                        generation: record.generation + 1, notifySocket: notifySocket, request: &request)
                    containerFolder = prepared.folder
                } catch {
                    pipes.closeWriteEnds()
                    notifySocket?.close()
                    if let cgroup { deps.cgroups.remove(cgroup) }
                    failure = (error.description, false)
                    break launch
                }
            }
            let generation = record.generation + 1
            let name = spec.name
            do {
                let handle = try deps.reaper.spawning { () throws(SpawnError) -> ProcessHandle in
                    let handle = try Spawner.spawn(request)
                    deps.reaper.watch(handle) { status in
                        Task { await self.processExited(service: name, index: index, generation: generation, status: status) }
                    }
                    return handle
                }
                pipes.closeWriteEnds()
                if let listener = request.listenSocket { Glibc.close(listener) }
                InstanceLifecycle.spawned(&record, pid: handle.pid, spec: spec.restart, now: now)
                if spec.health.check != .none {
                    record.health = HealthTracker(spec: spec.health, startedAt: now, grace: .seconds(spec.restart.startSeconds))
                }
                let readinessTask = watchReadiness(service: name, index: index, generation: record.generation, spec: spec, port: port,
                                                   environment: environment, credentials: credentials, notifySocket: notifySocket,
                                                   isolation: plan.isolation, instance: handle)
                entry.live[index] = LiveInstance(generation: record.generation, handle: handle, cgroup: cgroup,
                                                 usage: cgroup.map { deps.cgroups.usageReader($0, pid: handle.pid, startedAt: now) },
                                                 port: port, backend: spec.proxy == nil ? nil : Self.backend(service: name, index: index, generation: record.generation, port: port),
                                                 readinessTask: readinessTask, notifySocket: notifySocket,
                                                 containerFolder: containerFolder, containerImage: spec.container?.image?.manifestDigest)
                entry.records[index] = record
                emit("started", service: name, index: index,
                     message: "started pid \(handle.pid) on port \(port)" + (record.state == .starting ? ", starting for \(DurationText.format(.seconds(spec.restart.startSeconds)))" : ""),
                     pid: handle.pid)
                return
            } catch {
                pipes.closeWriteEnds()
                notifySocket?.close()
                if let cgroup { deps.cgroups.remove(cgroup) }
                if let containerFolder { ContainerRoot.remove(containerFolder) }
                if let listener = request.listenSocket { Glibc.close(listener) }
                failure = (error.description, false)
            }
        }
        let (reason, permanent) = failure
        InstanceLifecycle.spawnFailed(&record, reason: reason, spec: spec.restart, now: now, jitter: deps.jitter())
        if permanent && record.state != .fatal {
            record.state = .fatal
            record.deadline = nil
            record.reason = reason
        }
        entry.records[index] = record
        emit("spawn-failed", service: spec.name, index: index, message: reason)
        announce(record, service: spec.name, now: now)
    }

    /// Sends the stop signal, unless the instance was serving through the proxy: then it drains
    /// first (out of the rotation, in-flight work finishing) and `drainFinished` sends the signal.
    func signalStop(_ entry: inout ServiceEntry, index: Int, now: ContinuousClock.Instant) {
        guard let live = entry.live[index] else { return }
        if let backend = live.backend, let proxy = entry.spec.proxy, entry.published.contains(ObjectIdentifier(backend)),
           proxy.drainTimeout > .zero, var record = entry.records[index] {
            // Not published here: the pass that stops several instances at once must judge each
            // against the rotation as it stood before, and every caller reconciles (which
            // publishes) in this same actor turn, before the drain's first look at inFlight.
            record.draining = true
            record.deadline = now + proxy.drainTimeout + entry.spec.stop.timeout
            entry.records[index] = record
            startDrain(service: entry.spec.name, backend: backend, generation: live.generation, timeout: proxy.drainTimeout)
            return
        }
        sendStopSignal(entry, index: index)
    }

    func sendStopSignal(_ entry: ServiceEntry, index: Int) {
        guard let live = entry.live[index] else { return }
        let signal = entry.spec.stop.signal
        if let killed = deliverStopSignal(live, signal) {
            emit("stopping", service: entry.spec.name, index: index, message: killed, pid: live.handle.pid)
            return
        }
        emit("stopping", service: entry.spec.name, index: index,
             message: "sent \(SignalName.name(signal)) to pid \(live.handle.pid); SIGKILL to the group after \(DurationText.format(entry.spec.stop.timeout))",
             pid: live.handle.pid)
    }

    func killGroup(_ entry: inout ServiceEntry, index: Int) {
        guard let live = entry.live[index] else { return }
        if let cgroup = live.cgroup { deps.cgroups.kill(cgroup) }
        else { live.handle.signalGroup(SIGKILL); live.handle.signal(SIGKILL) }
        emit("stop-timeout", service: entry.spec.name, index: index,
             message: "still running after \(DurationText.format(entry.spec.stop.timeout)); killed every process in its cgroup", pid: live.handle.pid)
    }

    /// An exit report from the reaper.
    func processExited(service: String, index: Int, generation: Int, status: ExitStatus) {
        guard var entry = services[service] else { return }
        guard let live = entry.live[index], live.generation == generation, var record = entry.records[index] else {
            retiredExited(&entry, index: index, generation: generation, status: status)
            services[service] = entry
            reconcileSoon()
            return
        }
        let now = ContinuousClock.now
        entry.live[index] = nil
        if let backend = live.backend { endedRequests[service, default: 0] += backend.counters.requestsTotal }
        var reason: String?
        if let cgroup = live.cgroup, case .killed(SIGKILL, _) = status, deps.cgroups.oomKills(cgroup) > 0 {
            let limit = entry.spec.resources.memoryMax.map { " (memory_max \(ByteSize.format($0)))" } ?? ""
            reason = "oom-killed: out of memory\(limit)"
        }
        let wasStopping = record.state == .stopping
        InstanceLifecycle.exited(&record, status: status, reason: reason, spec: entry.spec.restart, now: now, jitter: deps.jitter())
        entry.records[index] = record
        services[service] = entry
        cleanUp(live, service: service)

        let (code, signal): (Int32?, String?) = switch status {
        case .exited(let code): (code, nil)
        case .killed(let signal, _): (nil, SignalName.name(signal))
        }
        if reason != nil {
            emit("oom-killed", service: service, index: index, message: reason!, pid: live.handle.pid, signal: signal)
        } else {
            emit(wasStopping ? "stopped" : "exited", service: service, index: index,
                 message: "pid \(live.handle.pid) \(status.description)", pid: live.handle.pid, exitCode: code, signal: signal)
        }
        if !wasStopping { announce(record, service: service, now: now) }
        reconcileSoon()
    }

    /// Says what follows an exit or a failed start: a retry after backoff, or giving up.
    private func announce(_ record: InstanceRecord, service: String, now: ContinuousClock.Instant) {
        switch record.state {
        case .backoff:
            let delay = record.deadline.map { $0 - now } ?? .zero
            emit("backoff", service: service, index: record.index, message: "restarting in \(DurationText.format(.milliseconds(Int((delay.seconds * 1000).rounded()))))" + (record.reason.map { " after: \($0)" } ?? ""))
        case .fatal:
            emit("fatal", service: service, index: record.index, message: record.reason ?? "gave up")
        case .exited:
            emit("not-restarted", service: service, index: record.index, message: "not restarted (restart.policy)")
        default:
            break
        }
    }

    /// After the main process ends, whatever it left in its cgroup (double-forked children) is
    /// killed and the group removed; shutdown waits for this.
    func cleanUp(_ live: LiveInstance, service: String) {
        live.readinessTask?.cancel()
        live.notifySocket?.close()
        cleanupsInFlight += 1
        let cgroups = deps.cgroups
        let reaper = deps.reaper
        let pid = live.handle.pid
        let cgroup = live.cgroup
        let containerFolder = live.containerFolder
        Task.detached {
            if let cgroup {
                cgroups.kill(cgroup)
                for attempt in 0..<250 {
                    if cgroups.remove(cgroup) { break }
                    reaper.sweepOrphans()
                    if attempt % 25 == 24 { cgroups.kill(cgroup) }
                    try? await Task.sleep(for: .milliseconds(attempt < 10 ? 2 : 20))
                }
            } else {
                // Without cgroups the process group is the best handle on what it left behind.
                Glibc.kill(-pid, SIGKILL)
            }
            // The writable layer goes once every process that could use it is gone, and before
            // the cleanup counts as finished: a shutdown waits for it.
            if let containerFolder { ContainerRoot.remove(containerFolder) }
            await self.cleanupFinished()
        }
    }

    private func cleanupFinished() {
        cleanupsInFlight -= 1
        resumeSatisfiedWaiters()
    }

    // MARK: Commands

    /// `start TARGET…`: stopped and fatal instances start again.
    public func start(_ targets: [String]) async throws(ControlError) -> [String] {
        try refuseWhileShuttingDown()
        let resolved = try resolve(targets)
        for (name, index) in resolved {
            guard var entry = services[name] else { continue }
            entry.intent.start(index)
            for key in index.map({ [$0] }) ?? Array(entry.records.keys) where entry.records[key] != nil {
                InstanceLifecycle.startRequested(&entry.records[key]!)
            }
            services[name] = entry
        }
        saveIntents()
        reconcile()
        await waitForSettled(resolved)
        return describe(resolved)
    }

    /// `stop TARGET…`: returns once the targets have stopped (or their stop timeout has passed).
    public func stop(_ targets: [String]) async throws(ControlError) -> [String] {
        let resolved = try resolve(targets)
        for (name, index) in resolved {
            guard var entry = services[name] else { continue }
            entry.intent.stop(index)
            services[name] = entry
            if index == nil { endCanaryOfStoppedService(name) }
        }
        saveIntents()
        reconcile()
        await waitForSettled(resolved)
        return describe(resolved)
    }

    /// `restart TARGET…`: stop then start each target; all in parallel.
    public func restart(_ targets: [String]) async throws(ControlError) -> [String] {
        try refuseWhileShuttingDown()
        let resolved = try resolve(targets)
        let now = ContinuousClock.now
        var rolling: [(String, [Int])] = []
        for (name, index) in resolved {
            guard var entry = services[name] else { continue }
            entry.intent.start(index)
            let indexes = index.map { [$0] } ?? Array(entry.records.keys.sorted())
            if entry.spec.proxy != nil { rolling.append((name, indexes)) }
            else { restartRecords(&entry, indexes, now: now) }
            services[name] = entry
        }
        saveIntents()
        reconcile()
        await withTaskGroup(of: Void.self) { group in
            for (name, indexes) in rolling { group.addTask { await self.rollingRestart(name, indexes: indexes) } }
        }
        await waitForSettled(resolved)
        return describe(resolved)
    }

    /// Stop-then-start for each slot: a slot with a process is signalled and comes back once it
    /// has exited; one without (backoff, fatal, exited, stopped) may start again at once.
    func restartRecords(_ entry: inout ServiceEntry, _ indexes: [Int], now: ContinuousClock.Instant) {
        for index in indexes {
            guard var record = entry.records[index] else { continue }
            let signal = InstanceLifecycle.stopRequested(&record, purpose: .restart, timeout: entry.spec.stop.timeout, now: now)
            if !signal { InstanceLifecycle.startRequested(&record) }
            entry.records[index] = record
            if signal { signalStop(&entry, index: index, now: now) }
        }
    }

    /// `scale SERVICE N`.
    public func scale(_ name: String, to count: Int) throws(ControlError) -> [String] {
        try refuseWhileShuttingDown()
        guard count >= 0, count <= 10_000 else { throw .badRequest("instances must be between 0 and 10000, not \(count)") }
        guard var entry = services[name], !entry.removing else { throw notFound(name) }
        try refuseScaleWhileAutoscaled(name)
        let from = entry.intent.desired
        entry.intent.desired = count
        services[name] = entry
        saveIntents()
        emit("scaled", service: name, message: "\(name): \(from) → \(count) instances (musterctl scale)")
        if from != count { markScaling(name, from: from, to: count, reason: "musterctl scale") }
        reconcile()
        return ["\(name): \(from) → \(count) instances"]
    }

    /// `signal SIG TARGET…`: to each target's main process, through its pidfd.
    public func signal(_ signal: Int32, _ targets: [String]) throws(ControlError) -> [String] {
        let resolved = try resolve(targets)
        var lines: [String] = []
        for (name, index) in resolved {
            guard let entry = services[name] else { continue }
            for i in index.map({ [$0] }) ?? entry.live.keys.sorted() {
                guard let live = entry.live[i] else { lines.append("\(name):\(i): not running"); continue }
                let sent = live.handle.signal(signal)
                lines.append("\(name):\(i): " + (sent ? "sent \(SignalName.name(signal)) to pid \(live.handle.pid)" : "pid \(live.handle.pid) already gone"))
            }
        }
        return lines
    }

    /// `reload [--dry-run]`: validates every manifest first; applies nothing if any is invalid.
    public func reload(dryRun: Bool) async throws(ControlError) -> (plan: ReloadPlan, applied: Bool) {
        try refuseWhileShuttingDown()
        let specs: [ServiceSpec]
        do { specs = try deps.loadManifests() }
        catch {
            emit("reload-failed", message: "reload refused, nothing changed: \(error.issues.count) problem(s): " + error.issues.map(\.description).joined(separator: "; "))
            throw ControlError(status: 422, code: "invalid_manifest",
                               message: "reload refused: \(error.issues.count) problem(s) in the manifests; nothing was changed",
                               details: error.issues.map(\.description))
        }
        let current = services.values.filter { !$0.removing && $0.canaryOf == nil }.map { diskSpecs[$0.spec.name] ?? $0.spec }
        let plan = ReloadPlan(current: current, next: specs)
        guard !dryRun else { return (plan, false) }
        deps.notify("RELOADING=1")
        defer { deps.notify("READY=1") }
        // Listeners first: an address that cannot be bound refuses the whole reload, unchanged.
        try await applyProxies(specs)
        let now = ContinuousClock.now
        var rolling: [(String, [Int])] = []
        var canaryStarts: [ServiceSpec] = []
        for spec in specs {
            if var entry = services[spec.name], !entry.removing {
                if plan.changed.contains(spec.name), wantsCanary(entry, spec) {
                    diskSpecs[spec.name] = spec
                    canaryStarts.append(spec)
                    continue
                }
                if plan.changed.contains(spec.name) {
                    recordDeployed(spec.name, spec, source: "reload")
                    // Before the spec is swapped: the old processes stop the way the old manifest says.
                    // Behind a proxy the restart is rolling, so the service keeps serving.
                    if spec.proxy != nil && entry.spec.proxy != nil { rolling.append((spec.name, entry.records.keys.sorted())) }
                    else { restartRecords(&entry, entry.records.keys.sorted(), now: now) }
                }
                if entry.spec.instances != spec.instances {
                    entry.intent.desired = spec.instances
                    entry.intent.manifestInstances = spec.instances
                }
                entry.spec = specAfterReload(spec.name, running: entry.spec, disk: spec, changed: plan.changed.contains(spec.name))
                services[spec.name] = entry
            } else if services[spec.name]?.removing == true {
                // Removed and re-added before its instances were gone: start afresh when they are.
                services[spec.name]!.removing = false
                services[spec.name]!.spec = spec
                services[spec.name]!.intent = ServiceIntent(desired: spec.instances)
                diskSpecs[spec.name] = spec
                recordDeployed(spec.name, spec, source: "reload")
            } else {
                services[spec.name] = ServiceEntry(spec: spec, intent: ServiceIntent(desired: spec.instances))
                diskSpecs[spec.name] = spec
                recordDeployed(spec.name, spec, source: "reload")
            }
        }
        for name in plan.removed {
            supersedeCanary(name)
            services[name]?.removing = true
            diskSpecs[name] = nil
        }
        syncAutoscalers(now: now)
        saveIntents()
        var summary: [String] = []
        if !plan.added.isEmpty { summary.append("added \(plan.added.joined(separator: ", "))") }
        if !plan.removed.isEmpty { summary.append("removed \(plan.removed.joined(separator: ", "))") }
        if !plan.changed.isEmpty { summary.append("restarting changed \(plan.changed.joined(separator: ", "))") }
        for r in plan.rescaled { summary.append("\(r.name): \(r.from) → \(r.to) instances") }
        if !plan.reconfigured.isEmpty { summary.append("proxy or health check changed for \(plan.reconfigured.joined(separator: ", "))") }
        emit("reloaded", message: summary.isEmpty ? "reloaded; nothing changed" : "reloaded: " + summary.joined(separator: "; "))
        reconcile()
        for (name, indexes) in rolling { Task { await self.rollingRestart(name, indexes: indexes) } }
        for spec in canaryStarts { startCanary(spec, source: "reload") }
        return (plan, true)
    }

    // MARK: Queries

    public func status(_ names: [String] = []) throws(ControlError) -> StatusResponse {
        defer { forgetRatesOfEndedInstances() }
        for name in names where services[name] == nil { throw notFound(name) }
        let now = ContinuousClock.now
        var result: [ServiceStatus] = []
        for name in services.keys.sorted() where names.isEmpty || names.contains(name) {
            guard let entry = services[name], entry.canaryOf == nil else { continue }
            let rows = instanceRows(name, entry: entry, now: now)
            result.append(ServiceStatus(name: name, desired: entry.removing ? 0 : entry.intent.desired,
                                        started: entry.intent.started, instances: rows, source: entry.spec.sourcePath,
                                        proxy: proxyStatus(name, entry: entry, now: now),
                                        autoscale: autoscaleSummary(name, entry: entry)))
            result[result.count - 1].requires = entry.spec.requires
            result[result.count - 1].wants = entry.spec.wants
            let verdict = dependencyVerdict(name)
            result[result.count - 1].waitingFor = entry.intent.started ? verdict.requiredDown + verdict.waitingFor : []
            result[result.count - 1].revision = histories[name]?.current
            result[result.count - 1].canary = canaryStatus(name, now: now)
        }
        return StatusResponse(services: result)
    }

    func instanceRows(_ name: String, entry: ServiceEntry, now: ContinuousClock.Instant) -> [InstanceStatus] {
        var rows: [InstanceStatus] = []
        for index in entry.records.keys.sorted() {
            let record = entry.records[index]!
            let live = entry.live[index]
            let usage = live?.usage?.read(now: now) ?? Cgroups.Usage()
            let uptime = record.state.hasProcess ? record.spawnedAt.map { (now - $0).seconds } : nil
            let waiting = waitReason(record, of: entry, name)
            rows.append(InstanceStatus(
                id: "\(name):\(index)", index: index, state: waiting == nil ? record.state.rawValue : "waiting", pid: record.pid,
                port: ports.port(of: "\(name):\(index)"), restarts: record.restarts, uptimeSeconds: uptime,
                cgroup: live?.cgroup?.displayPath, reason: waiting ?? record.reason, cpuSeconds: usage.cpuSeconds,
                cpuPercent: usage.cpuPercent, memoryBytes: usage.memoryBytes,
                user: entry.spec.user ?? Accounts.currentUserName))
            rows[rows.count - 1].ready = record.ready
            rows[rows.count - 1].health = record.health?.lastResult?.message
            if let container = entry.spec.container {
                if case .rootfs(let folder) = container.source {
                    rows[rows.count - 1].container = ContainerInstanceStatus(image: nil, rootfs: folder)
                } else {
                    // The image the process runs, which a reload may have moved on from.
                    rows[rows.count - 1].container = ContainerInstanceStatus(image: live?.containerImage ?? container.image?.manifestDigest, rootfs: nil)
                }
            }
            if entry.spec.proxy != nil {
                let backend = live?.backend
                rows[rows.count - 1].connections = backend?.counters.inFlight.load(ordering: .relaxed) ?? 0
                rows[rows.count - 1].rps = backend.map { rates.rate(ObjectIdentifier($0), total: $0.counters.requestsTotal, now: now) } ?? 0
                rows[rows.count - 1].ejectedUntil = backend.flatMap { ejectedUntil($0, owner: entry.canaryOf ?? name, now: now) }
            }
        }
        return rows
    }

    /// The log file of `service:index` (the first instance when no index is given).
    public func logFile(for target: String) throws(ControlError) -> String {
        guard let parsed = Target(target), parsed != .all else {
            throw .badRequest("\"\(target)\" is not a log target (try web or web:0)")
        }
        guard let (name, index) = try resolve([target]).first else { throw notFound(target) }
        if services[name]?.spec.logs.target == .journal {
            let identifier = LogSpec.journalIdentifier(service: name, index: index ?? 0)
            throw ControlError(status: 409, code: "logs_in_journal",
                               message: "\(name) logs to the journal ([logs] target = \"journal\"): journalctl -t \(identifier) (add -f to follow)")
        }
        return logPath(name, index ?? 0)
    }

    public var serviceNames: [String] { services.keys.sorted() }

    func logPath(_ service: String, _ index: Int) -> String { "\(deps.logDir)/\(service)/\(index).log" }

    // MARK: Helpers

    private func resolve(_ targets: [String]) throws(ControlError) -> [(String, Int?)] {
        guard !targets.isEmpty else { throw .badRequest("name at least one target: a service (web), an instance (web:1) or all") }
        var resolved: [(String, Int?)] = []
        for text in targets {
            guard let target = Target(text) else {
                throw .badRequest("\"\(text)\" is not a target (try web, web:1 or all)")
            }
            switch target {
            case .all:
                resolved += services.keys.sorted().filter { !services[$0]!.removing && services[$0]!.canaryOf == nil }.map { ($0, nil) }
            case .service(let name):
                guard services[name] != nil else { throw notFound(name) }
                resolved.append((name, nil))
            case .instance(let name, let index):
                guard let entry = services[name] else { throw notFound(name) }
                guard index < max(entry.intent.desired, (entry.records.keys.max() ?? -1) + 1) else {
                    throw .notFound("\(name) has \(entry.intent.desired) instance(s): \(name):0 to \(name):\(max(0, entry.intent.desired - 1))")
                }
                resolved.append((name, index))
            }
        }
        return resolved
    }

    func notFound(_ name: String) -> ControlError {
        let known = services.keys.sorted()
        var message = "no service named \"\(name)\""
        if let near = Suggestions.nearest(to: name, in: known) { message += " (did you mean \"\(near)\"?)" }
        else if !known.isEmpty { message += " (known: \(known.joined(separator: ", ")))" }
        return .notFound(message)
    }

    private func refuseWhileShuttingDown() throws(ControlError) {
        if shuttingDown { throw .shuttingDown() }
    }

    private func describe(_ resolved: [(String, Int?)]) -> [String] {
        var lines: [String] = []
        for (name, index) in resolved {
            guard let entry = services[name] else { continue }
            let indexes = index.map { [$0] } ?? entry.records.keys.sorted()
            if indexes.isEmpty { lines.append("\(name): no instances") }
            for i in indexes {
                guard let record = entry.records[i] else { lines.append("\(name):\(i): stopped"); continue }
                let waiting = waitReason(record, of: entry, name)
                var line = "\(name):\(i): \(waiting == nil ? record.state.rawValue : "waiting")"
                if let waiting { line += ": \(waiting)" }
                if let pid = record.pid { line += " (pid \(pid))" }
                if let reason = record.reason, record.state != .running { line += ": \(reason)" }
                lines.append(line)
            }
        }
        return lines
    }

    /// Waits until no targeted instance is between states (starting up or stopping), bounded by
    /// the longest stop timeout plus start time, so a command returns with a settled answer.
    func waitForSettled(_ resolved: [(String, Int?)]) async {
        let names = Set(resolved.map(\.0))
        var bound = resolved.compactMap { services[$0.0] }.map { $0.spec.stop.timeout + .seconds($0.spec.restart.startSeconds) }.max() ?? .zero
        // A stop that waits for dependents to stop first waits for their stop too.
        if resolved.contains(where: { !dependencyVerdict($0.0).heldBy.isEmpty }) {
            bound += services.values.map(\.spec.stop.timeout).max() ?? .zero
        }
        await waitUntil(timeout: bound + .seconds(2)) { supervisor in
            supervisor.settled(names: names, resolved: resolved)
        }
    }

    private func settled(names: Set<String>, resolved: [(String, Int?)]) -> Bool {
        for (name, index) in resolved {
            guard let entry = services[name] else { continue }
            let indexes = index.map { [$0] } ?? Array(entry.records.keys)
            for i in indexes {
                guard let record = entry.records[i] else { continue }
                if record.state == .stopping || record.state == .starting { return false }
                if record.state == .stopped && entry.intent.wants(i) && !shuttingDown && dependencyVerdict(name).mayStart { return false }
                // Held until the services that depend on it have stopped: not settled yet.
                if record.state.hasProcess && !entry.intent.wants(i) && dependencyVerdict(name).holdsStops { return false }
            }
        }
        return true
    }

    func waitUntil(timeout: Duration?, _ condition: @escaping @Sendable (isolated Supervisor) -> Bool) async {
        if condition(self) { return }
        let id = nextWaiterID
        nextWaiterID += 1
        if let timeout {
            Task {
                try? await Task.sleep(for: timeout)
                self.expireWaiter(id)
            }
        }
        await withCheckedContinuation { continuation in
            waiters.append(Waiter(id: id, isSatisfied: condition, continuation: continuation))
        }
    }

    private func expireWaiter(_ id: Int) {
        guard let position = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: position).continuation.resume()
    }

    private func resumeSatisfiedWaiters() {
        guard !waiters.isEmpty else { return }
        var remaining: [Waiter] = []
        for waiter in waiters {
            if waiter.isSatisfied(self) { waiter.continuation.resume() } else { remaining.append(waiter) }
        }
        waiters = remaining
    }

    func saveIntents() {
        guard let store = deps.store else { return }
        let intents = services.filter { !$0.value.removing && $0.value.canaryOf == nil }.mapValues(\.intent)
        do { try store.save(intents) }
        catch { logger.error("cannot save state", metadata: ["path": "\(store.path)", "error": "\(error)"]) }
    }

    func emit(_ kind: String, service: String? = nil, index: Int? = nil, message: String, pid: Int32? = nil,
                      exitCode: Int32? = nil, signal: String? = nil) {
        let instance = index.flatMap { i in service.map { "\($0):\(i)" } }
        let event = EventRecord(time: WallClock.now(), kind: kind, service: service, instance: instance, message: message,
                                pid: pid, exitCode: exitCode, signal: signal)
        deps.journal.record(event)
        var metadata: Logger.Metadata = ["event": "\(kind)"]
        if let service { metadata["service"] = "\(service)" }
        if let index { metadata["instance"] = "\(index)" }
        let level: Logger.Level = ["fatal", "oom-killed", "spawn-failed", "reload-failed"].contains(kind) ? .error
            : ["exited", "backoff", "stop-timeout", "orphan-stopped", "ejected"].contains(kind) ? .warning : .info
        // Messages that already start with their subject ("web: 2 → 5, …") are not prefixed again.
        let subject = instance ?? service ?? "musterd"
        logger.log(level: level, "\(message.hasPrefix(subject + ": ") ? message : subject + ": " + message)", metadata: metadata)
    }
}
