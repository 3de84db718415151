import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MusterAPI
import MusterControl
import MusterCore
import MusterRuntime
import NIOCore
import Testing

/// The dashboard's listener in-process, on a real Supervisor: tokens come from the control API's
/// `POST /v1/dashboard/login` as `musterctl dashboard` gets them, and every action is tried with a
/// good, a wrong, an expired and a missing token and from another site.
@Suite("dashboard routes")
struct DashboardRouteTests {
    /// The authority Hummingbird's router test client gives every request.
    static let host = "localhost"

    /// Runs `body` with the control API (`api`) and the dashboard's listener (`page`) on one supervisor.
    static func run(_ body: @escaping @Sendable (RouteHarness, APIClient, any TestClientProtocol) async throws -> Void) async throws {
        try await RouteHarness.run(specs: [RouteHarness.spec("web")]) { harness, api in
            let app = Application(router: DashboardRoutes.router(supervisor: harness.supervisor, journal: harness.journal, access: harness.dashboard))
            try await app.test(.router) { page in try await body(harness, api, page) }
        }
    }

    static func token(_ api: APIClient, _ body: String = "{}") async throws -> DashboardLoginResponse {
        try await api.call(.post, "/v1/dashboard/login", route: "/v1/dashboard/login", body: body, expect: 200).decode(DashboardLoginResponse.self)
    }

