import Foundation
import MusterCore
import MusterMigrate
import Testing

/// Fixtures live next to this file; golden outputs under Fixtures/golden, with the fixtures'
/// folder written as <fixtures>. Run with MUSTER_UPDATE_GOLDEN=1 to rewrite them (then review).
enum Fixture {
    static let directory: String = {
        let file = #filePath
        return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
    }()

    static func path(_ name: String) -> String { directory + "/" + name }

    static func golden(_ name: String, _ actual: String) throws {
        let text = actual.replacing(directory, with: "<fixtures>")
        let path = path("golden/" + name)
        if ProcessInfo.processInfo.environment["MUSTER_UPDATE_GOLDEN"] == "1" {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == expected, "golden/\(name) differs; rerun with MUSTER_UPDATE_GOLDEN=1 and review the diff")
    }

    static func decodes(_ manifest: ImportedManifest) throws -> ServiceSpec {
        do { return try ManifestDecoder.decode(manifest.toml, fileName: manifest.fileName) }
        catch { Issue.record("\(manifest.fileName) does not decode: \(error)\n\(manifest.toml)"); throw error }
    }
}

@Suite("supervisord's INI rules and shlex")
struct SupervisordSyntaxTests {
    @Test func commentsContinuationsAndDelimiters() throws {
        let text = """
            ; a comment
            # another
            [program:a]
            command = /bin/a --x=1;not-a-comment ; a comment
            Directory: /srv/a
            environment=
                A="1",
              ; a comment inside a value
                B=2 # inline
            """
        let sections = try INIFile.parse(text, file: "t.conf", here: "/etc")
        #expect(sections.count == 1)
        let section = try #require(sections.first)
        #expect(section.value("command") == "/bin/a --x=1;not-a-comment")
        #expect(section.value("directory") == "/srv/a")
        #expect(section.value("environment") == "\nA=\"1\",\nB=2")
        #expect(section.line(of: "directory") == 5)
    }

    @Test func shlexSplitsAsPythonDoes() throws {
        #expect(try Shlex.split(#"/bin/x "a b" 'c "d"' e\ f "g\"h" "i\j" k""l"#) == ["/bin/x", "a b", #"c "d""#, "e f", #"g"h"#, #"i\j"#, "kl"])
        #expect(try Shlex.split(#"a "" b"#) == ["a", "", "b"])
        #expect(throws: MigrationError.self) { try Shlex.split(#"a "b"#) }
    }

    @Test func environmentPairsAsSupervisordParsesThem() throws {
        let pairs = try Shlex.keyValuePairs(#"A="x, y",B=/usr/bin:/bin,C='q',D=1.5"#)
        #expect(pairs.map(\.0) == ["A", "B", "C", "D"])
        #expect(pairs.map(\.1) == ["x, y", "/usr/bin:/bin", "q", "1.5"])
        #expect(throws: MigrationError.self) { try Shlex.keyValuePairs("A=x y,B=2") }
    }

    @Test func processNumWidthsThatMusterCanAndCannotExpress() throws {
        func command(_ spec: String, numprocs: Int) throws -> ImportedManifest {
            let text = "[program:p]\ncommand=/bin/p \(spec)\nnumprocs=\(numprocs)\nprocess_name=%(program_name)s_%(process_num)d\n"
            let dir = FileManager.default.temporaryDirectory.path + "/muster-migrate-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try text.write(toFile: dir + "/s.conf", atomically: true, encoding: .utf8)
            let result = SupervisordImporter(environment: [:], hostName: "h").importFiles([dir + "/s.conf"])
            #expect(result.errors.isEmpty, "\(result.errors)")
            return try #require(result.manifests.first)
        }
        #expect(try Fixture.decodes(try command("%(process_num)d", numprocs: 3)).command == ["/bin/p", "{index}"])
        #expect(try Fixture.decodes(try command("%(process_num)03d", numprocs: 10)).command == ["/bin/p", "00{index}"])
        let wide = try command("%(process_num)02d", numprocs: 12)
        #expect(try Fixture.decodes(wide).command == ["/bin/p", "{index}"])
        let paddingNoted = wide.notes.contains { $0.contains("padding to 2 characters is lost") }
        #expect(paddingNoted, "\(wide.notes)")
    }
}

@Suite("musterctl import supervisord")
struct SupervisordImportTests {
    static func run() -> ImportResult {
        SupervisordImporter(environment: ["SHOP_HOME": "/srv/shop"], hostName: "shop-1")
            .importFiles([Fixture.path("supervisord/supervisord.conf")])
    }

