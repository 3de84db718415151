/// "What changed" between two revisions of a service, in manifest words.
public enum RevisionDiff {
    /// The fields of `after` that differ from `before`, e.g. ["command", "environment (API_KEY)",
    /// "[deploy]"]; empty when they are the same. Environment changes name the keys (not the values,
    /// which may be secrets).
    public static func changes(from before: ServiceSpec, to after: ServiceSpec) -> [String] {
        var result: [String] = []
        func note(_ changed: Bool, _ label: String) { if changed { result.append(label) } }
        note(before.command != after.command, "command")
        let env = keysChanged(before.environment, after.environment)
        note(!env.isEmpty, "environment (\(env.joined(separator: ", ")))")
        let fileEnv = keysChanged(before.envFileEnvironment, after.envFileEnvironment)
        note(before.envFiles != after.envFiles || !fileEnv.isEmpty,
             fileEnv.isEmpty ? "env_file" : "env_file (\(fileEnv.joined(separator: ", ")))")
        note(before.inheritEnvironment != after.inheritEnvironment, "inherit_environment")
        note(before.directory != after.directory, "directory")
        note(before.user != after.user, "user")
        note(before.group != after.group, "group")
        note(before.instances != after.instances, "instances \(before.instances) → \(after.instances)")
        note(before.restart != after.restart, "[restart]")
        note(before.stop != after.stop, "[stop]")
        note(before.resources != after.resources, "[resources]")
        note(before.logs != after.logs, "[logs]")
        note(before.proxy != after.proxy, "[proxy]")
        note(before.health != after.health, "[health]")
        note(before.autoscale != after.autoscale, "[autoscale]")
        note(before.isolation != after.isolation, "[isolation]")
        let digests = (before.container?.image?.manifestDigest, after.container?.image?.manifestDigest)
        var containers = (before.container, after.container)
        containers.0?.image = nil
        containers.1?.image = nil
        note(containers.0 != containers.1, "[container]")
        note(digests.0 != nil && digests.1 != nil && digests.0 != digests.1, "image \(digests.0 ?? "") → \(digests.1 ?? "")")
        note(before.exportImage != after.exportImage, "[export] image")
        note(before.requires != after.requires, "requires")
        note(before.wants != after.wants, "wants")
        note(before.deploy != after.deploy, "[deploy]")
        return result
    }

    static func keysChanged(_ a: [String: String], _ b: [String: String]) -> [String] {
        Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
    }
}
