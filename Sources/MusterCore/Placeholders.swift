/// `{port}`, `{index}` and `{service}` in `command`, `environment` values and `directory`, like
/// supervisord's `%(process_num)d`; `{addr:NAME}` in `command` and `environment` values. Other braces are left as written, so shell snippets such as
/// `${HOME}` pass through untouched.
public enum Placeholders {
    public static let names = ["port", "index", "service"]

    public struct Values: Sendable, Equatable {
        public var port: Int
        public var index: Int
        public var service: String
        /// `{addr:NAME}`: the `host:port` of each service this one requires or wants.
        public var peers: [String: String]
        public init(port: Int, index: Int, service: String, peers: [String: String] = [:]) {
            self.port = port
            self.index = index
            self.service = service
            self.peers = peers
        }
    }

    public static func expand(_ text: String, _ values: Values) -> String {
        guard text.contains("{") else { return text }
        var expanded = text
            .replacing("{port}", with: String(values.port))
            .replacing("{index}", with: String(values.index))
            .replacing("{service}", with: values.service)
        if expanded.contains("{addr:") {
            for (name, address) in values.peers { expanded = expanded.replacing("{addr:\(name)}", with: address) }
        }
        return expanded
    }

    /// The NAMEs of every `{addr:NAME}` in `text`, in order. Whether each names a reachable peer
    /// is `DependencyGraph`'s question: it needs the other manifests.
    public static func addressNames(in text: String) -> [String] {
        var names: [String] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "{addr:") {
            let after = rest[open.upperBound...]
            guard let close = after.firstIndex(of: "}") else { break }
            names.append(String(after[..<close]))
            rest = after[after.index(after: close)...]
        }
        return names
    }

    /// Near-misses such as `{prot}` are almost always typos of a placeholder, so they are errors.
    static func problems(in spec: ServiceSpec, file: String) -> [ManifestIssue] {
        var issues: [ManifestIssue] = []
        func check(_ text: String, key: String, table: String? = nil) {
            var rest = Substring(text)
            while let open = rest.firstIndex(of: "{") {
                let afterOpen = rest.index(after: open)
                guard let close = rest[afterOpen...].firstIndex(of: "}") else { break }
                let word = String(rest[afterOpen..<close])
                let precededByDollar = open > rest.startIndex && rest[rest.index(before: open)] == "$"
                if !precededByDollar, !names.contains(word), !word.isEmpty,
                   word.allSatisfy({ $0.isLetter || $0 == "_" }),
                   let near = Suggestions.nearest(to: word, in: names), Suggestions.editDistance(word, near) <= 2 {
                    issues.append(ManifestIssue(file: file, table: table, key: key, value: "\"\(text)\"",
                                                message: "unknown placeholder {\(word)} (did you mean {\(near)}?)"))
                }
                rest = rest[rest.index(after: close)...]
            }
        }
        spec.command.forEach { check($0, key: "command") }
        spec.environment.values.forEach { check($0, key: "environment") }
        check(spec.directory, key: "directory")
        for (key, paths) in [("read_only_paths", spec.isolation.readOnlyPaths), ("writable_paths", spec.isolation.writablePaths),
                             ("inaccessible_paths", spec.isolation.inaccessiblePaths)] {
            paths.forEach { check($0.description, key: key, table: "isolation") }
        }
        return issues
    }
}
