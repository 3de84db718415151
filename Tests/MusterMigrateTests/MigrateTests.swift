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
    /// Without an image argument the manifest's own [export] image is used, as musterctl does.
    static func export(_ file: String, image: String? = "registry.example/web:1.4", port: Int = 8080) throws -> KubernetesExporter.Output {
        let text = try String(contentsOfFile: Fixture.path("export/" + file), encoding: .utf8)
        let spec = try ManifestDecoder.decode(text, fileName: file)
        return try KubernetesExporter(port: port).export(spec, image: image ?? spec.container?.imageRef ?? spec.exportImage, source: file)
    }

    static func export(toml text: String, port: Int = 8080) throws -> KubernetesExporter.Output {
        let spec = try ManifestDecoder.decode(text, fileName: "inline.toml")
        return try KubernetesExporter(port: port).export(spec, image: "registry.example/inline:1", source: "inline.toml")
    }

    /// Every fixture and the image it is exported with (nil: its own [export] image).
    static let fixtures: [(file: String, image: String?)] = [
        ("web.toml", "registry.example/web:1.4"), ("worker.toml", "registry.example/web:1.4"),
        ("api.toml", nil), ("hello.toml", nil), ("cache.toml", nil), ("shop.toml", nil),
    ]

    @Test func everyFixtureMatchesItsGoldenFile() throws {
        for (file, image) in Self.fixtures {
            let output = try Self.export(file, image: image)
            try Fixture.golden("k8s-\(output.fileName)", output.yaml)
        }
        let web = try Self.export("web.toml")
        #expect(web.kinds == ["Deployment"])
        #expect(web.yaml.contains(#"- "8080""#))
        #expect(web.yaml.contains("terminationGracePeriodSeconds: 5"))
        #expect(web.yaml.contains(#"memory: "128Mi""#))
        #expect(web.yaml.contains(#"cpu: "500m""#))
        #expect(web.yaml.contains(#""web-$(POD_NAME)""#))
        #expect(web.yaml.contains(#""say \"hi\"\n$$(not-a-var)""#))
        #expect(web.yaml.contains("allowPrivilegeEscalation: false"))
        let pidsMaxNoted = web.notCarriedOver.contains { $0.hasPrefix("[resources] pids_max") }
        let userNoted = web.notCarriedOver.contains { $0.hasPrefix("user = www-data") }
        #expect(pidsMaxNoted, "\(web.notCarriedOver)")
        #expect(userNoted, "\(web.notCarriedOver)")
    }

    @Test func aContainerExportsItsImageRefAndRunsTheImagesOwnCommand() throws {
        let shop = try Self.export("shop.toml", image: nil)
        let objects = try YAMLDocuments.parse(shop.yaml)
        let deployment = try #require(objects.first as? [String: Any])
        let podSpec = try #require(YAMLDocuments.value(deployment, "spec", "template", "spec") as? [String: Any])
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        #expect(container["image"] as? String == "registry.example.com/shop/web:1.4")
        #expect(container["command"] == nil)
        #expect(container["args"] == nil)
        let mountsNoted = shop.notCarriedOver.contains { $0.hasPrefix("[[container.mounts]] (/var/lib/shop)") }
        #expect(mountsNoted, "\(shop.notCarriedOver)")

        var spec = try ManifestDecoder.decode("[container]\nimage = \"images/shop\"\n", fileName: "shop.toml")
        spec.container?.imageRef = nil
        do {
            _ = try KubernetesExporter(port: 8080).export(spec, image: nil, source: "shop.toml")
            Issue.record("exported without an image")
        } catch {
            #expect(error.message.contains("runs a [container] without image_ref: the OCI image images/shop is on this host, not in a registry"), "\(error.message)")
        }
    }

    @Test func httpProxyWithCPUAutoscaleIsDeploymentServiceAndHPA() throws {
        let api = try Self.export("api.toml", image: nil)
        #expect(api.kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"])
        let objects = try YAMLDocuments.parse(api.yaml)
        #expect(objects.count == 3)
        let deployment = try #require(objects.first as? [String: Any])
        let deploymentSpec = try #require(deployment["spec"] as? [String: Any])
        // The HPA owns the count: no replicas for kubectl apply to reset.
        #expect(deploymentSpec["replicas"] == nil)
        let podSpec = try #require(YAMLDocuments.value(deployment, "spec", "template", "spec") as? [String: Any])
        #expect(podSpec["terminationGracePeriodSeconds"] as? Int == 20)  // drain_timeout 10s + [stop] timeout 10s
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        #expect(container["image"] as? String == "registry.example/api:3.2")
        #expect(YAMLDocuments.value(container, "lifecycle", "preStop", "sleep", "seconds") as? Int == 10)
        #expect(YAMLDocuments.value(container, "readinessProbe", "httpGet", "path") as? String == "/healthz")
        #expect(YAMLDocuments.value(container, "readinessProbe", "periodSeconds") as? Int == 2)
        #expect(YAMLDocuments.value(container, "readinessProbe", "successThreshold") as? Int == 2)
        #expect(YAMLDocuments.value(container, "livenessProbe", "failureThreshold") as? Int == 3)
        #expect(YAMLDocuments.value(container, "startupProbe", "failureThreshold") as? Int == 150)

        let service = try #require(objects[1] as? [String: Any])
        #expect(service["kind"] as? String == "Service")
        let ports = try #require(YAMLDocuments.value(service, "spec", "ports") as? [[String: Any]])
        #expect(ports.count == 1)
        #expect(ports.first?["port"] as? Int == 80)
        #expect(ports.first?["targetPort"] as? Int == 8080)
        #expect(ports.first?["protocol"] as? String == "TCP")
        let selector = YAMLDocuments.value(service, "spec", "selector") as? [String: String]
        let podLabels = YAMLDocuments.value(deployment, "spec", "template", "metadata", "labels") as? [String: String]
        #expect(selector != nil)
        #expect(selector == podLabels)

        let hpa = try #require(objects[2] as? [String: Any])
        #expect(hpa["apiVersion"] as? String == "autoscaling/v2")
        #expect(YAMLDocuments.value(hpa, "spec", "scaleTargetRef", "name") as? String == "api")
        #expect(YAMLDocuments.value(hpa, "spec", "minReplicas") as? Int == 2)
        #expect(YAMLDocuments.value(hpa, "spec", "maxReplicas") as? Int == 10)
        let metric = try #require((YAMLDocuments.value(hpa, "spec", "metrics") as? [[String: Any]])?.first)
        #expect(YAMLDocuments.value(metric, "resource", "name") as? String == "cpu")
        #expect(YAMLDocuments.value(metric, "resource", "target", "type") as? String == "AverageValue")
        #expect(YAMLDocuments.value(metric, "resource", "target", "averageValue") as? String == "600m")
        #expect(YAMLDocuments.value(hpa, "spec", "behavior", "scaleDown", "stabilizationWindowSeconds") as? Int == 300)
        let upPolicy = (YAMLDocuments.value(hpa, "spec", "behavior", "scaleUp", "policies") as? [[String: Any]])?.first
        let downPolicy = (YAMLDocuments.value(hpa, "spec", "behavior", "scaleDown", "policies") as? [[String: Any]])?.first
        #expect(upPolicy?["type"] as? String == "Pods")
        #expect(upPolicy?["value"] as? Int == 4)
        #expect(upPolicy?["periodSeconds"] as? Int == KubernetesExporter.hpaPeriodSeconds)
        #expect(downPolicy?["value"] as? Int == 2)

        let toleranceNoted = api.notCarriedOver.contains { $0.hasPrefix("[autoscale] tolerance") && $0.contains("HPAConfigurableTolerance") }
        let panicNoted = api.notCarriedOver.contains { $0.hasPrefix("[autoscale] window") && $0.contains("panic") }
        let requestsNoted = api.notCarriedOver.contains { $0.hasPrefix("[proxy] protocol = http") }
        #expect(toleranceNoted, "\(api.notCarriedOver)")
        #expect(panicNoted, "\(api.notCarriedOver)")
        #expect(requestsNoted, "\(api.notCarriedOver)")
    }

    @Test func concurrencyWithScaleToZeroIsAKnativeService() throws {
        let hello = try Self.export("hello.toml", image: nil)
        #expect(hello.kinds == ["Knative Service"])
        let objects = try YAMLDocuments.parse(hello.yaml)
        #expect(objects.count == 1)
        let service = try #require(objects.first as? [String: Any])
        #expect(service["apiVersion"] as? String == "serving.knative.dev/v1")
        #expect(service["kind"] as? String == "Service")
        #expect(YAMLDocuments.value(service, "metadata", "name") as? String == "hello")
        let containers = try #require(YAMLDocuments.value(service, "spec", "template", "spec", "containers") as? [[String: Any]])
        #expect(containers.count == 1)
        let container = try #require(containers.first)
        #expect(container["image"] as? String == "registry.example/hello:1.0")
        let port = try #require((container["ports"] as? [[String: Any]])?.first)
        #expect(port["name"] as? String == "http1")
        #expect(port["containerPort"] as? Int == 8080)
        let envNames = (container["env"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(envNames == ["MUSTER_SERVICE", "GREETING"])  // Knative sets PORT; no fieldRef without {index}
        #expect(YAMLDocuments.value(container, "readinessProbe", "tcpSocket", "port") as? Int == 8080)
        #expect(container["lifecycle"] == nil)
        #expect(YAMLDocuments.value(service, "spec", "template", "spec", "terminationGracePeriodSeconds") == nil)

        let annotations = try #require(YAMLDocuments.value(service, "spec", "template", "metadata", "annotations") as? [String: String])
        try KnativeAnnotations.check(annotations)
        #expect(annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev")
        #expect(annotations["autoscaling.knative.dev/metric"] == "concurrency")
        #expect(annotations["autoscaling.knative.dev/target"] == "50")
        #expect(annotations["autoscaling.knative.dev/min-scale"] == "0")
        #expect(annotations["autoscaling.knative.dev/max-scale"] == "20")
        #expect(annotations["autoscaling.knative.dev/initial-scale"] == "1")
        #expect(annotations["autoscaling.knative.dev/window"] == "1m")
        #expect(annotations["autoscaling.knative.dev/panic-window-percentage"] == "10.0")
        #expect(annotations["autoscaling.knative.dev/panic-threshold-percentage"] == "300.0")
        #expect(annotations["autoscaling.knative.dev/scale-down-delay"] == "30s")
        // Idle 10m in Muster: Knative's 60s stable window, then 9m of retention.
        #expect(annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "9m")

        let toleranceNoted = hello.notCarriedOver.contains { $0.hasPrefix("[autoscale] tolerance") }
        let stepsNoted = hello.notCarriedOver.contains { $0.hasPrefix("[autoscale] max_scale_up") && $0.contains("max-scale-down-rate") }
        let listenNoted = hello.notCarriedOver.contains { $0.hasPrefix("[proxy] listen") }
        #expect(toleranceNoted, "\(hello.notCarriedOver)")
        #expect(stepsNoted, "\(hello.notCarriedOver)")
        #expect(listenNoted, "\(hello.notCarriedOver)")
    }

    @Test func tcpProxyWithoutAutoscaleIsDeploymentAndService() throws {
        let cache = try Self.export("cache.toml", image: nil)
        #expect(cache.kinds == ["Deployment", "Service"])
        let objects = try YAMLDocuments.parse(cache.yaml)
        let deployment = try #require(objects.first as? [String: Any])
        #expect(YAMLDocuments.value(deployment, "spec", "replicas") as? Int == 1)
        #expect(YAMLDocuments.value(deployment, "spec", "template", "spec", "terminationGracePeriodSeconds") as? Int == 25)
        let container = try #require((YAMLDocuments.value(deployment, "spec", "template", "spec", "containers") as? [[String: Any]])?.first)
        #expect(YAMLDocuments.value(container, "readinessProbe", "periodSeconds") as? Int == 1)
        #expect(container["livenessProbe"] == nil)  // restart_unhealthy = false
        #expect(container["startupProbe"] == nil)
        let containerPort = (container["ports"] as? [[String: Any]])?.first
        #expect(containerPort?["name"] as? String == "tcp")
        let service = try #require(objects.last as? [String: Any])
        let port = (YAMLDocuments.value(service, "spec", "ports") as? [[String: Any]])?.first
        #expect(port?["name"] as? String == "tcp")
        #expect(port?["port"] as? Int == 6379)
        #expect(port?["targetPort"] as? Int == 8080)
        let secondAddressNoted = cache.notCarriedOver.contains { $0.hasPrefix("[proxy] listen") && $0.contains("[::]:6379") }
        let intervalNoted = cache.notes.contains { $0.hasPrefix("[health] interval = 500ms") }
        let httpNoted = cache.notCarriedOver.contains { $0.hasPrefix("[proxy] protocol") }
        #expect(secondAddressNoted, "\(cache.notCarriedOver)")
        #expect(intervalNoted, "\(cache.notes)")
        #expect(!httpNoted)
    }

    @Test func whereKnativeCannotGo() throws {
        let proxied = "command = [\"/bin/app\", \"{port}\"]\n[proxy]\nlisten = [\"0.0.0.0:80\"]\n"
        // cpu with min = 0 over http: Knative's KPA, on concurrency, since only it scales to zero.
        let cpuToZero = try Self.export(toml: proxied + "[autoscale]\nmin = 0\nmax = 4\nmetric = \"cpu\"\n")
        #expect(cpuToZero.kinds == ["Knative Service"])
        #expect(cpuToZero.yaml.contains(#"autoscaling.knative.dev/metric: "concurrency""#))
        #expect(!cpuToZero.yaml.contains("autoscaling.knative.dev/target:"))
        let cpuNoted = cpuToZero.notCarriedOver.contains { $0.hasPrefix("[autoscale] metric = cpu") }
        #expect(cpuNoted, "\(cpuToZero.notCarriedOver)")
        // Knative serves HTTP only: a tcp proxy scaled on connections keeps a Deployment, unscaled.
        let tcp = proxied + "protocol = \"tcp\"\n"
        let connections = try Self.export(toml: tcp + "[autoscale]\nmax = 4\nmetric = \"concurrency\"\n")
        #expect(connections.kinds == ["Deployment", "Service"])
        let concurrencyNoted = connections.notCarriedOver.contains { $0.hasPrefix("[autoscale] metric = concurrency") }
        #expect(concurrencyNoted, "\(connections.notCarriedOver)")
        // …and a tcp proxy with cpu and min = 0 gets an HPA from one.
        let tcpToZero = try Self.export(toml: tcp + "[autoscale]\nmin = 0\nmax = 4\nmetric = \"cpu\"\n")
        #expect(tcpToZero.kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"])
        #expect(tcpToZero.yaml.contains("minReplicas: 1"))
        // Knative's queue-proxy owns some ports.
        #expect(throws: MigrationError.self) { try Self.export(toml: proxied + "[autoscale]\nmin = 0\nmax = 4\n", port: 8012) }
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

    /// Every generated Kubernetes object, checked offline against Kubernetes' schemas (PyPI
    /// kubernetes-validate, installed by scripts/setup), one file per object. Knative's Service is
    /// a custom resource the tool has no schema for: the Knative tests check it instead.
    @Test func kubernetesValidateStrictAcceptsThem() throws {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/kubernetes-validate" }
        let installed = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        let tool = try #require(installed, "kubernetes-validate is not installed (scripts/setup installs it: pip install kubernetes-validate)")
        let dir = FileManager.default.temporaryDirectory.path + "/muster-k8s-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var paths: [String] = []
        var knative = 0
        for (file, image) in Self.fixtures {
            let output = try Self.export(file, image: image)
            for (position, document) in YAMLDocuments.split(output.yaml).enumerated() {
                if document.contains("apiVersion: \"serving.knative.dev/v1\"") { knative += 1; continue }
                let path = dir + "/\(output.name)-\(position).yaml"
                try document.write(toFile: path, atomically: true, encoding: .utf8)
                paths.append(path)
            }
        }
        #expect(paths.count == 9)  // web 1, worker 1, api 3, cache 2, shop 2
        #expect(knative == 1)
        let result = try Tool.run(tool, ["--strict", "-k", KubernetesExporter.kubernetesVersion] + paths)
        #expect(result.status == 0, "kubernetes-validate: \(result.output)")
        #expect(!result.output.contains("ERROR"), "\(result.output)")
    }
}

/// Knative Serving's per-revision autoscaling annotations, as its documentation names them:
/// https://knative.dev/docs/serving/autoscaling/ — autoscaler-types (class), autoscaling-metrics
/// (metric), autoscaling-targets (target, target-utilization-percentage), scale-bounds (min-scale,
/// max-scale, initial-scale, activation-scale, scale-down-delay, window), kpa-specific (window,
/// panic-window-percentage, panic-threshold-percentage), scale-to-zero
/// (scale-to-zero-pod-retention-period) and target-burst-capacity. Knative ignores a misspelt
/// one (the old camelCase minScale included) without a word, so an exact list is the check.
enum KnativeAnnotations {
    static let documented: Set<String> = [
        "autoscaling.knative.dev/class", "autoscaling.knative.dev/metric", "autoscaling.knative.dev/target",
        "autoscaling.knative.dev/target-utilization-percentage", "autoscaling.knative.dev/min-scale",
        "autoscaling.knative.dev/max-scale", "autoscaling.knative.dev/initial-scale", "autoscaling.knative.dev/activation-scale",
        "autoscaling.knative.dev/scale-down-delay", "autoscaling.knative.dev/window",
        "autoscaling.knative.dev/panic-window-percentage", "autoscaling.knative.dev/panic-threshold-percentage",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period", "autoscaling.knative.dev/target-burst-capacity",
    ]

    /// Every key documented, and every value in the documented form and bounds.
    static func check(_ annotations: [String: String]) throws {
        let unknown = Set(annotations.keys).subtracting(documented)
        #expect(unknown.isEmpty, "not among Knative's documented annotations: \(unknown.sorted())")
        let key = "autoscaling.knative.dev/"
        #expect(["kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev", nil].contains(annotations[key + "class"]))
        #expect(["concurrency", "rps", nil].contains(annotations[key + "metric"]))
        for name in ["min-scale", "max-scale", "initial-scale"] {
            let value = try #require(annotations[key + name], "\(name) is missing")
            #expect(Int(value).map(Self.isNatural) == true, "\(name): \(value) is not an integer ≥ 0")
        }
        if let target = annotations[key + "target"] {
            #expect((Double(target) ?? 0) >= 0.01, "target: \(target)")
        }
        // Go durations, within the documented bounds.
        let window = try #require(annotations[key + "window"].flatMap(Self.seconds))
        #expect(window >= 6 && window <= 3600, "window: \(window)s")
        let delay = try #require(annotations[key + "scale-down-delay"].flatMap(Self.seconds))
        #expect(delay >= 0 && delay <= 3600, "scale-down-delay: \(delay)s")
        if let retention = annotations[key + "scale-to-zero-pod-retention-period"] {
            #expect(Self.seconds(retention) != nil, "scale-to-zero-pod-retention-period: \(retention)")
        }
        let panicWindow = try #require(annotations[key + "panic-window-percentage"].flatMap(Double.init))
        #expect(panicWindow >= 1 && panicWindow <= 100, "panic-window-percentage: \(panicWindow)")
        let panicThreshold = try #require(annotations[key + "panic-threshold-percentage"].flatMap(Double.init))
        #expect(panicThreshold >= 110 && panicThreshold <= 1000, "panic-threshold-percentage: \(panicThreshold)")
    }

    static func isNatural(_ value: Int) -> Bool { value >= 0 }

    /// "60s", "9m", "1h", "500ms" (one unit, as the exporter writes them) in seconds.
    static func seconds(_ text: String) -> Double? {
        for (unit, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where text.hasSuffix(unit) {
            return Double(text.dropLast(unit.count)).map { $0 * scale }
        }
        return nil
    }
}

/// The exporter's multi-document YAML, read back with PyYAML (which kubernetes-validate brings).
enum YAMLDocuments {
    /// The documents of a `---` separated stream, each as its own text.
    static func split(_ text: String) -> [String] {
        var documents: [String] = []
        var current = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "---" { documents.append(current); current = ""; continue }
            current += line + "\n"
        }
        documents.append(current)
        return documents.filter { $0.contains("apiVersion:") }
    }

    static func parse(_ text: String) throws -> [Any] {
        let script = "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"
        let result = try Tool.run("/usr/bin/env", ["python3", "-c", script], input: text)
        guard result.status == 0 else {
            Issue.record("python3 could not read the YAML (PyYAML comes with kubernetes-validate: scripts/setup): \(result.output)")
            throw MigrationError("unreadable YAML")
        }
        return try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [Any] ?? []
    }

    /// The value at a path of map keys, or nil.
    static func value(_ object: Any, _ path: String...) -> Any? {
        var current: Any? = object
        for key in path { current = (current as? [String: Any])?[key] }
        return current
    }
}

enum Tool {
    /// Runs a program to its end; stdout and stderr together.
    static func run(_ program: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
