import ArgumentParser
import Glibc
import Hummingbird
import Logging
import MusterAPI
import MusterControl
import MusterCore
import MusterImage
import MusterRuntime
import MusterSystemd
import NIOPosix
import ServiceLifecycle

/// musterd: wiring only. Reads the config and manifests, sets up cgroups, the reaper and the log
/// pump, and runs the supervisor and the control API under one ServiceGroup.
@main
struct Musterd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "musterd",
        abstract: "Supervise services from TOML manifests, each instance in its own cgroup.",
        version: MusterVersion.current
    )

    @Option(name: .long, help: "The daemon configuration file.")
    var config = "/etc/muster/musterd.toml"

    @Flag(name: .long, help: "Validate the daemon configuration and every manifest, then exit 0 (valid) or 1.")
    var check = false

    func run() async throws {
        // Relative paths in the config resolve from its folder; anchor that folder for good.
        let config = realpath(self.config, nil).map { path in defer { free(path) }; return String(cString: path) } ?? self.config
        let settings: DaemonConfig
        let specs: [ServiceSpec]
        do {
            settings = try ManifestLoader.loadConfig(config)
            specs = try ManifestLoader.loadServices(in: settings.servicesDir, verifyImageLayers: check)
            if !check { try ContainerImages.unpack(specs, into: ImageStore(root: settings.stateDir + "/images")) }
        } catch {
            for issue in error.issues { printError(issue.description) }
            printError("musterd: \(error.issues.count) problem(s); nothing was started")
            throw ExitCode(1)
        }
        if check {
            for warning in Warnings.forSpecs(specs) { printError("warning: \(warning)") }
            print("ok: \(PathText.fileName(of: config)) and \(specs.count) service manifest(s) in \(settings.servicesDir) are valid")
            return
        }

        // Under systemd with stderr connected to the journal: structured entries through
        // sd_journal_send (MUSTER_SERVICE=, MUSTER_INSTANCE=, priority); otherwise plain text.
        let toJournal = Journal.isStandardErrorJournal
        LoggingSystem.bootstrap { label in
            if toJournal { return JournalLogHandler(label: label) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "musterd")

        for folder in [settings.stateDir, settings.logDir, PathText.directory(of: settings.controlSocket)] {
            do { try FileSystem.makeDirectories(folder) }
            catch {
                printError("musterd: \(error)")
                throw ExitCode(1)
            }
        }
        do {
            let limit = try OpenFileLimit.raise()
            if limit < 16_384 { logger.notice("open files limit is \(limit): enough for about \(limit / 6) instances; raise LimitNOFILE (systemd) or ulimit -Hn for more") }
        } catch {
            logger.warning("cannot raise the open files limit: \(error); instances and connections are limited by it")
        }
        if !Reaper.becomeSubreaper() { logger.warning("cannot become a child subreaper; orphans of services go to init") }
        let cgroups = Cgroups.setUp(root: settings.cgroupRoot)
        if let reason = cgroups.unavailableReason {
            logger.warning("cgroups are not available: \(reason). Instances run without cgroups; services that set [resources] limits will not start.")
        } else {
            logger.info("cgroups: \(cgroups.mode.rawValue) at \(cgroups.unifiedRoot ?? "")")
        }
        // Container instances' writable layers (the supervisor removes a killed musterd's at start).
        let containersDir = settings.stateDir + "/containers"
        let images = ImageStore(root: settings.stateDir + "/images")
        let journal = EventJournal(stateDir: settings.stateDir) { logger.error("\($0)") }
        let logs = LogPump { trouble in
            if trouble.failing { logger.error("\(trouble.message)") } else { logger.notice("\(trouble.message)") }
        }
        let servicesDir = settings.servicesDir
        // systemd's sockets: one named "control" is the control API's; the others are listeners
        // of services' proxies.
        var inherited = ListenSockets.take()
        let controlDescriptor = inherited.first { $0.name == "control" }?.fd
        inherited.removeAll { $0.name == "control" }
        let supervisor = Supervisor(specs: specs, dependencies: .init(
            cgroups: cgroups, reaper: Reaper.shared, logs: logs, journal: journal, store: StateStore(stateDir: settings.stateDir),
            logDir: settings.logDir, ports: settings.instancePorts, daemonEnvironment: ProcessEnvironment.current(),
            logger: logger,
            loadManifests: { () throws(ManifestErrors) -> [ServiceSpec] in
                let specs = try ManifestLoader.loadServices(in: servicesDir)
                try ContainerImages.unpack(specs, into: images)
                return specs
            },
            notify: { SystemdNotifier.notify($0) },
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            notifyDir: PathText.directory(of: settings.controlSocket) + "/notify",
            inheritedSockets: inherited,
            journalStream: { identifier, priority in
                Journal.stream(identifier: identifier, priority: priority).mapError { JournalUnavailable(message: $0.message) }
            },
            metricsInterval: settings.metricsInterval, containersDir: containersDir, images: images))
        let readiness = StartupReadiness { SystemdNotifier.notify("READY=1") }

        let dashboard = settings.dashboardListen.map { DashboardAccess(listen: $0) }
        let router = ControlAPI.router(supervisor: supervisor, journal: journal, settings: .init(
            authorizer: PeerAuthorizer(controlGroup: settings.controlGroup),
            cgroupMode: cgroups.mode.rawValue, cgroupRoot: cgroups.unifiedRoot,
            // The same path as SIGTERM from anyone else: one way to shut down.
            requestShutdown: { kill(getpid(), SIGTERM) },
            reloadWarnings: { Warnings.forSpecs((try? ManifestLoader.loadServices(in: servicesDir)) ?? []) },
            dashboard: dashboard))
        let socketPath = settings.controlSocket
        let controlGroup = settings.controlGroup
        var serverLogger = logger
        serverLogger.logLevel = .warning
        let controlServer: any Service
        if let controlDescriptor {
            // systemd made the socket (its SocketMode= and SocketGroup= stand for restrict()).
            controlServer = AdoptedSocketServer(descriptor: controlDescriptor, router: router, logger: serverLogger) {
                logger.info("control socket ready: the one systemd passed (FileDescriptorName=control)")
                readiness.arrive(.controlSocket)
            }
        } else {
            controlServer = Application(
                router: router,
                configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "musterd"),
                onServerRunning: { _ in
                    ControlSocket.restrict(path: socketPath, group: controlGroup, logger: logger)
                    logger.info("control socket ready at \(socketPath)")
                    readiness.arrive(.controlSocket)
                },
                logger: serverLogger)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: controlServer), .init(service: SupervisorService(supervisor: supervisor, logger: logger, readiness: readiness)),
        ]
        if let address = settings.metricsListen {
            services.append(.init(service: MetricsEndpoint.application(address: address, supervisor: supervisor, logger: serverLogger)))
            logger.info("serving /metrics on http://\(address)/metrics")
        }
        if let address = settings.dashboardListen, let dashboard {
            services.append(.init(service: Application(
                router: DashboardRoutes.router(supervisor: supervisor, journal: journal, access: dashboard),
                configuration: .init(address: .hostname(address.host, port: address.port), serverName: "musterd"),
                logger: serverLogger)))
            logger.info("serving the dashboard on \(dashboard.baseURL)/ (`musterctl dashboard` prints an address that signs in)")
        }
        let group = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: serverLogger))
        try await group.run()
        logger.info("musterd stopped")
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
