import ArgumentParser
import FoundationEssentials
import Glibc
import MusterAPI
import MusterText
import MusterCore

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show every instance: state, pid, port, uptime, restarts, CPU, memory, reason.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print JSON (the API's status document).") var json = false
    @Argument(help: "Services to show (default: all).") var services: [String] = []

    func run() async throws {
        try await Outcome.run {
            let query = services.map { "service=\($0)" }.joined(separator: "&")
            let path = "/v1/status" + (query.isEmpty ? "" : "?" + query)
            // Both as musterd sends them: the document itself, or the table it renders (decoding
            // 700 KB of JSON for 2,000 instances here cost more than the daemon's whole answer).
            let text = try await connection.client.text(path, accept: json ? "application/json" : "text/plain")
            Output.line(text.hasSuffix("\n") ? String(text.dropLast()) : text)
        }
    }
}

/// start, stop and restart share their shape: a verb and targets.
protocol TargetVerb: AsyncParsableCommand {
    static var verb: String { get }
    var connection: ConnectionOptions { get }
    var targets: [String] { get }
}

extension TargetVerb {
    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/\(Self.verb)", TargetsRequest(targets: targets), as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

struct Start: TargetVerb {
    static let verb = "start"
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start services or instances (also fatal ones).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "web, web:1 or all.") var targets: [String]
}

struct Stop: TargetVerb {
    static let verb = "stop"
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop services or instances; they stay stopped, across daemon restarts too.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "web, web:1 or all.") var targets: [String]
}

struct Restart: TargetVerb {
    static let verb = "restart"
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "Stop, then start services or instances.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "web, web:1 or all.") var targets: [String]
}

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Set how many instances a service runs.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The service.") var service: String
    @Argument(help: "The instance count.") var count: Int

    func validate() throws {
        guard count >= 0 else { throw ValidationError("the instance count cannot be negative") }
    }

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/services/\(service)/scale", ScaleRequest(instances: count), as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reload", abstract: "Re-read every manifest and apply the difference; nothing changes if any is invalid.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print the plan without applying it.") var dryRun = false

    func run() async throws {
        try await Outcome.run {
            let plan = try await connection.client.post("/v1/reload" + (dryRun ? "?dry_run=true" : ""), Optional<String>.none, as: ReloadResponse.self)
            Output.line(plan.applied ? "reloaded:" : "reload plan (dry run; nothing applied):")
            for name in plan.added { Output.line("  + start new service \(name)") }
            for name in plan.removed { Output.line("  - stop and remove \(name)") }
            for name in plan.changed { Output.line("  ~ restart \(name) (manifest changed)") }
            for r in plan.rescaled { Output.line("  ± scale \(r.name) \(r.from) → \(r.to)") }
            for name in plan.unchanged { Output.line("  = leave \(name) alone (unchanged)") }
            for warning in plan.warnings { Output.line("warning: \(warning)") }
        }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print an instance's log, or every service's interleaved (stdout and stderr, stamped).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .shortAndLong, help: "Keep printing new lines.") var follow = false
    @Option(name: .short, help: "How many lines from the end (default 50; with --since, every line since).") var n: Int?
    @Option(name: .long, help: "Only lines from this long ago on: 90s, 10m, 2h.") var since: String?
    @Flag(name: .long, help: "Every service's and instance's lines, interleaved by time (the default without TARGET).") var all = false
    @Argument(help: "web (its first instance) or web:1; none: every service.") var target: String?

    func validate() throws {
        if all && target != nil { throw ValidationError("name a TARGET or give --all, not both") }
        if let n, n < 0 { throw ValidationError("-n must be 0 or more") }
        if let since, DurationText.parse(since) == nil { throw ValidationError("--since \"\(since)\" is not a duration (try 90s, 10m or 2h)") }
    }

    func run() async throws {
        var query: [String] = []
        if let n { query.append("lines=\(n)") }
        if let since { query.append("since=\(since)") }
        if follow { query.append("follow=true") }
        let suffix = query.isEmpty ? "" : "?" + query.joined(separator: "&")
        try await Outcome.run {
            guard let target, !all else {
                var colours = PrefixColours(enabled: isatty(1) == 1)
                try await connection.client.stream("/v1/logs" + suffix) { chunk in
                    Output.raw(colours.apply(chunk.readableBytesView))
                }
                Output.raw(colours.flush())
                return
            }
            try await connection.client.stream("/v1/logs/\(target)" + suffix) { chunk in
                Output.raw(chunk.readableBytesView)
            }
        }
    }
}

