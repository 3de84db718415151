import MusterCore
import Testing

@Suite("dashboard tokens and dashboard_listen")
struct DashboardTokensTests {
    static let tokenA = String(repeating: "a", count: 64)
    static let tokenB = String(repeating: "b", count: 64)

    @Test("a token is good until its expiry, and only that token")
    func expiry() {
        var tokens = DashboardTokens()
        let expires = tokens.issue(Self.tokenA, now: 1000, lifetime: .seconds(60))
        #expect(expires == 1060)
        #expect(tokens.expiry(of: Self.tokenA, now: 1059) == 1060)
        #expect(tokens.expiry(of: Self.tokenA, now: 1060) == nil)
        #expect(tokens.expiry(of: Self.tokenB, now: 1000) == nil)
        #expect(tokens.expiry(of: String(Self.tokenA.dropLast()), now: 1000) == nil)
        #expect(tokens.expiry(of: "", now: 1000) == nil)
    }

    @Test("never holds more than its capacity; the one expiring first goes, expired ones go first")
    func bounded() {
        var tokens = DashboardTokens()
        _ = tokens.issue(Self.tokenA, now: 0, lifetime: .seconds(10))
        for i in 0..<(DashboardTokens.capacity + 20) {
            _ = tokens.issue(numbered(i), now: 1, lifetime: .seconds(1000 + Double(i)))
        }
        #expect(tokens.count == DashboardTokens.capacity)
        #expect(tokens.expiry(of: Self.tokenA, now: 1) == nil)
        // The newest are kept; the first ones issued (expiring first) went.
        #expect(tokens.expiry(of: numbered(DashboardTokens.capacity + 19), now: 1) != nil)
        #expect(tokens.expiry(of: numbered(0), now: 1) == nil)
        _ = tokens.issue(Self.tokenB, now: 5000, lifetime: .seconds(1))
        #expect(tokens.count == 1, "every earlier one had expired by 5000")
    }

    /// A 64-character token made from a number.
    private func numbered(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: 64 - digits.count) + digits
    }

    @Test("dashboard_listen is read from [daemon]; a bad one names the key and the fix")
    func listen() throws {
        let config = try DaemonConfig.decode("[daemon]\ndashboard_listen = \"127.0.0.1:9090\"\n", path: "/etc/muster/musterd.toml")
        #expect(config.dashboardListen == ListenAddress(host: "127.0.0.1", port: 9090))
        #expect(try DaemonConfig.decode("[daemon]\n", path: "/etc/muster/musterd.toml").dashboardListen == nil)
        let error = #expect(throws: ManifestErrors.self) {
            try DaemonConfig.decode("[daemon]\ndashboard_listen = \"9090\"\n", path: "/etc/muster/musterd.toml")
        }
        let text = error?.issues.map(\.description).joined() ?? ""
        #expect(text.contains("musterd.toml") && text.contains("dashboard_listen") && text.contains("127.0.0.1:9090"))
    }
}
