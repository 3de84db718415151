import FoundationEssentials
import Glibc
import Hummingbird
import MusterAPI
import MusterCore
import MusterRuntime
import MusterText

/// The control API's routes, all under `/v1/`, as docs/api/openapi.json describes them.
public enum ControlAPI {
    public struct Settings: Sendable {
        public var authorizer: PeerAuthorizer
        public var cgroupMode: String
        public var cgroupRoot: String?
        /// Asks the daemon to shut down (after the response is sent).
        public var requestShutdown: @Sendable () -> Void
        /// Extra warnings a reload reports, such as services that will run as root.
        public var reloadWarnings: @Sendable () -> [String]
        /// The web dashboard's tokens; nil when `dashboard_listen` is not set.
        public var dashboard: DashboardAccess?

        public init(authorizer: PeerAuthorizer, cgroupMode: String, cgroupRoot: String?,
                    requestShutdown: @escaping @Sendable () -> Void,
                    reloadWarnings: @escaping @Sendable () -> [String] = { [] },
                    dashboard: DashboardAccess? = nil) {
            self.dashboard = dashboard
            self.authorizer = authorizer
            self.cgroupMode = cgroupMode
            self.cgroupRoot = cgroupRoot
            self.requestShutdown = requestShutdown
            self.reloadWarnings = reloadWarnings
        }
    }

    /// Every route the server answers, as "METHOD /path"; tests compare it with the OpenAPI document.
    public static let routes = [
        "GET /v1/version", "GET /v1/status", "POST /v1/start", "POST /v1/stop", "POST /v1/restart",
        "POST /v1/signal", "POST /v1/services/{name}/scale",
        "GET /v1/services/{name}/autoscale", "POST /v1/services/{name}/autoscale/pause", "POST /v1/services/{name}/autoscale/resume",
        "POST /v1/services/{name}/deploy", "POST /v1/services/{name}/rollback", "GET /v1/services/{name}/history", "GET /v1/history", "POST /v1/reload", "GET /v1/logs", "GET /v1/logs/{target}",
        "GET /v1/events", "POST /v1/dashboard/login", "POST /v1/shutdown",
    ]