    /// A POST as the dashboard's own page sends it.
    static func act(_ page: any TestClientProtocol, _ path: String, _ body: String, cookie: String?,
                    origin: String? = "http://\(host)", fetchSite: String? = "same-origin") async throws -> (status: Int, body: String) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let cookie { headers[.cookie] = cookie }
        if let origin { headers[.origin] = origin }
        if let fetchSite { headers[HTTPField.Name("Sec-Fetch-Site")!] = fetchSite }
        let response = try await page.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
        return (Int(response.status.code), String(buffer: response.body))
    }

    static func desired(_ harness: RouteHarness) async throws -> Int {
        try await harness.supervisor.status().services[0].desired
    }

    @Test("the control API issues a token; /login turns it into an HttpOnly, SameSite=Strict cookie")
    func loginSetsTheCookie() async throws {
        try await Self.run { _, api, page in
            let login = try await Self.token(api)
            #expect(login.url == "http://127.0.0.1:9090/login?token=\(login.token)")
            #expect(login.token.count == 64 && login.token.allSatisfy(\.isHexDigit))
            #expect(abs(login.expiresAt - (WallClock.now() + 12 * 3600)) < 60)
            let response = try await page.execute(uri: "/login?token=\(login.token)", method: .get)
            #expect(response.status == .seeOther)
            #expect(response.headers[.location] == "/")
            let cookie = try #require(response.headers[.setCookie])
            #expect(cookie.hasPrefix("muster_dashboard=\(login.token)"))
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Strict"))
            let refused = try await page.execute(uri: "/login?token=\(String(repeating: "0", count: 64))", method: .get)
            #expect(refused.status == .unauthorized)
            #expect(refused.headers[.setCookie] == nil)
        }
    }

    @Test("a scale with the token happens; without one, or with a wrong one, it gets 401 and changes nothing")
    func scaleNeedsTheToken() async throws {
        try await Self.run { harness, api, page in
            let login = try await Self.token(api)
            let missing = try await Self.act(page, "/v1/services/web/scale", #"{"instances": 3}"#, cookie: nil)
            #expect(missing.status == 401, "\(missing.body)")
            #expect(missing.body.contains("musterctl dashboard"))
            let wrong = try await Self.act(page, "/v1/services/web/scale", #"{"instances": 3}"#, cookie: "muster_dashboard=\(String(login.token.reversed()))")
            #expect(wrong.status == 401, "\(wrong.body)")
            #expect(try await Self.desired(harness) == 1)

            let good = try await Self.act(page, "/v1/services/web/scale", #"{"instances": 3}"#, cookie: "muster_dashboard=\(login.token)")
            #expect(good.status == 200, "\(good.body)")
            #expect(try await Self.desired(harness) == 3)
        }
    }

    @Test("an expired token gets 401, and a new one works")
    func expiredToken() async throws {
        try await Self.run { harness, api, page in
            let login = try await Self.token(api, #"{"valid_for": "10m"}"#)
            harness.passTime(601)
            let expired = try await Self.act(page, "/v1/services/web/scale", #"{"instances": 2}"#, cookie: "muster_dashboard=\(login.token)")
            #expect(expired.status == 401, "\(expired.body)")
            #expect(expired.body.contains("expired"))
            #expect(try await Self.desired(harness) == 1)
            let fresh = try await Self.token(api)
            let good = try await Self.act(page, "/v1/services/web/scale", #"{"instances": 2}"#, cookie: "muster_dashboard=\(fresh.token)")
            #expect(good.status == 200, "\(good.body)")
        }
    }

    /// Origin and Sec-Fetch-Site as a page of another site (or a data: URL, Origin "null") sends them.
    static let crossSiteHeaders: [(origin: String?, fetchSite: String?)] = [
        ("http://evil.example", "cross-site"), ("http://evil.example", nil), (nil, "cross-site"), (nil, "same-site"), ("null", nil),
    ]

    @Test("a request from another site gets 403 even with a good cookie")
    func crossSiteIsRefused() async throws {
        try await Self.run { harness, api, page in
            let login = try await Self.token(api)
            for (origin, fetchSite) in Self.crossSiteHeaders {
                for (path, body) in [("/v1/services/web/scale", #"{"instances": 0}"#), ("/v1/stop", #"{"targets": ["web"]}"#),
                                     ("/v1/restart", #"{"targets": ["web"]}"#), ("/v1/start", #"{"targets": ["web"]}"#)] {
                    let refused = try await Self.act(page, path, body, cookie: "muster_dashboard=\(login.token)", origin: origin, fetchSite: fetchSite)
                    #expect(refused.status == 403, "\(path) from \(origin ?? "-") / \(fetchSite ?? "-"): \(refused.body)")
                    #expect(refused.body.contains("cross_site"))
                }
            }
            let status = try await harness.supervisor.status().services[0]
            #expect(status.desired == 1 && status.started)
        }
    }

    @Test("stop, start and restart with the token act on the service")
    func otherActions() async throws {
        try await Self.run { harness, api, page in
            let cookie = "muster_dashboard=\(try await Self.token(api).token)"
            let stopped = try await Self.act(page, "/v1/stop", #"{"targets": ["web"]}"#, cookie: cookie)
            #expect(stopped.status == 200, "\(stopped.body)")
            #expect(try await harness.supervisor.status().services[0].started == false)
            let started = try await Self.act(page, "/v1/start", #"{"targets": ["web"]}"#, cookie: cookie)
            #expect(started.status == 200, "\(started.body)")
            let running = await RouteHarness.eventually { try await harness.supervisor.status().services[0].instances.first?.state == "running" }
            #expect(running)
            let restarted = try await Self.act(page, "/v1/restart", #"{"targets": ["web"]}"#, cookie: cookie)
            #expect(restarted.status == 200, "\(restarted.body)")
            let bad = try await Self.act(page, "/v1/services/web/scale", #"{"instances": "many"}"#, cookie: cookie)
            #expect(bad.status == 400, "\(bad.body)")
        }
    }

    @Test("serves the page, its script and style, and the read-only JSON, with headers that forbid framing")
    func pageAndReads() async throws {
        try await Self.run { _, _, page in
            for (path, type) in [("/", "text/html"), ("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css"),
                                 ("/v1/status", "application/json"), ("/v1/history?service=web", "application/json"),
                                 ("/v1/events?limit=5", "application/json"), ("/v1/logs/web:0?lines=5", "text/plain")] {
                let response = try await page.execute(uri: path, method: .get)
                #expect(response.status == .ok, "\(path): \(String(buffer: response.body))")
                #expect(response.headers[.contentType]?.hasPrefix(type) == true, "\(path): \(response.headers[.contentType] ?? "")")
                #expect(response.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
                #expect(response.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            }
            let html = String(buffer: try await page.execute(uri: "/", method: .get).body)
            // Everything the page loads comes from musterd.
            #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"))
            let unknown = try await page.execute(uri: "/v1/services/nope/scale", method: .get)
            #expect(unknown.status == .methodNotAllowed)
            let history = try JSONDecoder().decode(MetricsHistoryResponse.self, from: Data(buffer: try await page.execute(uri: "/v1/history", method: .get).body))
            #expect(history.services.map(\.name) == ["web"])
        }
    }

    @Test("the control API says how to turn the dashboard on when it is off")
    func dashboardOff() async throws {
        try await RouteHarness.run(specs: [RouteHarness.spec("web")], dashboard: false) { _, api in
            let off = try await api.call(.post, "/v1/dashboard/login", route: "/v1/dashboard/login", body: "{}", expect: 409)
            #expect(off.errorCode == "dashboard_off")
            #expect(off.message.contains("dashboard_listen"))
            let bad = try await api.call(.post, "/v1/dashboard/login", route: "/v1/dashboard/login", body: #"{"valid_for": "forever"}"#, expect: 409)
            #expect(bad.errorCode == "dashboard_off")
        }
    }

    @Test("valid_for is a short plain duration, cut to 1s to 720h; null means the default")
    func validFor() async throws {
        try await RouteHarness.run(specs: [RouteHarness.spec("web")]) { _, api in
            for text in ["forever", " 5m", "5 m", "1.5.2s", "123456789s", ""] {
                let bad = try await api.call(.post, "/v1/dashboard/login", route: "/v1/dashboard/login", body: #"{"valid_for": "\#(text)"}"#, expect: 400)
                #expect(bad.message.contains("valid_for"), "\(text)")
            }
            let now = WallClock.now()
            for (text, seconds) in [("0s", 1.0), ("0.5s", 1.0), ("30m", 1800.0), ("9999h", 720.0 * 3600), ("null", 12.0 * 3600)] {
                let body = text == "null" ? #"{"valid_for": null}"# : #"{"valid_for": "\#(text)"}"#
                let login = try await api.call(.post, "/v1/dashboard/login", route: "/v1/dashboard/login", body: body, expect: 200)
                    .decode(DashboardLoginResponse.self)
                #expect(abs(login.expiresAt - now - seconds) < 30, "\(text): \(login.expiresAt - now) s")
            }
        }
    }
}
