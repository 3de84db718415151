import ArgumentParser
import FoundationEssentials
import Glibc
import MusterAPI
import MusterText
import MusterCore
import MusterTop

/// `musterctl top`: the services live, a refresh a second, keys to act on them.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live full-screen view: services and instances, load, latency, CPU, memory; keys to scale, restart, follow logs.",
        discussion: TopFrame.help)
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print one frame (every service and instance) and exit, for scripts.") var once = false

    /// Lines the logs pane and events pane ask for each refresh.
    static let paneLines = 40

    func run() async throws {
        let client = connection.client
        if once {
            try await Outcome.run {
                var state = TopState()
                let status = try await client.get("/v1/status", as: StatusResponse.self)
                state.expanded = Set(status.services.map(\.name))
                let snapshot = try await Self.snapshot(client, state, status: status)
                let frame = TopFrame.renderOnce(snapshot, state, width: isatty(1) == 1 ? Terminal.size().columns : 100)
                let colour = Terminal.hasColour
                for line in frame {
                    let text = line.text.trimmingTrailingSpaces()
                    Output.line(colour ? ScreenDiff.style(line, colour: true) + text + "\u{1B}[0m" : text)
                }
            }
            return
        }
        guard Terminal.isInteractive else {
            throw ValidationError("top needs a terminal on stdin and stdout; use --once to print one frame")
        }
        // Reachable before the screen is taken over, so "is musterd running?" lands on the shell.
        var snapshot: TopSnapshot!
        try await Outcome.run { snapshot = try await Self.snapshot(client, TopState()) }
        try await Self.live(client, first: snapshot)
    }

    static func live(_ client: ControlClient, first: TopSnapshot) async throws {
        Terminal.enter()
        defer { Terminal.leave() }
        let colour = Terminal.hasColour
        var state = TopState()
        var snapshot = first
        var shown: [ScreenLine]?
        var nextRefresh = ContinuousClock.now + .seconds(1)
        while true {
            let size = Terminal.size()
            let frame = TopFrame.render(snapshot, state, width: size.columns, height: size.rows)
            Terminal.write(Array(ScreenDiff.update(from: shown, to: frame, colour: colour).utf8))
            shown = frame

            let wait = max(0, (nextRefresh - .now).milliseconds)
            guard let bytes = Terminal.readKeys(waiting: Int32(min(wait, 1000))) else { return }
            let rows = TopRows.rows(snapshot, expanded: state.expanded, filter: state.filter)
            let paneBefore = state.pane
            for key in TopKeyDecoder().keys(bytes) {
                switch state.handle(key, rows: rows) {
                case .quit: return
                case .scale(let service, let count):
                    state.message = await answer { try await client.post("/v1/services/\(service)/scale", ScaleRequest(instances: count), as: ActionResponse.self) }
                    nextRefresh = .now
                case .restart(let target):
                    state.message = await answer { try await client.post("/v1/restart", TargetsRequest(targets: [target]), as: ActionResponse.self) }
                    nextRefresh = .now
                case nil: break
                }
            }
            if state.pane != paneBefore { nextRefresh = .now }
            if ContinuousClock.now >= nextRefresh {
                nextRefresh = .now + .seconds(1)
                do {
                    snapshot = try await Self.snapshot(client, state)
                } catch {
                    // The rows stay as they were, marked; top keeps trying each second.
                    snapshot.error = Self.describe(error)
                }
            }
        }
    }

    /// One refresh: status, the last seconds of history, and what the open pane shows.
    static func snapshot(_ client: ControlClient, _ state: TopState, status known: StatusResponse? = nil) async throws -> TopSnapshot {
        let status: StatusResponse
        if let known { status = known } else { status = try await client.get("/v1/status", as: StatusResponse.self) }
        let history = try await client.get("/v1/history?since=3s", as: MetricsHistoryResponse.self)
        var snapshot = TopSnapshot(status: status, history: history, time: Date().timeIntervalSince1970)
        switch state.pane {
        case .none: break
        case .events:
            snapshot.events = try await client.get("/v1/events?limit=\(paneLines)", as: EventsResponse.self).events
        case .logs(let service):
            let text = (try? await client.text("/v1/logs/\(service)?lines=\(paneLines)")) ?? "(no log for \(service))"
            snapshot.logLines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
        }
        return snapshot
    }

    /// An action's answer for the bottom line: musterd's results, or why it refused.
    static func answer(_ action: () async throws -> ActionResponse) async -> String {
        do { return try await action().results.joined(separator: "; ") } catch { return describe(error) }
    }

    static func describe(_ error: any Error) -> String {
        switch error as? ControlClient.Failure {
        case .unreachable(let message): return message
        case .refused(let response, _): return response.message
        case nil: return "\(error)"
        }
    }
}

extension Duration {
    var milliseconds: Int { Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000) }
}
