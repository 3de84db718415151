/// `musterd.toml`: where the daemon keeps its socket, state, logs and cgroups.
public struct DaemonConfig: Sendable, Equatable {
    public enum CgroupRoot: Sendable, Equatable {
        /// The daemon's own (delegated) cgroup, from /proc/self/cgroup.
        case auto
        /// A group of this name created under each hierarchy's root.
        case named(String)
    }

    public var servicesDir: String
    public var controlSocket: String
    public var stateDir: String
    public var logDir: String
    public var cgroupRoot: CgroupRoot
    public var instancePorts: ClosedRange<Int>
    public var controlGroup: String
    /// Where `/metrics` is served (Prometheus text format); nil: not served.
    public var metricsListen: ListenAddress?
    /// Where the web dashboard is served (page at `/`, live updates, actions with a token); nil: off.
    public var dashboardListen: ListenAddress?
    /// How often the autoscaler samples load and decides.
    public var metricsInterval: Duration = .seconds(1)
    /// The file this was read from.
    public var path: String

    public init(
        servicesDir: String = "/etc/muster/services.d", controlSocket: String = "/run/muster/muster.sock",
        stateDir: String = "/var/lib/muster", logDir: String = "/var/log/muster", cgroupRoot: CgroupRoot = .auto,
        instancePorts: ClosedRange<Int> = 20000...29999, controlGroup: String = "muster", path: String = ""
    ) {
        self.servicesDir = servicesDir
        self.controlSocket = controlSocket
        self.stateDir = stateDir
        self.logDir = logDir
        self.cgroupRoot = cgroupRoot
        self.instancePorts = instancePorts
        self.controlGroup = controlGroup
        self.path = path
    }

    /// - Parameters:
    ///   - text: the TOML source.
    ///   - path: the file's path; relative paths in it resolve from its folder.
    /// - Throws: `ManifestErrors`.
    public static func decode(_ text: String, path: String) throws(ManifestErrors) -> DaemonConfig {
        let fileName = path.split(separator: "/").last.map(String.init) ?? path
        let entries: [(key: String, value: TOMLNode)]
        do {
            entries = try TOMLDocument.parse(text)
        } catch {
            throw ManifestErrors([ManifestIssue(file: fileName, line: error.line, column: error.column, message: "TOML syntax: \(error.message)")])
        }
        let folder = PathText.directory(of: path)
        var config = DaemonConfig(servicesDir: PathText.resolve("services.d", from: folder), path: path)
        var top = TableReader(file: fileName, table: nil, entries: entries)
        var issues: [ManifestIssue] = []
        if let daemon = top.subtable("daemon") {
            var reader = TableReader(file: fileName, table: "daemon", entries: daemon)
            if let value = reader.string("services_dir", example: "\"services.d\"") { config.servicesDir = PathText.resolve(value, from: folder) }
            if let value = reader.string("control_socket", example: "\"/run/muster/muster.sock\"") { config.controlSocket = PathText.resolve(value, from: folder) }
            if let value = reader.string("state_dir", example: "\"/var/lib/muster\"") { config.stateDir = PathText.resolve(value, from: folder) }
            if let value = reader.string("log_dir", example: "\"/var/log/muster\"") { config.logDir = PathText.resolve(value, from: folder) }
            if let value = reader.string("cgroup_root", example: "\"auto\"") {
                if value == "auto" { config.cgroupRoot = .auto }
                else if isCgroupName(value) { config.cgroupRoot = .named(value) }
                else { reader.fail("cgroup_root", .string(value), "must be \"auto\" or a plain name such as \"muster\" (letters, digits, '-', '_', '.'; no '/')") }
            }
            if let value = reader.string("instance_ports", example: "\"20000-29999\"") {
                if let range = parsePortRange(value) { config.instancePorts = range }
                else { reader.fail("instance_ports", .string(value), "not a port range (try \"20000-29999\")") }
            }
            if let value = reader.string("control_group", example: "\"muster\"") { config.controlGroup = value }
            if let value = reader.string("metrics_listen", example: "\"127.0.0.1:9464\"") {
                if let address = ListenAddress.parse(value) { config.metricsListen = address }
                else { reader.fail("metrics_listen", .string(value), "not a host:port (try \"127.0.0.1:9464\")") }
            }
            if let value = reader.string("dashboard_listen", example: "\"127.0.0.1:9090\"") {
                if let address = ListenAddress.parse(value) { config.dashboardListen = address }
                else { reader.fail("dashboard_listen", .string(value), "not a host:port (try \"127.0.0.1:9090\")") }
            }
            if let value = reader.duration("metrics_interval", example: "\"1s\"") {
                if value >= .milliseconds(100) && value <= .seconds(60) { config.metricsInterval = value }
                else { reader.fail("metrics_interval", .string(DurationText.format(value)), "must be from 100ms to 60s (try metrics_interval = \"1s\")") }
            }
            reader.finish()
            issues += reader.issues
        }
        top.finish()
        issues = top.issues + issues
        if !issues.isEmpty { throw ManifestErrors(issues) }
        return config
    }

    static func isCgroupName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 200 && name != "." && name != ".."
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func parsePortRange(_ text: String) -> ClosedRange<Int>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let low = Int(parts[0].trimmingWhitespace()), let high = Int(parts[1].trimmingWhitespace()),
              low >= 1, high <= 65535, low <= high else { return nil }
        return low...high
    }
}

/// Path arithmetic on strings, without touching the filesystem.
public enum PathText {
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func resolve(_ path: String, from folder: String) -> String {
        if path.hasPrefix("/") { return path }
        return folder == "/" ? "/" + path : folder + "/" + path
    }

    public static func fileName(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}