    @Test func everyProgramBecomesAValidManifest() throws {
        let result = Self.run()
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.manifests.map(\.name) == ["web", "queue-worker", "cron"])
        for manifest in result.manifests {
            try Fixture.golden("supervisord-\(manifest.fileName)", manifest.toml)
            _ = try Fixture.decodes(manifest)
        }
        try Fixture.golden("supervisord-summary.txt", result.summaryLines.joined(separator: "\n") + "\n")
    }

    @Test func webKeepsArgvEnvironmentAndDirectory() throws {
        let webManifest = Self.run().manifests.first { $0.name == "web" }
        let web = try Fixture.decodes(try #require(webManifest))
        #expect(web.command == ["/srv/shop/venv/bin/gunicorn", "shop.wsgi:application", "--bind", "127.0.0.1:800{index}", "--name", "shop web {index}"])
        #expect(web.instances == 4)
        #expect(web.directory == "/srv/shop")
        #expect(web.user == "shop")
        #expect(web.inheritEnvironment)
        #expect(web.environment == [
            "LANG": "en_US.UTF-8", "TZ": "Europe/Berlin", "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "DATABASE_URL": "postgres://shop@db.internal:5432/shop", "WORKER_ID": "web-{index}", "SHOP_HOME": "/srv/shop",
        ])
        #expect(web.restart.policy == .onFailure)
        #expect(web.restart.successExitCodes == [0, 2])
        #expect(web.restart.startSeconds == 5)
        #expect(web.restart.maxFailedStarts == 4)
        #expect(web.stop.signal == SignalName.number("QUIT"))
        #expect(web.stop.timeout == .seconds(30))
        #expect(web.logs.maxBytes == 50 << 20)
        #expect(web.logs.backups == 10)
        // The same argv supervisord would start for process 3, once {index} is 3.
        let expanded = web.command.map { Placeholders.expand($0, .init(port: 20000, index: 3, service: "web")) }
        #expect(expanded == ["/srv/shop/venv/bin/gunicorn", "shop.wsgi:application", "--bind", "127.0.0.1:8003", "--name", "shop web 3"])
    }

    @Test func quotingHereAndAutostartInTheWorker() throws {
        let result = Self.run()
        let workerManifest = result.manifests.first { $0.name == "queue-worker" }
        let manifest = try #require(workerManifest)
        let worker = try Fixture.decodes(manifest)
        #expect(worker.command == ["/usr/bin/env", "python3", "-m", "shop.worker", "--queue", "high priority", "--log-format", "%(levelname)s %(message)s"])
        #expect(worker.directory == Fixture.path("supervisord/conf.d"))
        #expect(worker.restart.policy == .always)
        #expect(worker.environment["QUEUE_NAME"] == "high priority")
        #expect(manifest.toml.contains("# run `musterctl stop queue-worker` after the first start"))
        let autostartNoted = manifest.notCarriedOver.contains { $0.hasPrefix("autostart=false") }
        let umaskNoted = manifest.notCarriedOver.contains { $0.hasPrefix("umask=022") }
        #expect(autostartNoted, "\(manifest.notCarriedOver)")
        #expect(umaskNoted, "\(manifest.notCarriedOver)")
    }

    @Test func groupsEventListenersAndDaemonSettingsAreReported() {
        let notes = Self.run().notCarriedOver
        let groupNoted = notes.contains { $0.contains("[group:shop]") && $0.contains("no process groups") }
        let listenerNoted = notes.contains { $0.contains("[eventlistener:crashmail]") && $0.contains("event protocol") }
        let serverNoted = notes.contains { $0.contains("[unix_http_server]") }
        #expect(groupNoted, "\(notes)")
        #expect(listenerNoted, "\(notes)")
        #expect(serverNoted, "\(notes)")
    }

    @Test func missingEnvironmentVariableIsAnError() {
        let result = SupervisordImporter(environment: [:], hostName: "h").importFiles([Fixture.path("supervisord/supervisord.conf")])
        let missingVariableReported = result.errors.contains { $0.contains("SHOP_HOME is not set") }
        #expect(missingVariableReported, "\(result.errors)")
        #expect(result.manifests.map(\.name) == ["queue-worker", "cron"])
    }
}

