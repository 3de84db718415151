import ArgumentParser
import FoundationEssentials
import Glibc
import MusterAPI

/// musterctl: the supervisorctl-style CLI. Every verb is a subcommand; with no arguments it reads
/// the same commands from an interactive prompt.
struct Musterctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "musterctl",
        abstract: "Control musterd: status, start, stop, restart, scale, reload, logs, signal, events.",
        discussion: """
            Targets are a service (web), one instance (web:1) or all.
            Exit codes: 0 done, 1 the daemon refused or the action failed, 2 usage, 3 daemon unreachable.
            With no arguments, musterctl reads commands from an interactive prompt.
            """,
        version: MusterVersion.current,
        subcommands: [
            Status.self, Start.self, Stop.self, Restart.self, Scale.self, Autoscale.self, Reload.self, Logs.self,
            SignalCommand.self, Events.self, Top.self, Dashboard.self, Deploy.self, History.self, Rollback.self, Check.self, Import.self, Export.self, Shutdown.self, Version.self,
            Interactive.self,
        ],
        defaultSubcommand: Interactive.self
    )
}

/// `--socket PATH`, or MUSTER_SOCKET, or the default.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's control socket (default: $MUSTER_SOCKET or /run/muster/muster.sock).", valueName: "path"))
    var socket: String?

    var client: ControlClient {
        ControlClient(socketPath: socket ?? getenv("MUSTER_SOCKET").map { String(cString: $0) } ?? "/run/muster/muster.sock")
    }
}

/// Maps client failures to the documented exit codes.
enum Outcome {
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as ControlClient.Failure {
            switch failure {
            case .unreachable(let message):
                Output.error(message)
                throw ExitCode(3)
            case .refused(let error, _):
                Output.error("musterctl: \(error.message)")
                for detail in error.details ?? [] { Output.error("  \(detail)") }
                throw ExitCode(1)
            }
        }
    }
}

enum Output {
    static func error(_ text: String) { write(2, text + "\n") }

    static func line(_ text: String) { write(1, text + "\n") }

    static func raw(_ bytes: some Sequence<UInt8>) {
        let copy = Array(bytes)
        copy.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in write(1, buffer) }
    }

    private static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { (utf8: UnsafeBufferPointer<UInt8>) in write(fd, UnsafeRawBufferPointer(utf8)) }
    }

    /// A reader that went away (`musterctl logs web | head`) ends the command quietly, as it
    /// would for any Unix tool; SIGPIPE itself is ignored in this process (NIO does that).
    private static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { exit(0) }
                return
            }
            offset += n
        }
    }
}

/// Parses and runs one command line; shared by `main` and the interactive prompt. Returns the exit
/// code: usage errors are 2, as the CLI promises (ArgumentParser's own default would be 64).
func runCommandLine(_ arguments: [String]) async -> Int32 {
    // `musterctl --socket S status` reads naturally; the parser wants options after the verb.
    var arguments = arguments
    if let first = arguments.first, first == "--socket" || first.hasPrefix("--socket=") {
        let option = Array(arguments.prefix(first == "--socket" ? 2 : 1))
        if arguments.count > option.count { arguments = Array(arguments.dropFirst(option.count)) + option }
    }
    // Every subcommand names itself: deriving names from type names costs a reflection pass that
    // is a good part of a short command's run time.
    let verbs = Musterctl.configuration.subcommands.compactMap { $0.configuration.commandName }
    if let first = arguments.first, !first.hasPrefix("-"), first != "help", !verbs.contains(first) {
        Output.error("musterctl: unknown command \"\(first)\" (commands: \(verbs.joined(separator: ", ")))")
        return 2
    }
    do {
        var command = try Musterctl.parseAsRoot(arguments)
        if var async = command as? AsyncParsableCommand { try await async.run() } else { try command.run() }
        return 0
    } catch {
        let code = Musterctl.exitCode(for: error)
        if code == .validationFailure {
            Output.error(Musterctl.fullMessage(for: error))
            return 2
        }
        if code == .success {
            Output.line(Musterctl.fullMessage(for: error))
            return 0
        }
        if !(error is ExitCode) { Output.error(Musterctl.fullMessage(for: error)) }
        return code.rawValue
    }
}

@main
enum Main {
    static func main() async {
        exit(await runCommandLine(Array(CommandLine.arguments.dropFirst())))
    }
}
