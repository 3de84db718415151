import Glibc
import MusterCore

/// Reads manifests from disk and checks what only the host can answer: do the users and groups
/// exist, does the working directory. Every problem in every file is collected, never just the
/// first, so one `check` or `reload` shows the whole list.
public enum ManifestLoader {
    public static func loadConfig(_ path: String) throws(ManifestErrors) -> DaemonConfig {
        let text: String
        do { text = try FileSystem.read(path) }
        catch { throw ManifestErrors([ManifestIssue(file: path, message: "cannot read: \(FileSystem.errorText(error.errno))")]) }
        return try DaemonConfig.decode(text, path: path)
    }

    /// Every `*.toml` in `directory`, sorted by name.
    public static func loadServices(in directory: String) throws(ManifestErrors) -> [ServiceSpec] {
        guard FileSystem.isDirectory(directory) else {
            throw ManifestErrors([ManifestIssue(file: directory, message: "services_dir is not a readable folder (create it, or fix services_dir in musterd.toml)")])
        }
        let files = FileSystem.list(directory).filter { $0.hasSuffix(".toml") && !$0.hasPrefix(".") }.map { directory + "/" + $0 }
        return try loadServices(files: files)
    }

    public static func loadServices(files: [String]) throws(ManifestErrors) -> [ServiceSpec] {
        var specs: [ServiceSpec] = []
        var issues: [ManifestIssue] = []
        var seen: [String: String] = [:]
        var listeners: [ListenAddress: String] = [:]
        for path in files {
            let name = PathText.fileName(of: path)
            do throws(ManifestErrors) {
                let text: String
                do { text = try FileSystem.read(path) }
                catch { throw ManifestErrors([ManifestIssue(file: name, message: "cannot read \(path): \(FileSystem.errorText(error.errno))")]) }
                let spec = try ManifestDecoder.decode(text, fileName: name, sourcePath: path)
                let hostIssues = checkHost(spec, file: name)
                if !hostIssues.isEmpty { throw ManifestErrors(hostIssues) }
                if let other = seen[spec.name] {
                    throw ManifestErrors([ManifestIssue(file: name, key: "name", value: "\"\(spec.name)\"",
                                                        message: "already used by \(other); service names must be unique")])
                }
                for address in spec.proxy?.listen ?? [] {
                    if let other = listeners[address] {
                        throw ManifestErrors([ManifestIssue(file: name, table: "proxy", key: "listen", value: "\"\(address)\"",
                                                            message: "already the listener of \(other); each address belongs to one service")])
                    }
                    listeners[address] = name
                }
                seen[spec.name] = name
                specs.append(spec)
            } catch {
                issues += error.issues
            }
        }
        if !issues.isEmpty { throw ManifestErrors(issues) }
        return specs
    }

    static func checkHost(_ spec: ServiceSpec, file: String) -> [ManifestIssue] {
        var issues: [ManifestIssue] = []
        if let user = spec.user, Accounts.user(named: user) == nil {
            issues.append(ManifestIssue(file: file, key: "user", value: "\"\(user)\"", message: "no such user on this host (create it, or remove the key to run as \(Accounts.currentUserName))"))
        }
        if let group = spec.group, Accounts.group(named: group) == nil {
            issues.append(ManifestIssue(file: file, key: "group", value: "\"\(group)\"", message: "no such group on this host"))
        }
        if !spec.directory.contains("{"), !FileSystem.isDirectory(spec.directory) {
            issues.append(ManifestIssue(file: file, key: "directory", value: "\"\(spec.directory)\"", message: "no such folder"))
        }
        if let program = spec.command.first, program.hasPrefix("/"), !program.contains("{"), !FileSystem.isExecutableFile(program) {
            issues.append(ManifestIssue(file: file, key: "command", value: "\"\(program)\"", message: "not an executable file"))
        }
        return issues
    }
}
