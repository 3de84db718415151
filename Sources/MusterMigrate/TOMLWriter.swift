/// Writes a `ManifestDraft` as a manifest: only the keys that were given, strings quoted as TOML
/// basic strings, keys bare when TOML allows it.
public enum TOMLWriter {
    public static func write(_ draft: ManifestDraft) -> String {
        var out = ""
        func comment(_ text: String) {
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                out += line.isEmpty ? "#\n" : "# \(line)\n"
            }
        }
        draft.header.forEach(comment)
        out += "name = \(string(draft.name))\n"
        out += "command = \(array(draft.command))\n"
        if let directory = draft.directory { out += "directory = \(string(directory))\n" }
        if let user = draft.user { out += "user = \(string(user))\n" }
        if let group = draft.group { out += "group = \(string(group))\n" }
        if let note = draft.instancesComment { comment(note) }
        if let instances = draft.instances { out += "instances = \(instances)\n" }
        if let note = draft.inheritEnvironmentComment { comment(note) }
        if let inherit = draft.inheritEnvironment { out += "inherit_environment = \(inherit)\n" }

        if !draft.environment.isEmpty {
            out += "\n[environment]\n"
            for (key, value) in draft.environment { out += "\(self.key(key)) = \(string(value))\n" }
        }
        var restart: [String] = []
        if let policy = draft.restartPolicy { restart.append("policy = \(string(policy))") }
        if let seconds = draft.startSeconds { restart.append("start_seconds = \(number(seconds))") }
        if let count = draft.maxFailedStarts { restart.append("max_failed_starts = \(count)") }
        if let note = draft.backoffComment { restart += note.split(separator: "\n").map { "# \($0)" } }
        if let minimum = draft.backoffMin { restart.append("backoff_min = \(string(minimum))") }
        if let maximum = draft.backoffMax { restart.append("backoff_max = \(string(maximum))") }
        if let codes = draft.successExitCodes { restart.append("success_exit_codes = [\(codes.map(String.init).joined(separator: ", "))]") }
        table("restart", restart, into: &out)
        var stop: [String] = []
        if let signal = draft.stopSignal { stop.append("signal = \(string(signal))") }
        if let timeout = draft.stopTimeout { stop.append("timeout = \(string(timeout))") }
        table("stop", stop, into: &out)
        var resources: [String] = []
        if let note = draft.memoryComment { resources += note.split(separator: "\n").map { "# \($0)" } }
        if let memory = draft.memoryMax { resources.append("memory_max = \(string(memory))") }
        table("resources", resources, into: &out)
        var logs: [String] = []
        if let bytes = draft.logMaxBytes { logs.append("max_bytes = \(string(bytes))") }
        if let backups = draft.logBackups { logs.append("backups = \(backups)") }
        table("logs", logs, into: &out)
        if !draft.trailingComments.isEmpty {
            out += "\n"
            draft.trailingComments.forEach(comment)
        }
        return out
    }

    private static func table(_ name: String, _ lines: [String], into out: inout String) {
        guard lines.contains(where: { !$0.hasPrefix("#") }) else { return }
        out += "\n[\(name)]\n"
        for line in lines { out += line + "\n" }
    }

    public static func array(_ items: [String]) -> String {
        "[" + items.map(string).joined(separator: ", ") + "]"
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// A bare key when it is only `A-Za-z0-9_-`, else a quoted one.
    public static func key(_ text: String) -> String {
        let bare = !text.isEmpty && text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
        }
        return bare ? text : string(text)
    }

    /// A TOML basic string: `"`, `\` and control characters escaped.
    public static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u" + hex4(scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
