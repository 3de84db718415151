/// The services as a graph of `requires` and `wants` edges: checked once every manifest has been
/// read (`musterctl check`, daemon start, reload). The order at run time follows from live state
/// (readiness, who is down): that is `DependencyGate`'s.
public enum DependencyGraph {
    /// Every problem of the set as a whole, and the specs with their peers' addresses filled in.
    public struct Validation: Sendable {
        /// The input specs, each with `peerAddresses` resolved.
        public var specs: [ServiceSpec]
        /// Unknown `requires` names, cycles, `{addr:NAME}` that names no reachable listener.
        public var issues: [ManifestIssue]
        /// Allowed but worth saying: a `wants` name that no manifest defines.
        public var warnings: [String]
    }

    public static func validate(_ specs: [ServiceSpec]) -> Validation {
        let byName = Dictionary(specs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let names = byName.keys.sorted()
        var issues: [ManifestIssue] = []
        var warnings: [String] = []
        for spec in specs {
            let file = fileName(of: spec)
            for name in spec.requires where byName[name] == nil {
                issues.append(ManifestIssue(file: file, key: "requires", message: "no service named \"\(name)\"" + hint(name, names)))
            }
            for name in spec.wants where byName[name] == nil {
                warnings.append("\(file): wants: no service named \"\(name)\"" + hint(name, names) + "; \(spec.name) starts without it")
            }
        }
        issues += cycles(in: byName).map { cycle in
            let first = byName[cycle[0]]!
            let key = first.requires.contains(cycle[1]) ? "requires" : "wants"
            return ManifestIssue(file: fileName(of: first), key: key, message: "cycle " + cycle.joined(separator: " → "))
        }
        var resolved: [ServiceSpec] = []
        for var spec in specs {
            spec.peerAddresses = [:]
            for name in spec.requires + spec.wants {
                if let peer = byName[name], let address = PeerAddress(proxy: peer.proxy) { spec.peerAddresses[name] = address }
            }
            issues += addressProblems(in: spec, byName: byName)
            resolved.append(spec)
        }
        return Validation(specs: resolved, issues: issues, warnings: warnings)
    }

    /// One cycle per strongly connected group of services: the shortest way from the group's
    /// alphabetically first service back to itself, taking neighbours alphabetically, so the same
    /// manifests always give the same message. Returned as names, first and last the same.
    static func cycles(in byName: [String: ServiceSpec]) -> [[String]] {
        func edges(_ name: String) -> [String] {
            guard let spec = byName[name] else { return [] }
            return Set(spec.requires + spec.wants).filter { byName[$0] != nil }.sorted()
        }
        var result: [[String]] = []
        var placed: Set<String> = []
        for start in byName.keys.sorted() where !placed.contains(start) {
            // Breadth first from `start`: the first path that comes back is a shortest cycle.
            var previous: [String: String] = [:]
            var queue = [start]
            var head = 0
            var closing: String?
            search: while head < queue.count {
                let node = queue[head]
                head += 1
                for next in edges(node) {
                    if next == start { closing = node; break search }
                    if previous[next] == nil && !placed.contains(next) {
                        previous[next] = node
                        queue.append(next)
                    }
                }
            }
            guard let closing else { continue }
            var path = [closing]
            while let back = previous[path[0]] { path.insert(back, at: 0) }
            if path[0] != start { path.insert(start, at: 0) }
            // Everything on a cycle through `start` is reported with it, not again on its own.
            let group = reachable(from: start, edges: edges).filter { reachable(from: $0, edges: edges).contains(start) }
            placed.formUnion(group)
            placed.insert(start)
            result.append(path + [start])
        }
        return result
    }

    private static func reachable(from start: String, edges: (String) -> [String]) -> Set<String> {
        var seen: Set<String> = []
        var stack = [start]
        while let node = stack.popLast() {
            for next in edges(node) where seen.insert(next).inserted { stack.append(next) }
        }
        return seen
    }

    /// `{addr:NAME}` in `command` or `environment` must name a service this one requires or wants
    /// that has a listener: anything else would reach the process as literal text.
    private static func addressProblems(in spec: ServiceSpec, byName: [String: ServiceSpec]) -> [ManifestIssue] {
        var issues: [ManifestIssue] = []
        let file = fileName(of: spec)
        func check(_ text: String, key: String) {
            for name in Placeholders.addressNames(in: text) where spec.peerAddresses[name] == nil {
                let why: String
                if !spec.requires.contains(name) && !spec.wants.contains(name) {
                    why = "\(name) is not in requires or wants (add requires = [\"\(name)\"])"
                } else if byName[name] == nil {
                    why = "no service named \"\(name)\" is there to give an address" + hint(name, byName.keys.sorted())
                } else {
                    why = "\(name) has no [proxy] listener, so it has no address (add [proxy] listen to \(fileName(of: byName[name]!)))"
                }
                issues.append(ManifestIssue(file: file, key: key, value: "\"\(text)\"", message: "{addr:\(name)}: \(why)"))
            }
        }
        spec.command.forEach { check($0, key: "command") }
        for key in spec.environment.keys.sorted() { check(spec.environment[key]!, key: "environment") }
        return issues
    }

    private static func hint(_ name: String, _ names: [String]) -> String {
        Suggestions.nearest(to: name, in: names).map { " (did you mean \"\($0)\"?)" } ?? " (no manifest names it; add one or remove the name)"
    }

    static func fileName(of spec: ServiceSpec) -> String {
        spec.sourcePath.isEmpty ? "\(spec.name).toml" : PathText.fileName(of: spec.sourcePath)
    }
}

/// Where a service's dependents reach it: its first proxy listener, as something they can
/// connect to (a wildcard listener is given as loopback).
public struct PeerAddress: Sendable, Equatable, Codable {
    /// `host:port`, `[::1]:port` for IPv6.
    public var address: String
    /// `http://host:port` when the peer's proxy speaks http; nil for tcp.
    public var url: String?

    public init(address: String, url: String? = nil) {
        self.address = address
        self.url = url
    }

    public init?(proxy: ProxySpec?) {
        guard let proxy, let first = proxy.listen.first else { return nil }
        var listen = first
        if listen.host == "0.0.0.0" { listen.host = "127.0.0.1" }
        if listen.host == "::" || listen.host == "::0" { listen.host = "::1" }
        address = listen.description
        url = proxy.mode == .http ? "http://" + address : nil
    }

    /// `db` → `DB`, `user-store` → `USER_STORE`: the middle of `MUSTER_<NAME>_ADDR`.
    public static func variableStem(_ service: String) -> String {
        String(service.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    }
}
