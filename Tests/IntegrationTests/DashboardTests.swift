import Foundation
import MusterAPI
import Testing

/// The web dashboard of a live musterd in headless Chromium (Fixtures/dashboard_browser.py drives
/// it with Selenium). The browser side checks what the page shows; this side checks what the
/// daemon did. Screenshots of each step go under the run's output (MUSTER_TEST_OUTPUT, default
/// .build/test-output/), also when a step fails.
@Suite(.serialized) struct DashboardTests {
    static let hasBrowser = ["/usr/bin/chromium", "/usr/bin/chromedriver"].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
        && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/selenium")

    static let output = ProcessInfo.processInfo.environment["MUSTER_TEST_OUTPUT"]
        ?? URL(fileURLWithPath: DaemonHarness.binDir).deletingLastPathComponent().appendingPathComponent("test-output").path

    static func services(proxyPort: Int) -> [String: String] {
        [
            "web": ProxyTests.service(instances: 2, port: proxyPort),
            "worker": """
                command = ["/bin/sh", "-c", "while true; do echo tick $(date +%s); sleep 0.3; done"]
                [restart]
                start_seconds = 0.2
                [stop]
                timeout = "2s"
                """,
        ]
    }

    /// Starts musterd with the dashboard on a free port and both services up, runs `scenario` in
    /// the browser, and hands its JSON to `check` with the daemon still running.
    static func run(_ scenario: String, check: (DaemonHarness, [String: Any]) throws -> Void = { _, _ in }) async throws {
        let proxyPort = ProxyTests.freePort()
        let dashboardPort = ProxyTests.freePort()
        try await DaemonHarness.with(services: services(proxyPort: proxyPort), daemonConfig: "dashboard_listen = \"127.0.0.1:\(dashboardPort)\"") { d in
            try await d.start()
            let up = await eventually(20) { try d.running("web", count: 2) && d.running("worker", count: 1) }
            try #require(up, "services did not come up: \(d.ctl("status").stdout)")
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let profile = d.directory.appendingPathComponent("chromium-profile").path
            let result = d.run("/usr/bin/python3", [
                "\(ProxyTests.fixtures)/dashboard_browser.py", scenario, "--url", "http://127.0.0.1:\(dashboardPort)",
                "--musterctl", "\(DaemonHarness.binDir)/musterctl", "--socket", d.socket, "--output", output,
                "--profile", profile, "--proxy-port", String(proxyPort),
            ])
            try #require(result.code == 0, "the browser's \(scenario) failed (screenshots in \(output)):\n\(result.stderr)")
            let measured = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            try check(d, measured)
        }
    }

    static func web(_ d: DaemonHarness) throws -> ServiceStatus? {
        try d.status().services.first { $0.name == "web" }
    }

    @Test(.enabled(if: isRoot && hasBrowser)) func pageShowsTheServicesAndACLIScaleWithinTwoSeconds() async throws {
        try await Self.run("live") { d, measured in
            let web = try Self.web(d)
            #expect(web?.desired == 3)
            print("dashboard: musterctl scale shown on the page after \(measured["cli_scale_shown_after_seconds"] ?? "?") s")
        }
    }

    @Test(.enabled(if: isRoot && hasBrowser)) func scaleClickedWithTheTokenHappensAndAForgedFormDoesNot() async throws {
        try await Self.run("signed-in") { d, _ in
            let web = try #require(try Self.web(d))
            #expect(web.desired == 1, "the page's scale to 1 should have happened")
            #expect(web.started, "the forged form's stop must not have happened")
        }
    }

    @Test(.enabled(if: isRoot && hasBrowser)) func scaleWithoutAGoodTokenIsRefused() async throws {
        try await Self.run("refused") { d, _ in
            let web = try Self.web(d)
            #expect(web?.desired == 2, "no refused scale may change the count")
            let events = d.ctl("events").stdout
            #expect(!events.contains("to 4"), "\(events)")
        }
    }

    @Test(.enabled(if: isRoot && hasBrowser)) func chartHasPointsAndAScalingMark() async throws {
        try await Self.run("chart") { _, measured in
            #expect((measured["points"] as? Int ?? 0) >= 3)
        }
    }

    /// The dashboard's listener is shut down before the supervisor and waits for open requests:
    /// an open live feed once held musterd's stop up for good. No browser needed: a raw
    /// connection reading /live is an open page to the daemon.
    @Test(.enabled(if: isRoot)) func anOpenPageDoesNotHoldUpTheStop() async throws {
        let dashboardPort = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": sleeper], daemonConfig: "dashboard_listen = \"127.0.0.1:\(dashboardPort)\"") { d in
            try await d.start()
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            try #require(ProxyTests.onLoopback(fd, dashboardPort, connect) == 0)
            let request = "GET /live HTTP/1.1\r\nHost: 127.0.0.1:\(dashboardPort)\r\n\r\n"
            _ = request.withCString { send(fd, $0, strlen($0), 0) }
            var head = ""
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !head.contains("event: snapshot") {
                let received = recv(fd, &buffer, buffer.count, 0)
                if received <= 0 { break }
                head += String(decoding: buffer.prefix(received), as: UTF8.self)
            }
            #expect(head.contains("text/event-stream") && head.contains("event: snapshot"), "\(head.prefix(300))")
            let daemon = try #require(d.daemon)
            kill(daemon.processIdentifier, SIGTERM)
            let code = await d.waitForExit(30)
            #expect(code == 0, "musterd did not exit within 30 s of SIGTERM with a page open")
        }
    }
}