    /// The methods `routes` serve on `path` ("/v1/services/web/scale" → ["POST"]); a `{…}` in
    /// a route matches one path segment.
    static func methods(allowedOn path: String, in routes: [String] = routes) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        var methods: [String] = []
        for route in routes {
            let parts = route.split(separator: " ")
            let template = parts[1].split(separator: "/", omittingEmptySubsequences: false)
            guard template.count == segments.count else { continue }
            let matches = zip(template, segments).allSatisfy { pattern, segment in
                pattern.hasPrefix("{") ? !segment.isEmpty : pattern == segment
            }
            if matches && !methods.contains(String(parts[0])) { methods.append(String(parts[0])) }
        }
        return methods.sorted()
    }

    public static func router(supervisor: Supervisor, journal: EventJournal, settings: Settings) -> Router<ControlContext> {
        let router = Router(context: ControlContext.self)
        router.add(middleware: ControlMiddleware(authorizer: settings.authorizer))
        let v1 = router.group("v1")

        v1.get("version") { _, _ in
            JSONBody.response(VersionResponse(version: MusterVersion.current, pid: getpid(),
                                              cgroupMode: settings.cgroupMode, cgroupRoot: settings.cgroupRoot))
        }
        v1.get("status") { request, _ in
            let names = request.uri.queryParameters.getAll("service")
            let status = try await supervisor.status(names)
            // `musterctl status` asks for the table: rendered here, it skips encoding and decoding
            // the whole document (700 KB at 2,000 instances).
            if prefersText(request) {
                return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: StatusTable.render(status) + "\n")))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: status.jsonBytes())))
        }
        v1.post("start") { request, context in
            let body = try await decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.start(body.targets)))
        }
        v1.post("stop") { request, context in
            let body = try await decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.stop(body.targets)))
        }
        v1.post("restart") { request, context in
            let body = try await decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.restart(body.targets)))
        }
        v1.post("signal") { request, context in
            let body = try await decode(SignalRequest.self, request, context)
            guard let number = SignalName.number(body.signal) else {
                throw ControlError.badRequest("\"\(body.signal)\" is not a signal (try TERM, HUP, USR1 or 15)")
            }
            return JSONBody.response(ActionResponse(results: try await supervisor.signal(number, body.targets)))
        }
        v1.post("services/:name/scale") { request, context in
            let name = context.parameters.get("name") ?? ""
            let body = try await decode(ScaleRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.scale(name, to: body.instances)))
        }
        v1.get("services/:name/autoscale") { _, context in
            JSONBody.response(try await supervisor.autoscaleReport(context.parameters.get("name") ?? ""))
        }
        v1.post("services/:name/autoscale/pause") { _, context in
            JSONBody.response(ActionResponse(results: try await supervisor.setAutoscalePaused(context.parameters.get("name") ?? "", paused: true)))
        }
        v1.post("services/:name/autoscale/resume") { _, context in
            JSONBody.response(ActionResponse(results: try await supervisor.setAutoscalePaused(context.parameters.get("name") ?? "", paused: false)))
        }
        v1.post("services/:name/deploy") { _, context in
            JSONBody.response(try await supervisor.deploy(context.parameters.get("name") ?? ""))
        }
        v1.post("services/:name/rollback") { request, context in
            let body = try await decode(RollbackRequest.self, request, context)
            return JSONBody.response(try await supervisor.rollback(context.parameters.get("name") ?? "", to: body.revision))
        }
        v1.get("services/:name/history") { _, context in
            JSONBody.response(try await supervisor.history(context.parameters.get("name") ?? ""))
        }
        v1.get("history") { request, _ in
            let since = try parseSince(request.uri.queryParameters.get("since"))
            return JSONBody.response(try await supervisor.metricsHistory(services: request.uri.queryParameters.getAll("service"), since: since))
        }
        v1.post("reload") { request, _ in
            let dryRun = ["1", "true", "yes"].contains(request.uri.queryParameters.get("dry_run") ?? "")
            let (plan, applied) = try await supervisor.reload(dryRun: dryRun)
            return JSONBody.response(ReloadResponse(
                applied: applied, added: plan.added, removed: plan.removed, changed: plan.changed,
                rescaled: plan.rescaled.map { .init(name: $0.name, from: $0.from, to: $0.to) },
                unchanged: plan.unchanged, warnings: settings.reloadWarnings()))
        }
        v1.get("logs") { request, _ in
            let since = try parseSince(request.uri.queryParameters.get("since"))
            // A time bound without a count means every line since then.
            let lines = try parseCount(request.uri.queryParameters.get("lines"), name: "lines", default: since == nil ? 50 : 1_000_000)
            let follow = ["1", "true", "yes"].contains(request.uri.queryParameters.get("follow") ?? "")
            return await LogInterleave.response(sources: { await supervisor.logSources() }, lines: lines, since: since, follow: follow) {
                await supervisor.isShuttingDown
            }
        }
        v1.get("logs/:target") { request, context in
            let target = context.parameters.get("target") ?? ""
            let path = try await supervisor.logFile(for: target)
            let since = try parseSince(request.uri.queryParameters.get("since"))
            let lines = try parseCount(request.uri.queryParameters.get("lines"), name: "lines", default: since == nil ? 50 : 1_000_000)
            let follow = ["1", "true", "yes"].contains(request.uri.queryParameters.get("follow") ?? "")
            return LogTail.response(path: path, lines: lines, since: since, follow: follow) { await supervisor.isShuttingDown }
        }
        v1.get("events") { request, _ in
            let limit = try parseCount(request.uri.queryParameters.get("limit"), name: "limit", default: EventJournal.capacity)
            let follow = ["1", "true", "yes"].contains(request.uri.queryParameters.get("follow") ?? "")
            let recent = journal.recent(limit: limit)
            guard follow else { return JSONBody.response(EventsResponse(events: recent)) }
            // One JSON object a line: what already happened, then each new event as it happens.
            let stream = journal.follow()
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                for event in recent { try await writer.write(ndjson(event)) }
                for await event in stream { try await writer.write(ndjson(event)) }
                try await writer.finish(nil)
            })
        }
        v1.post("dashboard/login") { request, context in
            // Past the peer-credential check: whoever gets here may run the daemon anyway.
            guard let dashboard = settings.dashboard else {
                throw ControlError(status: 409, code: "dashboard_off",
                                   message: "the dashboard is off: set dashboard_listen = \"127.0.0.1:9090\" under [daemon] in musterd.toml and restart musterd")
            }
            let body = try await decode(DashboardLoginRequest.self, request, context)
            var lifetime = DashboardTokens.defaultLifetime
            if let text = body.validFor {
                guard text.count <= 8, DurationText.isPlain(text), let value = DurationText.parse(text) else {
                    throw ControlError.badRequest("valid_for must be a duration of at most 8 characters such as 30m, 12h or 720h, not \"\(text)\"")
                }
                // Cut to the allowed range rather than refused: the answer's expires_at says what was granted.
                lifetime = min(max(value, .seconds(1)), DashboardTokens.maximumLifetime)
            }
            let (token, expires) = dashboard.issue(lifetime: lifetime)
            return JSONBody.response(DashboardLoginResponse(url: "\(dashboard.baseURL)/login?token=\(token)", token: token, expiresAt: expires))
        }
        v1.post("shutdown") { _, _ in
            guard await !supervisor.isShuttingDown else { throw ControlError.shuttingDown() }
            settings.requestShutdown()
            return JSONBody.response(ActionResponse(results: ["musterd is stopping every instance and will exit"]), status: .accepted)
        }
        return router
    }

    /// `Accept` names text/plain before (or without) JSON: the status table instead of the document.
    static func prefersText(_ request: Request) -> Bool {
        guard let accept = request.headers[.accept]?.lowercased() else { return false }
        let types = accept.split(separator: ",").map { $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) ?? "" }
        guard let text = types.firstIndex(of: "text/plain") else { return false }
        let json = types.firstIndex { $0 == "application/json" || $0 == "*/*" || $0 == "application/*" }
        return json.map { text < $0 } ?? true
    }

    static func decode<T: Decodable, Context: RequestContext>(_ type: T.Type, _ request: Request, _ context: Context) async throws -> T {
        var request = request
        let body = try await request.collectBody(upTo: 1 << 20)
        guard body.readableBytes > 0 else { throw ControlError.badRequest("this endpoint takes a JSON body") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw ControlError.badRequest("the request body is not what this endpoint takes: \(ControlMiddleware.describe(error))")
        }
    }

    static func parseCount(_ text: String?, name: String, default value: Int) throws -> Int {
        guard let text else { return value }
        guard let count = Int(text), count >= 0, count <= 1_000_000 else {
            throw ControlError.badRequest("\(name) must be a whole number from 0 to 1000000, not \"\(text)\"")
        }
        return count
    }

    /// `since=10m`: the time that long ago, in seconds since the epoch.
    static func parseSince(_ text: String?) throws -> Double? {
        guard let text else { return nil }
        guard let duration = DurationText.parse(text) else {
            throw ControlError.badRequest("since must be a duration such as 90s, 10m or 2h, not \"\(text)\"")
        }
        return WallClock.now() - duration.seconds
    }

    private static func ndjson(_ event: EventRecord) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeBytes((try? JSONBody.encoder.encode(event)) ?? Data())
        buffer.writeString("\n")
        return buffer
    }
}
