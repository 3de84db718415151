import MusterCore
import Testing

/// `[autoscale]` and `metrics_interval` as docs/manifest.md documents them.
@Suite struct AutoscaleManifestTests {
    static let proxy = """
        command = ["/srv/app", "{port}"]
        [proxy]
        listen = ["127.0.0.1:8080"]
        """

    static func problems(_ text: String) -> [String] {
        do {
            _ = try ManifestDecoder.decode(text, fileName: "web.toml")
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func decodesEveryKey() throws {
        let spec = try ManifestDecoder.decode("instances = 3\n" + Self.proxy + """

            [autoscale]
            min    = 0
            max    = 10
            metric = "rps"
            target = 50
            tolerance        = 0.2
            window           = "20s"
            panic_window     = "2s"
            panic_threshold  = 3.0
            scale_down_delay = "90s"
            max_scale_up     = 4
            max_scale_down   = 2
            scale_to_zero_after = "10m"
            """, fileName: "web.toml")
        let scaler = try #require(spec.autoscale)
        #expect(spec.instances == 3)
        #expect(scaler.min == 0 && scaler.max == 10)
        #expect(scaler.metric == .rps && scaler.target == 50)
        #expect(scaler.tolerance == 0.2 && scaler.panicThreshold == 3)
        #expect(scaler.window == .seconds(20) && scaler.panicWindow == .seconds(2))
        #expect(scaler.scaleDownDelay == .seconds(90) && scaler.scaleToZeroAfter == .seconds(600))
        #expect(scaler.maxScaleUp == 4 && scaler.maxScaleDown == 2)
    }

    @Test func defaultsFollowTheIssue() throws {
        let spec = try ManifestDecoder.decode(Self.proxy + "\n[autoscale]\nmax = 5\n", fileName: "web.toml")
        let scaler = try #require(spec.autoscale)
        #expect(scaler == AutoscaleSpec(min: 1, max: 5, metric: .concurrency, target: 10))
        #expect(scaler.window == .seconds(30) && scaler.panicWindow == .seconds(3) && scaler.scaleDownDelay == .seconds(60))
        #expect(scaler.maxScaleUp == 0 && scaler.maxScaleDown == 1 && scaler.scaleToZeroAfter == .seconds(300))
    }

    @Test func memoryTargetsAreSizesAndCPUTargetsAreCores() throws {
        let memory = try ManifestDecoder.decode("command = [\"/srv/app\"]\n[autoscale]\nmax = 4\nmetric = \"memory\"\ntarget = \"200M\"\n", fileName: "w.toml")
        #expect(memory.autoscale?.target == Double(200 << 20))
        let cpu = try ManifestDecoder.decode("command = [\"/srv/app\"]\n[autoscale]\nmax = 4\nmetric = \"cpu\"\n", fileName: "w.toml")
        #expect(cpu.autoscale?.target == 0.8)
    }

    @Test func anUnwrittenStartingCountIsHeldWithinTheBounds() throws {
        let spec = try ManifestDecoder.decode(Self.proxy + "\n[autoscale]\nmin = 3\nmax = 5\n", fileName: "web.toml")
        #expect(spec.instances == 3)
    }

    @Test func namesFileKeyAndFixForEachMistake() {
        let cases: [(String, String)] = [
            ("[autoscale]\nmin = 1\n", "web.toml: [autoscale] max: is required"),
            ("[autoscale]\nmax = 3\nmin = 4\n", "[autoscale] min = 4: is above max = 3"),
            ("[autoscale]\nmax = 3\nmetric = \"concurency\"\n", "did you mean \"concurrency\"?"),
            ("[autoscale]\nmax = 3\ntolerance = 1.5\n", "[autoscale] tolerance = 1.5: must be below 1"),
            ("[autoscale]\nmax = 3\nwindow = \"2s\"\npanic_window = \"5s\"\n", "[autoscale] panic_window = \"5s\": is longer than window (2s)"),
            ("[autoscale]\nmax = 3\nwindow = \"0s\"\n", "[autoscale] window = \"0s\": must be longer than 0"),
            ("[autoscale]\nmax = 3\nmetric = \"memory\"\n", "target: is required with metric = \"memory\""),
            ("[autoscale]\nmax = 3\ntarget = 0\n", "[autoscale] target = 0: must be at least"),
            ("[autoscale]\nmax = 3\npanic_treshold = 2\n", "did you mean \"panic_threshold\"?"),
            ("[autoscale]\nmax = 3\n", "web.toml: instances = 9: is the starting count of an autoscaled service and must be within [autoscale] min = 1 to max = 3"),
        ]
        for (table, expected) in cases {
            let found = Self.problems((expected.contains("instances = 9") ? "instances = 9\n" : "") + Self.proxy + "\n" + table)
            let named = found.contains { $0.contains(expected) }
            #expect(named, "\(table) → \(found) (wanted \(expected))")
        }
    }

    @Test func proxyMetricsAndScaleToZeroNeedAProxy() {
        let noProxy = "command = [\"/srv/app\"]\n"
        let concurrency = Self.problems(noProxy + "[autoscale]\nmax = 3\n")
        let mentionsProxy = concurrency.contains { $0.contains("[autoscale] metric = \"concurrency\": is measured by the service's proxy") }
        #expect(mentionsProxy, "\(concurrency)")
        let zero = Self.problems(noProxy + "[autoscale]\nmax = 3\nmin = 0\nmetric = \"cpu\"\n")
        let mentionsZero = zero.contains { $0.contains("scaling to zero needs a [proxy]") }
        #expect(mentionsZero, "\(zero)")
    }

    @Test func aChangedAutoscaleTableReconfiguresWithoutRestarting() throws {
        let before = try ManifestDecoder.decode(Self.proxy + "\n[autoscale]\nmax = 3\n", fileName: "web.toml")
        let after = try ManifestDecoder.decode(Self.proxy + "\n[autoscale]\nmax = 6\n", fileName: "web.toml")
        let plan = ReloadPlan(current: [before], next: [after])
        #expect(plan.reconfigured == ["web"])
        #expect(plan.changed.isEmpty)
    }

    @Test func metricsIntervalIsBounded() throws {
        let config = try DaemonConfig.decode("[daemon]\nmetrics_interval = \"500ms\"\n", path: "/etc/muster/musterd.toml")
        #expect(config.metricsInterval == .milliseconds(500))
        #expect(try DaemonConfig.decode("", path: "/etc/muster/musterd.toml").metricsInterval == .seconds(1))
        var message = ""
        do { _ = try DaemonConfig.decode("[daemon]\nmetrics_interval = \"10ms\"\n", path: "/etc/muster/musterd.toml") }
        catch { message = error.description }
        #expect(message.contains("[daemon] metrics_interval = \"10ms\": must be from 100ms to 60s"), "\(message)")
    }
}

/// `[export] image`: read for `musterctl export kubernetes`, ignored by musterd.
@Suite struct ExportManifestTests {
    @Test func imageIsReadAndChangesNothingOnReload() throws {
        let base = "command = [\"/srv/app\"]\n"
        let before = try ManifestDecoder.decode(base, fileName: "web.toml")
        let after = try ManifestDecoder.decode(base + "[export]\nimage = \"registry.example/web:1.4\"\n", fileName: "web.toml")
        #expect(after.exportImage == "registry.example/web:1.4")
        let plan = ReloadPlan(current: [before], next: [after])
        #expect(plan.unchanged == ["web"] && plan.isEmpty)
    }

    @Test func aBadImageNamesTheKey() {
        var message = ""
        do { _ = try ManifestDecoder.decode("command = [\"/srv/app\"]\n[export]\nimage = \"web 1.4\"\n", fileName: "web.toml") }
        catch { message = error.description }
        #expect(message.contains("web.toml: [export] image = \"web 1.4\": not a container image reference"), "\(message)")
    }
}
