import ArgumentParser
import FoundationEssentials
import Glibc
import MusterMigrate
import MusterHost

/// `import supervisord FILE… | import pm2 FILE`: writes manifests from another supervisor's
/// configuration; reads files only, no daemon needed.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Write manifests from a supervisord.conf or a PM2 ecosystem file; no daemon needed.",
        subcommands: [ImportSupervisord.self, ImportPM2.self]
    )
}

struct ImportOutputOptions: ParsableArguments {
    @Option(name: [.short, .long], help: ArgumentHelp("Write one <service>.toml per service into this folder (default: print them).", valueName: "dir"))
    var output: String?

    @Flag(name: .long, help: "Replace manifests that already exist in the output folder.")
    var force = false

    /// Writes or prints the manifests, then the summary; exit 1 when something failed to import.
    func deliver(_ result: ImportResult) throws {
        var failed = !result.errors.isEmpty
        var written = 0
        if let output {
            do { try FileSystem.makeDirectories(output) } catch {
                Output.error("musterctl: cannot create \(output): \(FileSystem.errorText(error.errno))")
                throw ExitCode(1)
            }
            for manifest in result.manifests {
                let path = output + "/" + manifest.fileName
                if FileSystem.exists(path), !force {
                    Output.error("musterctl: \(path) exists; not replaced (use --force)")
                    failed = true
                    continue
                }
                do { try FileSystem.writeAtomically(Array(manifest.toml.utf8), to: path) } catch {
                    Output.error("musterctl: cannot write \(path): \(FileSystem.errorText(error.errno))")
                    failed = true
                    continue
                }
                written += 1
            }
            result.summaryLines.forEach { Output.line($0) }
            if written > 0 {
                Output.line("wrote \(written) manifest(s) to \(output); check them with: musterctl check \(output)/*.toml")
            }
        } else {
            for (position, manifest) in result.manifests.enumerated() {
                if position > 0 { Output.line("") }
                Output.line("# ---- \(manifest.fileName)")
                Output.raw(Array(manifest.toml.utf8))
            }
            // The summary goes to stderr, so stdout stays valid TOML for one service.
            result.summaryLines.forEach { Output.error($0) }
        }
        if result.manifests.isEmpty && result.errors.isEmpty {
            Output.error("musterctl: no program or app found to import")
            failed = true
        }
        if failed { throw ExitCode(1) }
    }
}

struct ImportSupervisord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervisord",
        abstract: "Each [program:x] of supervisord.conf (and its [include] files) becomes a manifest."
    )
    @Argument(help: "supervisord.conf files.") var files: [String]
    @OptionGroup var options: ImportOutputOptions

    func run() throws {
        let result = SupervisordImporter(environment: ProcessEnvironment.current()).importFiles(files)
        try options.deliver(result)
    }
}

struct ImportPM2: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pm2",
        abstract: "Each app of a PM2 ecosystem file (ecosystem.json, or module.exports = {…} of plain data) becomes a manifest."
    )
    @Argument(help: "The ecosystem file.") var file: String
    @OptionGroup var options: ImportOutputOptions

    func run() throws {
        try options.deliver(PM2Importer().importFile(file))
    }
}