@Suite("musterctl import pm2")
struct PM2ImportTests {
    @Test func moduleExportsOfPlainData() throws {
        let result = PM2Importer(cpuCount: 4).importFile(Fixture.path("pm2/ecosystem.config.js"))
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.manifests.map(\.name) == ["api", "mailer-worker"])
        for manifest in result.manifests {
            try Fixture.golden("pm2-\(manifest.fileName)", manifest.toml)
        }
        try Fixture.golden("pm2-summary.txt", result.summaryLines.joined(separator: "\n") + "\n")
        let api = try Fixture.decodes(result.manifests[0])
        #expect(api.command == ["node", "--max-old-space-size=512", "/srv/api/dist/server.js"])
        #expect(api.instances == 4)
        #expect(api.environment == ["NODE_APP_INSTANCE": "{index}", "NODE_ENV": "production", "LOG_LEVEL": "info"])
        #expect(api.resources.memoryMax == 300 << 20)
        #expect(api.stop.signal == SignalName.number("INT"))
        #expect(api.stop.timeout == .seconds(5))
        #expect(api.restart.startSeconds == 10)
        #expect(api.restart.maxFailedStarts == 10)
        #expect(api.restart.backoffMin == .milliseconds(100))
        #expect(api.restart.backoffMax == .seconds(15))
        #expect(result.manifests[0].toml.contains("[proxy]"))
        let apiNotes = result.manifests[0].notCarriedOver
        let clusterNoted = apiNotes.contains { $0.hasPrefix("exec_mode=cluster") }
        let stagingNoted = apiNotes.contains { $0.hasPrefix("env_staging") }
        #expect(clusterNoted, "\(apiNotes)")
        #expect(stagingNoted, "\(apiNotes)")
        let mailer = try Fixture.decodes(result.manifests[1])
        #expect(mailer.command == ["python3", "/srv/mailer/worker.py", "--queue", "mail \"urgent\""])
        #expect(mailer.restart.policy == .never)
        #expect(mailer.directory == "/srv/mailer")
    }

    @Test func ecosystemJSON() throws {
        let result = PM2Importer(cpuCount: 4).importFile(Fixture.path("pm2/ecosystem.json"))
        #expect(result.errors.isEmpty, "\(result.errors)")
        let manifest = try #require(result.manifests.first)
        try Fixture.golden("pm2-static.toml", manifest.toml)
        let spec = try Fixture.decodes(manifest)
        #expect(spec.command == ["/usr/bin/caddy", "file-server", "--root", "/srv/www", "--listen", ":8080"])
        #expect(spec.instances == 2)
        #expect(spec.restart.policy == .always)
    }

    @Test func computedEcosystemFilesAreRefusedWithAWayOut() {
        let result = PM2Importer(cpuCount: 4).importFile(Fixture.path("pm2/computed.config.js"))
        #expect(result.manifests.isEmpty)
        let error = result.errors.first ?? ""
        #expect(error.contains("computed.config.js:1"))
        #expect(error.contains("JSON.stringify"))
    }

    @Test func plainDataParserAcceptsJSLiterals() throws {
        let value = try PlainDataParser.parse("module.exports = { a: 'x\\'y', \"b\": [1, 2.5, true, null,], /* c */ c: {} };", file: "e.js")
        #expect(value["a"] == .string("x'y"))
        #expect(value["b"] == .array([.number(1), .number(2.5), .bool(true), .null], line: 1))
        #expect(value["c"] == .object([]))
    }
}

