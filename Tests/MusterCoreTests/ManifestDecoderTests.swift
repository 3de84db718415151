import MusterCore
import Testing

@Suite("Manifest decoding and validation messages")
struct ManifestDecoderTests {
    static let full = """
        name        = "web"
        command     = ["/usr/bin/python3", "-m", "http.server", "{port}"]
        directory   = "/srv/web"
        user        = "www-data"
        group       = "www-data"
        environment = { APP_ENV = "production" }
        instances   = 2

        [restart]
        policy       = "on-failure"
        start_seconds = 1.5
        max_failed_starts = 7
        backoff_min  = "100ms"
        backoff_max  = "20s"
        success_exit_codes = [0, 3]

        [stop]
        signal  = "INT"
        timeout = "4s"

        [resources]
        memory_max = "256M"
        cpu_max    = 0.5
        pids_max   = 128

        [logs]
        max_bytes = "1M"
        backups   = 3
        """

    @Test func decodesEveryKeyOfTheDocumentedExample() throws {
        let spec = try ManifestDecoder.decode(Self.full, fileName: "web.toml")
        #expect(spec.name == "web")
        #expect(spec.command == ["/usr/bin/python3", "-m", "http.server", "{port}"])
        #expect(spec.directory == "/srv/web")
        #expect(spec.user == "www-data")
        #expect(spec.group == "www-data")
        #expect(spec.environment == ["APP_ENV": "production"])
        #expect(spec.instances == 2)
        #expect(spec.restart.policy == .onFailure)
        #expect(spec.restart.startSeconds == 1.5)
        #expect(spec.restart.maxFailedStarts == 7)
        #expect(spec.restart.backoffMin == .milliseconds(100))
        #expect(spec.restart.backoffMax == .seconds(20))
        #expect(spec.restart.successExitCodes == [0, 3])
        #expect(spec.stop.signal == 2)
        #expect(spec.stop.timeout == .seconds(4))
        #expect(spec.resources == ResourceLimits(memoryMax: 256 << 20, cpuMax: 0.5, pidsMax: 128))
        #expect(spec.logs.maxBytes == 1 << 20)
        #expect(spec.logs.backups == 3)
    }

