import ArgumentParser
import FoundationEssentials
import MusterAPI

struct Dashboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Print the web dashboard's address with a token that lets the page act (scale, restart, stop, start).",
        discussion: """
            The daemon issues the token to this caller over the control socket, so only root and the \
            control group get one. Opening the address stores it in an HttpOnly, SameSite=Strict cookie; \
            reading the page needs no token. Needs dashboard_listen under [daemon] in musterd.toml.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "How long the token is good for, e.g. 30m, 12h, 168h (at most 720h, 30 days).") var validFor: String?
    @Flag(name: .long, help: "Print the daemon's answer as JSON (url, token, expires_at).") var json = false

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/dashboard/login", DashboardLoginRequest(validFor: validFor), as: DashboardLoginResponse.self)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Output.line(String(decoding: try encoder.encode(response), as: UTF8.self))
                return
            }
            Output.line(response.url)
            let hours = max(0, response.expiresAt - Date().timeIntervalSince1970) / 3600
            Output.line("Open it in a browser on this host; it signs that browser in for \(hours >= 1 ? "\(Int(hours.rounded())) h" : "\(Int((hours * 60).rounded())) min"). Keep it secret: whoever opens it can scale, restart and stop services.")
        }
    }
}
