/// The top-level keys that tie a service to others and to files beside its manifest:
/// `requires`, `wants` and `env_file`. Names are checked against the other services later, in
/// `DependencyGraph`, once every manifest has been read.
extension ManifestDecoder {
    static func decodeDependencies(_ top: inout TableReader, into spec: inout ServiceSpec, sourcePath: String) {
        for (key, keyPath) in [("requires", \ServiceSpec.requires), ("wants", \ServiceSpec.wants)] {
            guard let names = top.stringArray(key, example: "[\"db\"]") else { continue }
            var kept: [String] = []
            for name in names {
                if !ServiceName.isValid(name) {
                    top.fail(key, .string(name), "not a service name: a-z, 0-9 and '-', starting with a letter or digit (try \(key) = [\"db\"])")
                } else if name == spec.name {
                    top.fail(key, .string(name), "a service cannot depend on itself (remove \"\(name)\")")
                } else if !kept.contains(name) {
                    kept.append(name)
                }
            }
            spec[keyPath: keyPath] = kept
        }
        spec.envFiles = envFiles(&top, folder: sourcePath.isEmpty ? "" : PathText.directory(of: sourcePath))
    }

    /// `env_file = "api.env"` or a list of them; a leading `-` marks a file that may be missing.
    private static func envFiles(_ top: inout TableReader, folder: String) -> [EnvFileRef] {
        let example = "[\"api.env\", \"-local.env\"]"
        let texts: [String]
        switch top.value("env_file") {
        case nil: return []
        case .string(let text): texts = [text]
        case .array:
            guard let list = top.stringArray("env_file", example: example) else { return [] }
            texts = list
        case let node?:
            top.fail("env_file", node, "expected a file name or an array of them, got \(node.kindName) (try env_file = \(example))")
            return []
        }
        var refs: [EnvFileRef] = []
        for text in texts {
            let optional = text.hasPrefix("-")
            let path = optional ? String(text.dropFirst()) : text
            guard !path.isEmpty, !path.contains("\n"), !path.hasSuffix("/") else {
                top.fail("env_file", .string(text), "not a file name (try env_file = \(example))")
                continue
            }
            // Folder-less decoding (tests, `decode` without a path) keeps the name as written.
            let resolved = folder.isEmpty ? path : PathText.resolve(path, from: folder)
            if refs.contains(where: { $0.path == resolved }) {
                top.fail("env_file", .string(text), "names the same file twice")
                continue
            }
            refs.append(EnvFileRef(path: resolved, optional: optional))
        }
        return refs
    }
}