    @Test func appliesDefaultsAndTakesTheNameFromTheFileStem() throws {
        let spec = try ManifestDecoder.decode(#"command = ["/bin/true"]"#, fileName: "worker.toml")
        #expect(spec.name == "worker")
        #expect(spec.directory == "/")
        #expect(spec.instances == 1)
        #expect(spec.inheritEnvironment == false)
        #expect(spec.restart == RestartSpec())
        #expect(spec.restart.policy == .always)
        #expect(spec.restart.startSeconds == 1)
        #expect(spec.restart.maxFailedStarts == 5)
        #expect(spec.restart.backoffMin == .milliseconds(200))
        #expect(spec.restart.backoffMax == .seconds(30))
        #expect(spec.stop.signal == 15)
        #expect(spec.stop.timeout == .seconds(10))
        #expect(spec.resources.isEmpty)
        #expect(spec.logs.maxBytes == 10 << 20)
        #expect(spec.logs.backups == 5)
    }

    private func messages(_ text: String, file: String = "web.toml") -> [String] {
        do {
            _ = try ManifestDecoder.decode(text, fileName: file)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func aWrongSizeNamesTheFileTheKeyAndAFix() {
        let issues = messages("command = [\"/bin/true\"]\n[resources]\nmemory_max = \"12Q\"\n")
        #expect(issues == [#"web.toml: [resources] memory_max = "12Q": not a size (try 256M or 1G)"#])
    }

    @Test func aDurationOrNumberTooLargeForADurationIsAnError() {
        let issues = messages("command = [\"/bin/true\"]\n[restart]\nstart_seconds = 1e30\nbackoff_max = 1e30\n[stop]\ntimeout = \"1e25s\"\n")
        #expect(issues.count == 3, "\(issues)")
        let named = issues.contains { $0.hasPrefix("web.toml: [restart] start_seconds = ") && $0.hasSuffix("must be at most 1e12 (try start_seconds = 1.0)") }
        #expect(named, "\(issues)")
    }

    @Test func anUnknownKeySuggestsTheNearestKnownOne() {
        let issues = messages("command = [\"/bin/true\"]\ninstnces = 2\n[restart]\npolcy = \"always\"\n")
        #expect(issues.contains(#"web.toml: unknown key "instnces" (did you mean "instances"?)"#))
        #expect(issues.contains(#"web.toml: [restart] unknown key "polcy" (did you mean "policy"?)"#))
    }

    @Test func aSyntaxErrorGivesLineAndColumn() throws {
        let issues = messages("command = [\"/bin/true\"]\ninstances = = 2\n")
        let first = try #require(issues.first)
        #expect(first.hasPrefix("web.toml:2:"), "got \(first)")
        #expect(first.contains("TOML syntax"))
    }

    @Test func wrongTypesNameWhatWasGivenAndAnExample() {
        let issues = messages("command = \"/bin/true\"\ninstances = \"two\"\n[restart]\npolicy = \"sometimes\"\n[stop]\ntimeout = \"soon\"\nsignal = \"NOPE\"\n")
        let commandExplained = issues.contains { $0.hasPrefix("web.toml: command = \"/bin/true\": expected an array of strings, got a string") }
        #expect(commandExplained, "\(issues)")
        #expect(issues.contains(#"web.toml: instances = "two": expected an integer, got a string (try instances = 2)"#))
        #expect(issues.contains(#"web.toml: [restart] policy = "sometimes": must be always, on-failure or never"#))
        let timeoutExplained = issues.contains { $0.hasPrefix(#"web.toml: [stop] timeout = "soon": not a duration"#) }
        #expect(timeoutExplained, "\(issues)")
        let signalExplained = issues.contains { $0.hasPrefix(#"web.toml: [stop] signal = "NOPE": not a signal"#) }
        #expect(signalExplained, "\(issues)")
    }

    @Test func commandIsRequiredAndNamesMustBeSafe() {
        let missingCommand = messages("instances = 1\n")
        let commandRequired = missingCommand.contains { $0.contains("command: is required") }
        #expect(commandRequired, "\(missingCommand)")
        let badName = messages("name = \"Web App\"\ncommand = [\"/bin/true\"]\n")
        let nameRefused = badName.contains { $0.contains("a service name uses only a-z, 0-9 and '-'") }
        #expect(nameRefused, "\(badName)")
    }

    @Test func aMistypedPlaceholderIsCaughtButShellBracesPass() {
        #expect(messages("command = [\"/bin/app\", \"--port={prot}\"]\n") == [#"web.toml: command = "--port={prot}": unknown placeholder {prot} (did you mean {port}?)"#])
        #expect(messages("command = [\"/bin/sh\", \"-c\", \"echo ${HOME} {port}\"]\n").isEmpty)
    }

    @Test func backoffMaxBelowMinIsRefused() {
        let issues = messages("command = [\"/bin/true\"]\n[restart]\nbackoff_min = \"5s\"\nbackoff_max = \"1s\"\n")
        let refused = issues.contains { $0.contains("shorter than backoff_min") }
        #expect(refused, "\(issues)")
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        #expect(messages("command = [\"/bin/true\"]\ninstances = -1\nfoo = 1\n[resources]\npids_max = 0\ncpu_max = \"half\"\n").count == 4)
    }
}

@Suite("Daemon configuration")
struct DaemonConfigTests {
    @Test func relativePathsResolveFromTheConfigFolder() throws {
        let text = """
            [daemon]
            services_dir   = "services.d"
            control_socket = "/run/muster/muster.sock"
            state_dir      = "../state"
            log_dir        = "/var/log/muster"
            cgroup_root    = "muster-test"
            instance_ports = "21000-21099"
            control_group  = "ops"
            """
        let config = try DaemonConfig.decode(text, path: "/etc/muster/musterd.toml")
        #expect(config.servicesDir == "/etc/muster/services.d")
        #expect(config.stateDir == "/etc/muster/../state")
        #expect(config.controlSocket == "/run/muster/muster.sock")
        #expect(config.cgroupRoot == .named("muster-test"))
        #expect(config.instancePorts == 21000...21099)
        #expect(config.controlGroup == "ops")
    }

    @Test func defaultsMatchTheDocumentedOnes() throws {
        let config = try DaemonConfig.decode("[daemon]\n", path: "/etc/muster/musterd.toml")
        #expect(config.cgroupRoot == .auto)
        #expect(config.instancePorts == 20000...29999)
        #expect(config.stateDir == "/var/lib/muster")
        #expect(config.logDir == "/var/log/muster")
        #expect(config.controlSocket == "/run/muster/muster.sock")
        #expect(config.controlGroup == "muster")
    }

    @Test func badValuesAreExplained() {
        do {
            _ = try DaemonConfig.decode("[daemon]\ninstance_ports = \"30000-20000\"\ncgroup_root = \"a/b\"\nstate_dri = \"x\"\n", path: "/x/musterd.toml")
            Issue.record("expected errors")
        } catch {
            let text = error.issues.map(\.description)
            #expect(text.contains(#"musterd.toml: [daemon] instance_ports = "30000-20000": not a port range (try "20000-29999")"#))
            let cgroupRootExplained = text.contains { $0.contains("cgroup_root") }
            #expect(cgroupRootExplained, "\(text)")
            #expect(text.contains(#"musterd.toml: [daemon] unknown key "state_dri" (did you mean "state_dir"?)"#))
        }
    }
}

@Suite("Durations, sizes, signals, targets")
struct ValueParsingTests {
    @Test func durations() {
        #expect(DurationText.parse("200ms") == .milliseconds(200))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        #expect(DurationText.parse("5m") == .seconds(300))
        #expect(DurationText.parse("2h") == .seconds(7200))
        #expect(DurationText.parse("3") == .seconds(3))
        #expect(DurationText.parse("soon") == nil)
        #expect(DurationText.parse("-1s") == nil)
        // Past what Duration holds: refused, not a trap.
        #expect(DurationText.parse("1e25") == nil)
        #expect(DurationText.parse("1e25s") == nil)
        #expect(DurationText.parse("1e15h") == nil)
        #expect(DurationText.parse("nan") == nil)
        #expect(DurationText.parse("inf") == nil)
        #expect(DurationText.format(.milliseconds(200)) == "200ms")
        #expect(DurationText.format(.seconds(30)) == "30s")
        #expect(DurationText.format(.seconds(120)) == "2m")
        #expect(DurationText.format(.seconds(1.6949999999999998)) == "1.695s")
        #expect(DurationText.format(.milliseconds(1500)) == "1.5s")
        #expect(DurationText.format(.microseconds(2500)) == "2.5ms")
    }

    @Test func sizesAreBinary() {
        #expect(ByteSize.parse("256M") == 256 << 20)
        #expect(ByteSize.parse("1G") == 1 << 30)
        #expect(ByteSize.parse("512K") == 512 << 10)
        #expect(ByteSize.parse("10MiB") == 10 << 20)
        #expect(ByteSize.parse("4096") == 4096)
        #expect(ByteSize.parse("12Q") == nil)
        #expect(ByteSize.format(256 << 20) == "256M")
    }

    @Test func signals() {
        #expect(SignalName.number("TERM") == 15)
        #expect(SignalName.number("sigint") == 2)
        #expect(SignalName.number("9") == 9)
        #expect(SignalName.number("NOPE") == nil)
        #expect(SignalName.name(1) == "SIGHUP")
    }

    @Test func targets() {
        #expect(Target("all") == .all)
        #expect(Target("web") == .service("web"))
        #expect(Target("web:1") == .instance("web", 1))
        #expect(Target("web:x") == nil)
        #expect(Target("Web") == nil)
        #expect(Target("web:-1") == nil)
    }
}
