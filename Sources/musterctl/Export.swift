import ArgumentParser
import FoundationEssentials
import MusterCore
import MusterMigrate
import MusterHost

/// `export kubernetes FILE… [-o DIR] [--image SERVICE=IMAGE]`: manifests to Kubernetes objects;
/// reads files only, no daemon needed.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write other engines' objects from manifests; no daemon needed.",
        subcommands: [ExportKubernetes.self]
    )
}

struct ExportKubernetes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubernetes",
        abstract: "A Deployment (and a Service, a HorizontalPodAutoscaler) or a Knative Service per manifest (\(KubernetesExporter.kubernetesVersion)).",
        discussion: "Every service needs an image: [export] image = \"…\" in its manifest, or --image web=registry.example/web:1.4 (repeat for each service). What did not carry over is listed at the top of each file and in the summary."
    )
    @Argument(help: "Service manifests (*.toml).") var files: [String]
    @Option(name: [.short, .long], help: ArgumentHelp("Write one <service>.yaml per service into this folder (default: print them).", valueName: "dir"))
    var output: String?
    @Option(name: .long, help: ArgumentHelp("The container image of a service (repeatable).", valueName: "service=image"))
    var image: [String] = []
    @Option(name: .long, help: "The container port that {port} and $PORT become.")
    var port: Int = 8080

    func validate() throws {
        for item in image where !item.contains("=") {
            throw ValidationError("--image \(item): expected SERVICE=IMAGE, e.g. --image web=registry.example/web:1.4")
        }
        if !(1...65535).contains(port) { throw ValidationError("--port \(port): not a port (1-65535)") }
    }

    func run() throws {
        var images: [String: String] = [:]
        for item in image {
            let equals = item.firstIndex(of: "=")!
            images[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        var failed = false
        var outputs: [KubernetesExporter.Output] = []
        let exporter = KubernetesExporter(port: port)
        for file in files {
            let text: String
            do { text = try FileSystem.read(file) } catch {
                Output.error("musterctl: cannot read \(file): \(FileSystem.errorText(error.errno))")
                failed = true
                continue
            }
            let name = file.split(separator: "/").last.map(String.init) ?? file
            do {
                let spec = try ManifestDecoder.decode(text, fileName: name, sourcePath: file)
                outputs.append(try exporter.export(spec, image: images[spec.name] ?? spec.container?.imageRef ?? spec.exportImage, source: file))
                images[spec.name] = nil
            } catch let error as ManifestErrors {
                error.issues.forEach { Output.error($0.description) }
                failed = true
            } catch let error as MigrationError {
                Output.error("musterctl: \(error.message)")
                failed = true
            }
        }
        for unused in images.keys.sorted() { Output.error("musterctl: --image \(unused)=…: no such service among the files") }
        if let output {
            do { try FileSystem.makeDirectories(output) } catch {
                Output.error("musterctl: cannot create \(output): \(FileSystem.errorText(error.errno))")
                throw ExitCode(1)
            }
            for item in outputs {
                do { try FileSystem.writeAtomically(Array(item.yaml.utf8), to: output + "/" + item.fileName) } catch {
                    Output.error("musterctl: cannot write \(output)/\(item.fileName): \(FileSystem.errorText(error.errno))")
                    failed = true
                    continue
                }
                Self.summary(item, to: "\(output)/\(item.fileName)").forEach { Output.line($0) }
            }
        } else {
            for (position, item) in outputs.enumerated() {
                if position > 0 { Output.line("---") }
                Output.raw(Array(item.yaml.utf8))
            }
            // The summary goes to stderr, so stdout stays one valid multi-document YAML stream.
            for item in outputs { Self.summary(item, to: nil).forEach { Output.error($0) } }
        }
        if failed { throw ExitCode(1) }
    }

    /// "exported web (Deployment, Service) -> k8s/web.yaml", then what was not carried over and the notes.
    static func summary(_ item: KubernetesExporter.Output, to path: String?) -> [String] {
        var lines = ["exported \(item.name) (\(item.kinds.joined(separator: ", ")))" + (path.map { " -> \($0)" } ?? "")]
        lines += item.notCarriedOver.map { "  not carried over: \($0)" }
        lines += item.notes.map { "  note: \($0)" }
        return lines
    }
}
