import ArgumentParser
import FoundationEssentials
import MusterAPI
import MusterText
import MusterCore

/// `autoscale SERVICE [--json]`, `autoscale pause SERVICE`, `autoscale resume SERVICE`.
struct Autoscale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoscale",
        abstract: "Show an autoscaled service's load, target, counts and last decisions; pause or resume its autoscaler.",
        subcommands: [AutoscaleShow.self, AutoscalePause.self, AutoscaleResume.self],
        defaultSubcommand: AutoscaleShow.self)
}

struct AutoscaleShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "The autoscaler's state and its last decisions (the default).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Print JSON (the API's autoscale document).") var json = false
    @Argument(help: "The service.") var service: String

    func run() async throws {
        try await Outcome.run {
            let report = try await connection.client.get("/v1/services/\(service)/autoscale", as: AutoscaleReport.self)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Output.line(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                Output.line(AutoscaleText.render(report))
            }
        }
    }
}

struct AutoscalePause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Stop the autoscaler's decisions; musterctl scale sets the count until resume.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The service.") var service: String

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/services/\(service)/autoscale/pause", Optional<String>.none, as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

struct AutoscaleResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Let the autoscaler decide again.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The service.") var service: String

    func run() async throws {
        try await Outcome.run {
            let response = try await connection.client.post("/v1/services/\(service)/autoscale/resume", Optional<String>.none, as: ActionResponse.self)
            response.results.forEach(Output.line)
        }
    }
}

enum AutoscaleText {
    static func render(_ report: AutoscaleReport) -> String {
        let unit = unitText(report.metric)
        var lines: [String] = []
        var head = "\(report.service): \(report.desired) desired, \(report.current) serving (min \(report.min), max \(report.max))"
        if report.paused { head += ", PAUSED (musterctl autoscale resume \(report.service))" }
        if report.panicking { head += ", PANIC MODE" }
        lines.append(head)
        lines.append("  metric     \(report.metric), target \(value(report.target, report.metric))\(unit) per instance, tolerance ±\(Int((report.tolerance * 100).rounded()))%")
        lines.append("  load       \(value(report.load.stable, report.metric)) over \(seconds(report.windowSeconds)), "
            + "\(value(report.load.panic, report.metric)) over \(seconds(report.panicWindowSeconds)) (panic at \(StatusTable.format1(report.panicThreshold))× capacity), "
            + "last \(value(report.load.last, report.metric)); \(value(report.load.perInstance, report.metric)) per serving instance")
        if report.queued > 0 { lines.append("  held       \(report.queued) request(s) waiting for an instance") }
        lines.append("  timing     every \(seconds(report.intervalSeconds)); scale down after \(seconds(report.scaleDownDelaySeconds))"
            + (report.min == 0 ? "; to zero after \(seconds(report.scaleToZeroAfterSeconds)) idle" : ""))
        if let reason = report.lastReason { lines.append("  last tick  \(reason)") }
        if report.decisions.isEmpty {
            lines.append("  no changes yet")
        } else {
            lines.append("  changes:")
            for decision in report.decisions.reversed() {
                lines.append("    \(EventText.isoTime(decision.time))  \(decision.from) → \(decision.to)  \(decision.reason)")
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func unitText(_ metric: String) -> String {
        switch metric {
        case "concurrency": " in flight"
        case "rps": " req/s"
        case "cpu": " cores"
        default: ""
        }
    }

    private static func value(_ number: Double, _ metric: String) -> String {
        metric == "memory" ? ByteSize.format(UInt64(max(0, number))) : StatusTable.format1(number)
    }

    private static func seconds(_ value: Double) -> String { DurationText.format(.seconds(value)) }
}
