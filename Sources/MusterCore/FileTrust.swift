/// sudo's rule for sudoers, applied to manifests and musterd.toml: when musterd runs as root, each
/// file it reads says what root runs, so it must be owned by root and writable by no one else.
/// Otherwise whoever can change the file can run commands as root.
public enum FileTrust {
    public enum Kind: Sendable {
        case manifest
        case daemonConfig
        /// `env_file`: its variables (LD_PRELOAD, PATH) decide what a service runs.
        case envFile

        var noun: String {
            switch self {
            case .manifest: "manifest"
            case .daemonConfig: "daemon config"
            case .envFile: "env file"
            }
        }
    }

    /// Why the file is refused, phrased to follow `web.toml: `; nil when it may be read.
    /// - Parameters:
    ///   - uid: the effective uid of the reader (musterd, or `musterctl check`). Only root is held
    ///     to the rule: a non-root daemon can give its services nothing it does not have itself.
    ///   - owner: the file's owner uid; `ownerName` its account name when known.
    ///   - mode: `st_mode` (only the permission bits are read).
    ///   - path: the file, as the fix command names it.
    public static func refusal(runningAs uid: UInt32, owner: UInt32, ownerName: String? = nil, mode: UInt32,
                               path: String, kind: Kind = .manifest) -> String? {
        guard uid == 0 else { return nil }
        let groupWritable = mode & 0o020 != 0
        let otherWritable = mode & 0o002 != 0
        var problems: [String] = []
        var fixes: [String] = []
        if owner != 0 {
            problems.append("owned by \(ownerName.map { "\($0) (uid \(owner))" } ?? "uid \(owner)"), not root")
            fixes.append("chown root \(path)")
        }
        if groupWritable || otherWritable {
            let who = groupWritable && otherWritable ? "group and others" : groupWritable ? "group" : "others"
            problems.append("writable by \(who) (mode \(octal(mode)))")
            fixes.append("chmod go-w \(path)")
        }
        guard !problems.isEmpty else { return nil }
        let risk = owner != 0
            ? "a \(kind.noun) that someone other than root can change would let them run commands as root"
            : "a writable \(kind.noun) would let others run commands as root"
        return "refused: \(problems.joined(separator: " and ")); \(risk): \(fixes.joined(separator: " && "))"
    }

    /// `0664`: the permission bits, four octal digits.
    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
