import FoundationEssentials
import HTTPTypes
import Hummingbird
import MusterAPI
import MusterCore
import MusterRuntime
import ServiceLifecycle

/// `dashboard_listen`: the web page at `/`, its script and style, the live feed, read-only JSON
/// (the control API's shapes), and the actions, which need a token issued over the control
/// socket (`musterctl dashboard`) held in an HttpOnly, SameSite=Strict cookie.
public enum DashboardRoutes {
    static let cookieName = "muster_dashboard"

    /// Every route the listener answers, as "METHOD /path".
    public static let routes = [
        "GET /", "GET /dashboard.js", "GET /dashboard.css", "GET /favicon.ico", "GET /login", "POST /logout", "GET /live",
        "GET /v1/status", "GET /v1/history", "GET /v1/events", "GET /v1/logs/{target}",
        "POST /v1/services/{name}/scale", "POST /v1/start", "POST /v1/stop", "POST /v1/restart",
    ]

    public static func router(supervisor: Supervisor, journal: EventJournal, access: DashboardAccess) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: DashboardMiddleware())

        router.get("/") { _, _ in asset(DashboardPage.html, type: "text/html; charset=utf-8") }
        router.get("dashboard.js") { _, _ in asset(DashboardScript.source, type: "text/javascript; charset=utf-8") }
        router.get("dashboard.css") { _, _ in asset(DashboardPage.style, type: "text/css; charset=utf-8") }
        // Browsers ask for it on every page; no content, rather than a 404 in their console.
        router.get("favicon.ico") { _, _ in Response(status: .noContent) }
        router.get("login") { request, _ in
            let token = request.uri.queryParameters.get("token") ?? ""
            guard let expires = access.expiry(of: token) else {
                return asset(DashboardPage.loginRefused, type: "text/html; charset=utf-8", status: .unauthorized)
            }
            // The token leaves the address bar at once; from here on only the cookie carries it.
            var response = Response(status: .seeOther, headers: [.location: "/"])
            response.setCookie(Cookie(name: cookieName, value: token, maxAge: max(1, Int(expires - WallClock.now())),
                                      path: "/", httpOnly: true, sameSite: .strict))
            return response
        }
        router.post("logout") { _, _ in
            var response = Response(status: .seeOther, headers: [.location: "/"])
            response.setCookie(Cookie(name: cookieName, value: "", maxAge: 0, path: "/", httpOnly: true, sameSite: .strict))
            return response
        }
        router.get("live") { request, _ in
            // The listener is shut down before the supervisor (ServiceGroup goes in reverse), and it
            // waits for open requests: an open page must end its feed on the listener's own
            // graceful shutdown, or it would hold up musterd's stop.
            DashboardLiveFeed.response(supervisor: supervisor, journal: journal, signedInUntil: access.expiry(of: token(request))) {
                Task.isShuttingDownGracefully || Task.isCancelled
            }
        }

        let v1 = router.group("v1")
        v1.get("status") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: try await supervisor.status().jsonBytes())))
        }
        v1.get("history") { request, _ in
            let since = try ControlAPI.parseSince(request.uri.queryParameters.get("since"))
            return JSONBody.response(try await supervisor.metricsHistory(services: request.uri.queryParameters.getAll("service"), since: since))
        }
        v1.get("events") { request, _ in
            let limit = try ControlAPI.parseCount(request.uri.queryParameters.get("limit"), name: "limit", default: DashboardLiveFeed.recentEvents)
            return JSONBody.response(EventsResponse(events: journal.recent(limit: limit)))
        }
        v1.get("logs/:target") { request, context in
            let path = try await supervisor.logFile(for: context.parameters.get("target") ?? "")
            let lines = try ControlAPI.parseCount(request.uri.queryParameters.get("lines"), name: "lines", default: 50)
            return LogTail.response(path: path, lines: min(lines, 1000), follow: false) { true }
        }
        v1.post("services/:name/scale") { request, context in
            try authorize(request, access)
            let body = try await ControlAPI.decode(ScaleRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.scale(context.parameters.get("name") ?? "", to: body.instances)))
        }
        v1.post("start") { request, context in
            try authorize(request, access)
            let body = try await ControlAPI.decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.start(body.targets)))
        }
        v1.post("stop") { request, context in
            try authorize(request, access)
            let body = try await ControlAPI.decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.stop(body.targets)))
        }
        v1.post("restart") { request, context in
            try authorize(request, access)
            let body = try await ControlAPI.decode(TargetsRequest.self, request, context)
            return JSONBody.response(ActionResponse(results: try await supervisor.restart(body.targets)))
        }
        return router
    }

    static func token(_ request: Request) -> String? {
        request.cookies[cookieName]?.value
    }

    /// Throws the 403 or 401 an action gets when `DashboardRequestCheck` refuses it; runs before
    /// the body is read, so a refused action changes nothing.
    static func authorize(_ request: Request, _ access: DashboardAccess) throws {
        let token = token(request)
        let verdict = DashboardRequestCheck.action(
            host: request.head.authority, origin: request.headers[.origin],
            fetchSite: request.headers[HTTPField.Name("Sec-Fetch-Site")!], hasToken: !(token ?? "").isEmpty,
            tokenExpiry: access.expiry(of: token))
        switch verdict {
        case .allowed: return
        case .crossSite(let why): throw ControlError(status: 403, code: "cross_site", message: why)
        case .unauthorized(let why): throw ControlError(status: 401, code: "unauthorized", message: why)
        }
    }

    private static func asset(_ text: String, type: String, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.writeString(text)
        return Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: buffer))
    }
}

/// The control API's error shape for every failure, and the headers that keep the page from
/// being framed by another site (clickjacking the action buttons) or leaking the login address.
struct DashboardMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = ControlMiddleware.errorResponse(error, request: request) { ControlAPI.methods(allowedOn: $0, in: DashboardRoutes.routes) }
        }
        response.headers[.contentSecurityPolicy] = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}