/// Colours each `service.index |` prefix of `logs --all` by service, so one service's lines
/// stand out in the interleaving; on a terminal only. The colour follows from the name, so a
/// service keeps its colour from one run to the next.
struct PrefixColours {
    let enabled: Bool
    private var partial: [UInt8] = []
    private static let palette = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92"]

    init(enabled: Bool) { self.enabled = enabled }

    /// The complete lines of what has arrived so far, coloured; a partial line waits.
    mutating func apply(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        guard enabled else { return Array(bytes) }
        partial += bytes
        guard let last = partial.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = partial[...last]
        partial.removeSubrange(...last)
        var out: [UInt8] = []
        for line in complete.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            out += colour(Array(line))
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    mutating func flush() -> [UInt8] {
        defer { partial = [] }
        return enabled ? colour(partial) : []
    }

    private func colour(_ line: [UInt8]) -> [UInt8] {
        let bar = Array(" | ".utf8)
        guard let end = line.firstRange(of: bar)?.lowerBound, let dot = line[..<end].lastIndex(of: UInt8(ascii: ".")) else { return line }
        // FNV-1a: stable across runs, unlike hashValue.
        var hash: UInt32 = 2_166_136_261
        for byte in line[..<dot] { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let code = Self.palette[Int(hash % UInt32(Self.palette.count))]
        return Array("\u{1B}[\(code)m".utf8) + line[..<end] + Array(" |\u{1B}[0m ".utf8) + line[(end + bar.count)...]
    }
}

struct SignalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signal", abstract: "Send a signal to instances' main processes.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "TERM, HUP, USR1, … or a number.") var signal: String
    @Argument(help: "web, web:1 or all.") var targets: [String]

    func validate() throws {
        guard SignalName.number(signal) != nil else { throw ValidationError("\"\(signal)\" is not a signal (try TERM, HUP, USR1 or 15)") }
    }

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/signal", SignalRequest(signal: signal, targets: targets), as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "What happened: starts, exits, OOM kills, backoff, fatal, scaling, reloads.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .shortAndLong, help: "Keep printing new events.") var follow = false
    @Flag(name: .long, help: "One JSON object per line.") var json = false

    func run() async throws {
        try await Outcome.run {
            if follow {
                var pending = Data()
                try await connection.client.stream("/v1/events?follow=true") { chunk in
                    pending.append(contentsOf: chunk.readableBytesView)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = pending[pending.startIndex..<newline]
                        pending = Data(pending[pending.index(after: newline)...])
                        if json { Output.line(String(decoding: line, as: UTF8.self)) }
                        else if let event = try? JSONDecoder().decode(EventRecord.self, from: line) { Output.line(EventText.render(event)) }
                    }
                }
            } else {
                let response = try await connection.client.get("/v1/events", as: EventsResponse.self)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                for event in response.events {
                    Output.line(json ? String(decoding: try encoder.encode(event), as: UTF8.self) : EventText.render(event))
                }
            }
        }
    }
}

struct Shutdown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shutdown", abstract: "Stop every instance and make musterd exit.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/shutdown", Optional<String>.none, as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print musterctl's version and, when reachable, musterd's.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        Output.line("musterctl \(MusterVersion.current)")
        try await Outcome.run {
            let daemon = try await connection.client.get("/v1/version", as: VersionResponse.self)
            Output.line("musterd \(daemon.version) (pid \(daemon.pid), cgroups: \(daemon.cgroupMode)\(daemon.cgroupRoot.map { " at \($0)" } ?? ""))")
        }
    }
}
