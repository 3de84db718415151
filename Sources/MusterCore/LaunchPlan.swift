/// What one instance start runs, with placeholders expanded and its environment built: the pure
/// half of a spawn.
public struct LaunchPlan: Sendable, Equatable {
    public var argv: [String]
    public var directory: String
    /// `KEY=value` entries: the child's whole environment.
    public var environment: [String]
    public var port: Int
    /// The manifest's `[isolation]`, its paths' placeholders expanded.
    public var isolation: IsolationSpec

    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// A clean environment: a default PATH, the account's HOME/USER/LOGNAME (as systemd gives),
    /// PORT, MUSTER_SERVICE, MUSTER_INSTANCE, MUSTER_<PEER>_ADDR/_URL, then the env files'
    /// variables, then the manifest's own `environment` (the last word wins). With
    /// `inherit_environment`, the daemon's environment comes first instead of the default.
    public init(spec: ServiceSpec, index: Int, port: Int, daemonEnvironment: [String: String],
                account: (name: String, home: String)?) {
        let values = Placeholders.Values(port: port, index: index, service: spec.name, peers: spec.peerAddresses.mapValues(\.address))
        argv = spec.command.map { Placeholders.expand($0, values) }
        directory = Placeholders.expand(spec.directory, values)
        self.port = port
        isolation = spec.isolation.expanded(values)
        var env: [String: String]
        if let container = spec.container {
            // A container starts from its image's Env, not the host's; `container` tells
            // programs such as systemd where they run, as podman's `container=podman` does.
            env = [:]
            for entry in container.image?.environment ?? [] {
                guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else { continue }
                env[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
            }
            env["HOSTNAME"] = container.hostname(values)
            env["container"] = "muster"
        } else {
            env = spec.inheritEnvironment ? daemonEnvironment : ["PATH": Self.defaultPath]
        }
        if env["PATH"] == nil { env["PATH"] = Self.defaultPath }
        if let account {
            env["HOME"] = account.home
            env["USER"] = account.name
            env["LOGNAME"] = account.name
        }
        env["PORT"] = String(port)
        env["MUSTER_SERVICE"] = spec.name
        env["MUSTER_INSTANCE"] = String(index)
        for (name, peer) in spec.peerAddresses {
            let stem = PeerAddress.variableStem(name)
            env["MUSTER_\(stem)_ADDR"] = peer.address
            if let url = peer.url { env["MUSTER_\(stem)_URL"] = url }
        }
        // Env files are data, not templates: their values are passed as written.
        for (key, value) in spec.envFileEnvironment { env[key] = value }
        for (key, value) in spec.environment { env[key] = Placeholders.expand(value, values) }
        environment = env.keys.sorted().map { "\($0)=\(env[$0]!)" }
    }

    public var path: String? {
        environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
    }

    /// The program to exec: argv[0] as given when it holds a '/', else the first match in PATH
    /// that `isExecutable` accepts.
    public func resolveProgram(isExecutable: (String) -> Bool) -> String? {
        let program = argv[0]
        if program.contains("/") { return program }
        for folder in (path ?? Self.defaultPath).split(separator: ":") where !folder.isEmpty {
            let candidate = folder + "/" + program
            if isExecutable(candidate) { return candidate }
        }
        return nil
    }
}
