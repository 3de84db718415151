/// Turns a service manifest's text into a `ServiceSpec`, or into every problem it has.
public enum ManifestDecoder {
    /// - Parameters:
    ///   - text: the TOML source.
    ///   - fileName: shown in messages, e.g. "web.toml"; its stem is the default service name.
    ///   - sourcePath: recorded in the spec.
    /// - Throws: `ManifestErrors` naming the file, the key and a fix for each problem.
    public static func decode(_ text: String, fileName: String, sourcePath: String = "") throws(ManifestErrors) -> ServiceSpec {
        let entries: [(key: String, value: TOMLNode)]
        do {
            entries = try TOMLDocument.parse(text)
        } catch {
            throw ManifestErrors([ManifestIssue(file: fileName, line: error.line, column: error.column, message: "TOML syntax: \(error.message)")])
        }
        var top = TableReader(file: fileName, table: nil, entries: entries)
        var issues: [ManifestIssue] = []
        /// Reads the table `name` when the manifest has it: its own reader, so unknown keys and
        /// mistakes are named `[name] key`, and its issues join the file's.
        func section(_ name: String, _ decode: (inout TableReader) -> Void) {
            guard let entries = top.subtable(name) else { return }
            var reader = TableReader(file: fileName, table: name, entries: entries)
            decode(&reader)
            reader.finish()
            issues += reader.issues
        }

        let stem = fileName.hasSuffix(".toml") ? String(fileName.dropLast(5)) : fileName
        let name = top.string("name", example: "\"web\"") ?? stem
        if !ServiceName.isValid(name) {
            top.fail("name", .string(name), "a service name uses only a-z, 0-9 and '-', starts with a letter or digit, at most 63 characters (try name = \"web\")")
        }
        var spec = ServiceSpec(name: name, command: [], sourcePath: sourcePath)

        if let command = top.stringArray("command", example: "[\"/usr/bin/python3\", \"-m\", \"http.server\", \"{port}\"]") {
            if command.isEmpty || command[0].isEmpty {
                top.fail("command", .array(command.map { .string($0) }), "needs at least the program to run (try command = [\"/usr/bin/python3\", \"app.py\"])")
            } else {
                spec.command = command
            }
        } else if top.value("command") == nil && !containerHasImage(&top) {
            top.fail("command", nil, "is required: the program and its arguments (try command = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"{port}\"])")
        }
        if let directory = top.string("directory", example: "\"/srv/web\"") {
            if directory.hasPrefix("/") || directory.hasPrefix("{") { spec.directory = directory }
            else { top.fail("directory", .string(directory), "must be an absolute path (try directory = \"/srv/web\")") }
        }
        spec.user = top.string("user", example: "\"www-data\"")
        spec.group = top.string("group", example: "\"www-data\"")
        if let environment = top.subtable("environment") {
            for (key, value) in environment {
                guard case .string(let text) = value else {
                    top.fail("environment", value, "\(key) must be a string (try environment = { \(key) = \"\(value.rendered.replacingQuotes())\" })")
                    continue
                }
                if key.isEmpty || key.contains("=") {
                    top.fail("environment", .string(key), "\"\(key)\" is not a variable name")
                    continue
                }
                spec.environment[key] = text
            }
        }
        if let inherit = top.boolean("inherit_environment") { spec.inheritEnvironment = inherit }
        if let instances = top.integer("instances", example: "2", range: 0...10_000) { spec.instances = instances }
        decodeDependencies(&top, into: &spec, sourcePath: sourcePath)

        section("restart") { reader in decodeRestart(&reader, into: &spec.restart) }
        section("stop") { reader in
            if let name = reader.string("signal", example: "\"TERM\"") {
                if let number = SignalName.number(name) { spec.stop.signal = number }
                else { reader.fail("signal", .string(name), "not a signal (try \"TERM\", \"INT\", \"QUIT\" or \"HUP\")") }
            }
            if let timeout = reader.duration("timeout", example: "\"10s\"") { spec.stop.timeout = timeout }
        }
        section("resources") { reader in
            if let memory = reader.size("memory_max", example: "256M or 1G") {
                if memory < 1 << 20 { reader.fail("memory_max", .integer(Int(memory)), "below 1M leaves nothing to run in (try 256M or 1G)") }
                else { spec.resources.memoryMax = memory }
            }
            if let cpu = reader.number("cpu_max", example: "0.5", minimum: 0.01) { spec.resources.cpuMax = cpu }
            if let pids = reader.integer("pids_max", example: "128", range: 1...4_194_304) { spec.resources.pidsMax = pids }
        }
        section("logs") { reader in
            if let target = reader.string("target", example: "\"journal\"") {
                if let value = LogSpec.Target(rawValue: target) { spec.logs.target = value }
                else { reader.fail("target", .string(target), "must be \"file\" or \"journal\"") }
            }
            if let size = reader.size("max_bytes", example: "10M") {
                if size < 1024 { reader.fail("max_bytes", .integer(Int(size)), "too small to hold a line (try 10M)") }
                else { spec.logs.maxBytes = size }
            }
            if let backups = reader.integer("backups", example: "5", range: 0...1000) { spec.logs.backups = backups }
        }
        section("proxy") { reader in spec.proxy = decodeProxy(&reader) }
        section("health") { reader in decodeHealth(&reader, into: &spec.health) }
        section("autoscale") { reader in
            spec.autoscale = decodeAutoscale(&reader, hasProxy: spec.proxy != nil)
            if let bounds = spec.autoscale {
                if top.value("instances") == nil {
                    // Not written: the service starts at the bound nearest the default of one.
                    spec.instances = bounds.clamped(spec.instances)
                } else if bounds.clamped(spec.instances) != spec.instances {
                    top.fail("instances", .integer(spec.instances), "is the starting count of an autoscaled service and must be within [autoscale] min = \(bounds.min) to max = \(bounds.max) (set it between them, or leave it out)")
                }
            }
        }
        section("isolation") { reader in decodeIsolation(&reader, into: &spec.isolation) }
        section("deploy") { reader in decodeDeploy(&reader, into: &spec.deploy) }
        section("container") { reader in spec.container = decodeContainer(&reader, spec: &spec, sourcePath: sourcePath) }
        if var container = spec.container {
            if spec.inheritEnvironment {
                top.fail("inherit_environment", .boolean(true), "does not apply to a container, whose environment starts from its image's Env (remove it, and name what it needs in environment)")
            }
            container.overrides.directory = top.value("directory") != nil
            container.overrides.user = top.value("user") != nil
            spec.container = container
        }
        section("export") { reader in
            if let image = reader.string("image", example: "\"registry.example/web:1.4\"") {
                if image.isEmpty || image.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
                    reader.fail("image", .string(image), "not a container image reference (try image = \"registry.example/web:1.4\")")
                } else {
                    spec.exportImage = image
                }
            }
        }
        top.finish()
        issues = top.issues + issues
        issues += Placeholders.problems(in: spec, file: fileName)
        if !issues.isEmpty { throw ManifestErrors(issues) }
        return spec
    }

    private static func decodeProxy(_ reader: inout TableReader) -> ProxySpec? {
        var spec = ProxySpec(listen: [])
        if let listen = reader.stringArray("listen", example: "[\"127.0.0.1:8080\"]") {
            for text in listen {
                if let address = ListenAddress.parse(text) { spec.listen.append(address) }
                else { reader.fail("listen", .string(text), "not a host:port (try \"127.0.0.1:8080\" or \"[::1]:8080\")") }
            }
            if listen.isEmpty { reader.fail("listen", .array([]), "needs at least one address (try listen = [\"127.0.0.1:8080\"])") }
            if Set(spec.listen).count != spec.listen.count { reader.fail("listen", nil, "names the same address twice") }
        } else if reader.value("listen") == nil {
            reader.fail("listen", nil, "is required: where the proxy accepts connections (try listen = [\"127.0.0.1:8080\"])")
        }
        if let mode = reader.string("protocol", example: "\"http\"") {
            if let value = ProxySpec.Mode(rawValue: mode) { spec.mode = value }
            else { reader.fail("protocol", .string(mode), "must be http or tcp") }
        }
        if let count = reader.integer("max_connections", example: "10000", range: 1...1_000_000) { spec.maxConnections = count }
        if let value = reader.duration("connect_timeout", example: "\"1s\"") { spec.connectTimeout = value }
        if let value = reader.duration("idle_timeout", example: "\"60s\"") { spec.idleTimeout = value }
        if let count = reader.integer("retries", example: "2", range: 0...100) { spec.retries = count }
        if let value = reader.duration("drain_timeout", example: "\"30s\"") { spec.drainTimeout = value }
        if let value = reader.duration("queue_timeout", example: "\"10s\"") { spec.queueTimeout = value }
        if let text = reader.string("balance", example: "\"least-request\"") {
            if let value = ProxySpec.Balance(rawValue: text) { spec.balance = value }
            else {
                let near = Suggestions.nearest(to: text, in: ProxySpec.Balance.allCases.map(\.rawValue))
                reader.fail("balance", .string(text), "must be \"round-robin\" or \"least-request\"" + (near.map { " (did you mean \"\($0)\"?)" } ?? ""))
            }
        }
        if let count = reader.integer("eject_after", example: "5", range: 0...1000) { spec.ejectAfter = count }
        if let value = reader.duration("eject_for", example: "\"10s\"") {
            if value > .zero { spec.ejectFor = value }
            else { reader.fail("eject_for", .string("0s"), "must be longer than 0 (try \"10s\"; eject_after = 0 turns ejection off)") }
        }
        for (key, value) in [("connect_timeout", spec.connectTimeout), ("idle_timeout", spec.idleTimeout)] where value == .zero {
            reader.fail(key, .string("0s"), "must be longer than 0 (try \"1s\")")
        }
        return spec
    }

    /// `[deploy]`: the strategy and, for a canary, its size, share of traffic and limits.
    private static func decodeDeploy(_ reader: inout TableReader, into deploy: inout DeploySpec) {
        if let text = reader.string("strategy", example: "\"canary\"") {
            if let strategy = DeploySpec.Strategy(rawValue: text) { deploy.strategy = strategy }
            else { reader.fail("strategy", .string(text), "must be rolling or canary (try strategy = \"canary\")") }
        }
        if let count = reader.integer("canary_instances", example: "1", range: 1...1000) { deploy.canaryInstances = count }
        if let share = percent(&reader, "canary_weight", example: "\"10%\"") {
            if share <= 0 || share >= 1 { reader.fail("canary_weight", .string(String(share)), "must be more than 0% and less than 100% (try canary_weight = \"10%\")") }
            else { deploy.canaryWeight = share }
        }
        if let value = reader.duration("canary_duration", example: "\"30s\"") {
            if value <= .zero { reader.fail("canary_duration", .string("0s"), "must be longer than 0 (try \"30s\")") }
            else { deploy.canaryDuration = value }
        }
        if let share = percent(&reader, "max_error_rate", example: "\"1%\"") { deploy.maxErrorRate = share }
        if let value = reader.duration("max_p99", example: "\"250ms\"") {
            if value <= .zero { reader.fail("max_p99", .string("0s"), "must be longer than 0 (try \"250ms\")") }
            else { deploy.maxP99 = value }
        }
    }

    /// "10%" or "0.5%" → 0.1, 0.005; a bare number 0…1 is taken as a fraction.
    private static func percent(_ reader: inout TableReader, _ key: String, example: String) -> Double? {
        guard let node = reader.value(key) else { return nil }
        let value: Double?
        switch node {
        case .string(let text) where text.hasSuffix("%"): value = Double(String(text.dropLast().filter { $0 != " " })).map { $0 / 100 }
        case .float(let number): value = number
        case .integer(let number): value = Double(number)
        default: value = nil
        }
        guard let value, value.isFinite, (0...1).contains(value) else {
            reader.fail(key, node, "not a share between 0% and 100% (try \(key) = \(example))")
            return nil
        }
        return value
    }

    /// nil when a required key is missing or a key is wrong (the reader holds why).
    private static func decodeAutoscale(_ reader: inout TableReader, hasProxy: Bool) -> AutoscaleSpec? {
        let maximum = reader.integer("max", example: "10", range: 1...10_000)
        if maximum == nil && reader.value("max") == nil {
            reader.fail("max", nil, "is required: the most instances the autoscaler may run (try max = 10)")
        }
        var spec = AutoscaleSpec(max: maximum ?? 1)
        var valid = maximum != nil
        if let minimum = reader.integer("min", example: "1", range: 0...10_000) {
            if let maximum, minimum > maximum {
                reader.fail("min", .integer(minimum), "is above max = \(maximum) (try min = 1)")
                valid = false
            }
            spec.min = minimum
        }
        if let metric = reader.string("metric", example: "\"concurrency\"") {
            if let value = AutoscaleSpec.Metric(rawValue: metric) { spec.metric = value }
            else {
                let near = Suggestions.nearest(to: metric, in: AutoscaleSpec.Metric.allCases.map(\.rawValue))
                reader.fail("metric", .string(metric), "must be concurrency, rps, cpu or memory" + (near.map { " (did you mean \"\($0)\"?)" } ?? ""))
                valid = false
            }
        }
        switch spec.metric {
        case .memory:
            if let bytes = reader.size("target", example: "\"200M\"") {
                if bytes >= 1 << 20 { spec.target = Double(bytes) }
                else { reader.fail("target", .integer(Int(bytes)), "is below 1M of memory per instance (try target = \"200M\")"); valid = false }
            } else if reader.value("target") == nil {
                reader.fail("target", nil, "is required with metric = \"memory\": bytes per instance (try target = \"200M\")")
                valid = false
            }
        case .cpu:
            if let cores = reader.number("target", example: "0.8", minimum: 0.01) { spec.target = cores }
            else if reader.value("target") == nil { spec.target = 0.8 }
        case .concurrency, .rps:
            if let value = reader.number("target", example: "10", minimum: 0.01) { spec.target = value }
        }
        if let value = reader.number("tolerance", example: "0.1", minimum: 0) {
            if value < 1 { spec.tolerance = value }
            else { reader.fail("tolerance", .float(value), "must be below 1: it is a share of the target (try tolerance = 0.1)"); valid = false }
        }
        if let value = reader.number("panic_threshold", example: "2.0", minimum: 1) { spec.panicThreshold = value }
        if let count = reader.integer("max_scale_up", example: "0", range: 0...10_000) { spec.maxScaleUp = count }
        if let count = reader.integer("max_scale_down", example: "1", range: 0...10_000) { spec.maxScaleDown = count }
        for (key, example, keyPath) in [("window", "\"30s\"", \AutoscaleSpec.window), ("panic_window", "\"3s\"", \AutoscaleSpec.panicWindow),
                                        ("scale_down_delay", "\"60s\"", \AutoscaleSpec.scaleDownDelay),
                                        ("scale_to_zero_after", "\"5m\"", \AutoscaleSpec.scaleToZeroAfter)] {
            guard let value = reader.duration(key, example: example) else { continue }
            if value > .zero { spec[keyPath: keyPath] = value }
            else { reader.fail(key, .string("0s"), "must be longer than 0 (try \(key) = \(example))"); valid = false }
        }
        if spec.panicWindow > spec.window {
            reader.fail("panic_window", .string(DurationText.format(spec.panicWindow)), "is longer than window (\(DurationText.format(spec.window))): the panic window is the short one (try panic_window = \"3s\")")
            valid = false
        }
        if !hasProxy && spec.metric.comesFromProxy {
            reader.fail("metric", .string(spec.metric.rawValue), "is measured by the service's proxy, and this service has no [proxy] (add one, or use metric = \"cpu\" or \"memory\")")
            valid = false
        }
        if !hasProxy && spec.min == 0 {
            reader.fail("min", .integer(0), "scaling to zero needs a [proxy] to hold the first request while an instance starts (add one, or set min = 1)")
            valid = false
        }
        return valid ? spec : nil
    }

    private static func decodeHealth(_ reader: inout TableReader, into health: inout HealthSpec) {
        if let check = reader.string("check", example: "\"http\"") {
            if let value = HealthSpec.Check(rawValue: check) { health.check = value }
            else {
                let near = Suggestions.nearest(to: check, in: HealthSpec.Check.allCases.map(\.rawValue))
                reader.fail("check", .string(check), "must be none, tcp, http, exec or notify" + (near.map { " (did you mean \"\($0)\"?)" } ?? ""))
            }
        }
        if let path = reader.string("path", example: "\"/healthz\"") {
            if path.hasPrefix("/") && !path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) { health.path = path }
            else { reader.fail("path", .string(path), "must be a URL path starting with / (try path = \"/healthz\")") }
        }
        if let command = reader.stringArray("command", example: "[\"/usr/local/bin/probe\"]") {
            if command.first?.hasPrefix("/") == true { health.command = command }
            else { reader.fail("command", .array(command.map { .string($0) }), "needs an absolute program path first (try command = [\"/usr/local/bin/probe\"])") }
        }
        if let value = reader.duration("interval", example: "\"1s\"") {
            if value > .zero { health.interval = value } else { reader.fail("interval", .string("0s"), "must be longer than 0 (try \"1s\")") }
        }
        if let value = reader.duration("timeout", example: "\"1s\"") {
            if value > .zero { health.timeout = value } else { reader.fail("timeout", .string("0s"), "must be longer than 0 (try \"1s\")") }
        }
        if let count = reader.integer("rise", example: "2", range: 1...1000) { health.rise = count }
        if let count = reader.integer("fall", example: "3", range: 1...1000) { health.fall = count }
        if let flag = reader.boolean("restart_unhealthy") { health.restartUnhealthy = flag }
        if health.check == .exec && health.command.isEmpty {
            reader.fail("command", nil, "is required with check = \"exec\" (try command = [\"/usr/local/bin/probe\"])")
        }
    }

    private static func decodeIsolation(_ reader: inout TableReader, into isolation: inout IsolationSpec) {
        if let flag = reader.boolean("no_new_privileges") { isolation.noNewPrivileges = flag }
        if let names = reader.stringArray("capabilities", example: "[\"CAP_NET_BIND_SERVICE\"]") {
            var numbers: [Int] = []
            for name in names {
                if let number = Capabilities.number(named: name) { numbers.append(number); continue }
                let spelled = name.lowercased().hasPrefix("cap_") ? name : "cap_" + name
                let near = Suggestions.nearest(to: spelled, in: Capabilities.names.map { $0.lowercased() })?.uppercased()
                reader.fail("capabilities", .string(name), "not a capability name"
                    + (near.map { " (did you mean \"\($0)\"?)" } ?? " (names are listed in capabilities(7), e.g. \"CAP_NET_BIND_SERVICE\")"))
            }
            isolation.capabilities = CapabilitySet(numbers)
        }
        if let flag = reader.boolean("private_tmp") { isolation.privateTmp = flag }
        for (key, keyPath) in [("read_only_paths", \IsolationSpec.readOnlyPaths), ("writable_paths", \.writablePaths),
                               ("inaccessible_paths", \.inaccessiblePaths)] {
            guard let texts = reader.stringArray(key, example: "[\"/srv/app\"]") else { continue }
            var paths: [IsolatedPath] = []
            for text in texts {
                guard let path = IsolatedPath(text) else {
                    reader.fail(key, .string(text), "must be an absolute path without . or .. parts, optionally after a \"-\" that skips it when missing (try \"/srv/app\" or \"-/srv/app\")")
                    continue
                }
                if key == "inaccessible_paths" && path.path == "/" {
                    reader.fail(key, .string(text), "hiding / leaves nothing to run (name the folders to hide, e.g. \"/home\")")
                    continue
                }
                if !paths.contains(path) { paths.append(path) }
            }
            if paths.count > IsolationSpec.maxPaths {
                reader.fail(key, nil, "names \(paths.count) paths; at most \(IsolationSpec.maxPaths) are supported (name a common parent folder instead)")
                continue
            }
            isolation[keyPath: keyPath] = paths
        }
        // Raising a hard limit above musterd's own needs CAP_SYS_RESOURCE; the spawn reports that.
        if let value = limit(&reader, "nofile", example: "65536", range: 1...1_073_741_816, unlimited: false, sizes: false) { isolation.limits.nofile = value }
        if let value = limit(&reader, "nproc", example: "512", range: 1...4_194_304, unlimited: true, sizes: false) { isolation.limits.nproc = value }
        if let value = limit(&reader, "core", example: "0", range: 0...Int.max, unlimited: true, sizes: true) { isolation.limits.core = value }
        if let value = limit(&reader, "memlock", example: "\"64M\"", range: 0...Int.max, unlimited: true, sizes: true) { isolation.limits.memlock = value }
    }

    /// An rlimit: an integer, `"unlimited"` where the kernel allows it, and a size (`"64M"`) for
    /// the byte-counted ones.
    private static func limit(_ reader: inout TableReader, _ key: String, example: String, range: ClosedRange<Int>,
                              unlimited: Bool, sizes: Bool) -> UInt64? {
        guard let node = reader.value(key) else { return nil }
        let forms = (sizes ? "a number of bytes or a size" : "an integer") + (unlimited ? " or \"unlimited\"" : "")
        switch node {
        case .string("unlimited") where unlimited:
            return ProcessLimits.unlimited
        case .string(let text) where sizes:
            if let bytes = ByteSize.parse(text) { return bytes }
        case .integer(let number):
            if range.contains(number) { return UInt64(number) }
            reader.fail(key, node, "must be between \(range.lowerBound) and \(range.upperBound) (try \(key) = \(example))")
            return nil
        default:
            break
        }
        reader.fail(key, node, "expected \(forms) (try \(key) = \(example))")
        return nil
    }

    private static func decodeRestart(_ reader: inout TableReader, into restart: inout RestartSpec) {
        if let policy = reader.string("policy", example: "\"on-failure\"") {
            if let value = RestartPolicy(rawValue: policy) { restart.policy = value }
            else {
                let near = Suggestions.nearest(to: policy, in: RestartPolicy.allCases.map(\.rawValue))
                reader.fail("policy", .string(policy), "must be always, on-failure or never" + (near.map { " (did you mean \"\($0)\"?)" } ?? ""))
            }
        }
        if let seconds = reader.number("start_seconds", example: "1.0", minimum: 0) { restart.startSeconds = seconds }
        if let count = reader.integer("max_failed_starts", example: "5", range: 1...1_000_000) { restart.maxFailedStarts = count }
        if let minimum = reader.duration("backoff_min", example: "\"200ms\"") { restart.backoffMin = minimum }
        if let maximum = reader.duration("backoff_max", example: "\"30s\"") { restart.backoffMax = maximum }
        if restart.backoffMax < restart.backoffMin {
            reader.fail("backoff_max", .string(DurationText.format(restart.backoffMax)), "is shorter than backoff_min (\(DurationText.format(restart.backoffMin)))")
        }
        if let node = reader.value("success_exit_codes") {
            var codes: [Int32] = []
            if case .array(let items) = node {
                for item in items {
                    if case .integer(let code) = item, (0...255).contains(code) { codes.append(Int32(code)) }
                    else { codes = []; break }
                }
            }
            if codes.isEmpty { reader.fail("success_exit_codes", node, "expected exit codes 0-255 (try success_exit_codes = [0, 2])") }
            else { restart.successExitCodes = codes }
        }
    }
}

public enum ServiceName {
    public static func isValid(_ name: String) -> Bool {
        guard let first = name.first, name.count <= 63, first != "-" else { return false }
        return name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }
}

extension String {
    fileprivate func replacingQuotes() -> String { filter { $0 != "\"" } }
}
