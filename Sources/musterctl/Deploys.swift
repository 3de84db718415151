import ArgumentParser
import FoundationEssentials
import Glibc
import MusterAPI
import MusterText

struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deploy", abstract: "Deploy one service's manifest as it is on disk now, with its [deploy] strategy.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Follow the canary until it is promoted or rolled back; exit 1 when rolled back.") var watch = false
    @Argument(help: "The service.") var service: String

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/services/\(service)/deploy", RollbackRequest(), as: DeployResponse.self)
            Output.line(response.message)
            if watch, let revision = response.revision, response.strategy != "none" {
                try await DeployWatch.follow(service: service, revision: revision, client: connection.client)
            }
        }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Deploy an earlier revision (default: the previous good one) with the service's strategy.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Follow a canary until it is promoted or rolled back; exit 1 when rolled back.") var watch = false
    @Argument(help: "The service.") var service: String
    @Argument(help: "The revision number (musterctl history SERVICE).") var revision: Int?

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/services/\(service)/rollback", RollbackRequest(revision: revision), as: DeployResponse.self)
            Output.line(response.message)
            if watch, let number = response.revision, response.strategy != "none" {
                try await DeployWatch.follow(service: service, revision: number, client: connection.client)
            }
        }
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "List a service's revisions: number, time, what changed, outcome.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Argument(help: "The service.") var service: String

    func run() async throws {
        try await Outcome.run {
            let history = try await connection.client.get("/v1/services/\(service)/history", as: HistoryResponse.self)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Output.line(String(decoding: try encoder.encode(history), as: UTF8.self))
                return
            }
            Output.line(HistoryTable.render(history))
        }
    }
}

enum HistoryTable {
    static func render(_ history: HistoryResponse) -> String {
        var lines = ["REV   TIME                  SOURCE          OUTCOME                                   CHANGED"]
        for entry in history.revisions {
            let number = (entry.current ? "*" : " ") + String(entry.number)
            lines.append(pad(number, 5) + " " + pad(time(entry.time), 21) + " " + pad(entry.source, 15) + " "
                         + pad(entry.outcome, 41) + " " + entry.changes.joined(separator: ", "))
        }
        lines.append("(* the revision the service's instances run)")
        return lines.joined(separator: "\n")
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// "2026-12-06 12:48:31" (UTC).
    static func time(_ seconds: Double) -> String {
        var whole = time_t(seconds)
        var parts = tm()
        gmtime_r(&whole, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}

/// `--watch`: a line each second while the canary runs, then its outcome.
enum DeployWatch {
    static func follow(service: String, revision: Int, client: ControlClient) async throws {
        var last = ""
        while true {
            let status = try await client.get("/v1/status?service=\(service)", as: StatusResponse.self)
            if let canary = status.services.first?.canary, canary.revision == revision {
                let line = progress(canary)
                if line != last { Output.line(line); last = line }
            } else {
                let history = try await client.get("/v1/services/\(service)/history", as: HistoryResponse.self)
                guard let entry = history.revisions.first(where: { $0.number == revision }) else { throw ExitCode(1) }
                if entry.outcome.hasPrefix("canary") {
                    try await Task.sleep(for: .milliseconds(300))
                    continue
                }
                Output.line("revision \(revision): \(entry.outcome)")
                if entry.outcome == "promoted" || entry.outcome == "deployed" { return }
                throw ExitCode(1)
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    static func progress(_ canary: CanaryStatus) -> String { CanaryText.progress(canary) }

}
