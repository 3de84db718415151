import ArgumentParser
import FoundationEssentials
import MusterCore
import MusterHost

/// `check FILE…`: validates manifests (or a musterd.toml and its services) without a daemon.
/// Manifests named together are also checked as one graph: name every manifest that a
/// `requires` points at (`musterctl check services.d/*.toml`), or the musterd.toml.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate manifests or a musterd.toml; no daemon needed.")
    @Argument(help: "Service manifests (*.toml) or a daemon config (a file with a [daemon] table).") var files: [String]

    func run() async throws {
        var problems = 0
        var manifests: [ServiceSpec] = []
        for file in files {
            let text = (try? FileSystem.read(file)) ?? ""
            if text.contains("[daemon]") {
                do {
                    let config = try ManifestLoader.loadConfig(file)
                    let specs = try ManifestLoader.loadServices(in: config.servicesDir, verifyImageLayers: true)
                    Output.line("ok: \(file) and \(specs.count) manifest(s) in \(config.servicesDir)")
                    Warnings.forSpecs(specs).forEach { Output.line("warning: \($0)") }
                } catch {
                    problems += error.issues.count
                    error.issues.forEach { Output.error($0.description) }
                }
                continue
            }
            do {
                let specs = try ManifestLoader.readServices(files: [file], verifyImageLayers: true)
                for spec in specs { Output.line("ok: \(file): service \(spec.name), \(spec.instances) instance(s)") }
                manifests += specs
            } catch {
                problems += error.issues.count
                error.issues.forEach { Output.error($0.description) }
            }
        }
        // The graph (requires, wants, {addr:NAME}) is that of the manifests named together.
        if problems == 0 && !manifests.isEmpty {
            do {
                let specs = try ManifestLoader.resolveGraph(manifests)
                Warnings.forSpecs(specs).forEach { Output.line("warning: \($0)") }
            } catch {
                problems += error.issues.count
                error.issues.forEach { Output.error($0.description) }
            }
        }
        if problems > 0 {
            Output.error("\(problems) problem(s) found")
            throw ExitCode(1)
        }
    }
}