@Suite("TOML writer")
struct TOMLWriterTests {
    @Test func quotesWhatNeedsQuoting() throws {
        var draft = ManifestDraft(name: "q")
        draft.command = ["/bin/echo", "a \"b\" \\ c\n\t\u{01}", "ünï"]
        draft.environment = [("WEIRD KEY", "v"), ("A.B", "\"")]
        let toml = TOMLWriter.write(draft)
        #expect(toml.contains(#""WEIRD KEY" = "v""#))
        let spec = try ManifestDecoder.decode(toml, fileName: "q.toml")
        #expect(spec.command == draft.command)
        #expect(spec.environment == ["WEIRD KEY": "v", "A.B": "\""])
    }
}

@Suite("musterctl export kubernetes")
struct KubernetesExportTests {
    static func export(_ file: String, image: String? = "registry.example/web:1.4") throws -> KubernetesExporter.Output {
        let text = try String(contentsOfFile: Fixture.path("export/" + file), encoding: .utf8)
        let spec = try ManifestDecoder.decode(text, fileName: file)
        return try KubernetesExporter().export(spec, image: image, source: file)
    }

    @Test func deploymentsMatchTheirGoldenFiles() throws {
        for file in ["web.toml", "worker.toml"] {
            let output = try Self.export(file)
            try Fixture.golden("k8s-\(output.fileName)", output.yaml)
        }
        let web = try Self.export("web.toml")
        #expect(web.yaml.contains(#"- "8080""#))
        #expect(web.yaml.contains("terminationGracePeriodSeconds: 5"))
        #expect(web.yaml.contains(#"memory: "128Mi""#))
        #expect(web.yaml.contains(#"cpu: "500m""#))
        #expect(web.yaml.contains(#""web-$(POD_NAME)""#))
        #expect(web.yaml.contains(#""say \"hi\"\n$$(not-a-var)""#))
        let pidsMaxNoted = web.notCarriedOver.contains { $0.hasPrefix("[resources] pids_max") }
        let userNoted = web.notCarriedOver.contains { $0.hasPrefix("user = www-data") }
        #expect(pidsMaxNoted, "\(web.notCarriedOver)")
        #expect(userNoted, "\(web.notCarriedOver)")
    }

    @Test func noImageIsAnErrorThatSaysHowToGiveOne() throws {
        #expect { try Self.export("worker.toml", image: nil) } throws: { error in
            (error as? MigrationError)?.message.contains("--image worker=REGISTRY/IMAGE:TAG") == true
        }
    }

    @Test func yamlQuoting() {
        #expect(YAMLWriter.quoted("a\"b\\c\n\u{7F}") == #""a\"b\\c\n\u007F""#)
        let yaml = YAMLWriter.render(.map([("a", .list([.map([("b", .int(1)), ("c", .list([]))])])), ("d", .map([]))]))
        #expect(yaml == "a:\n  - b: 1\n    c: []\nd: {}\n")
    }

    /// Every generated object, checked offline against Kubernetes' schemas (PyPI kubernetes-validate,
    /// installed by scripts/setup). Without it the test fails: run scripts/setup.
    @Test func kubernetesValidateStrictAcceptsThem() throws {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/kubernetes-validate" }
        let installed = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        let tool = try #require(installed, "kubernetes-validate is not installed (scripts/setup installs it: pip install kubernetes-validate)")
        let dir = FileManager.default.temporaryDirectory.path + "/muster-k8s-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var paths: [String] = []
        for file in ["web.toml", "worker.toml"] {
            let output = try Self.export(file)
            let path = dir + "/" + output.fileName
            try output.yaml.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["--strict", "-k", KubernetesExporter.kubernetesVersion] + paths
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "kubernetes-validate: \(text)")
        #expect(!text.contains("ERROR"), "\(text)")
    }
}
