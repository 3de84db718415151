import Glibc
import MusterCore
import MusterImage

/// Reads manifests from disk and checks what only the host can answer: do the users and groups
/// exist, does the working directory. Every problem in every file is collected, never just the
/// first, so one `check` or `reload` shows the whole list.
public enum ManifestLoader {
    public static func loadConfig(_ path: String) throws(ManifestErrors) -> DaemonConfig {
        let text: String
        switch readTrusted(path, kind: .daemonConfig) {
        case .success(let read): text = read
        case .failure(.unreadable(let code)): throw ManifestErrors([ManifestIssue(file: path, message: "cannot read: \(FileSystem.errorText(code))")])
        case .failure(.refused(let why)): throw ManifestErrors([ManifestIssue(file: path, message: why)])
        }
        return try DaemonConfig.decode(text, path: path)
    }

    /// Every `*.toml` in `directory`, sorted by name.
    /// - Parameter verifyImageLayers: hash every layer of each container image too (`check`);
    ///   musterd leaves that to the unpack, which hashes each layer as it reads it, once per image.
    public static func loadServices(in directory: String, verifyImageLayers: Bool = false) throws(ManifestErrors) -> [ServiceSpec] {
        guard FileSystem.isDirectory(directory) else {
            throw ManifestErrors([ManifestIssue(file: directory, message: "services_dir is not a readable folder (create it, or fix services_dir in musterd.toml)")])
        }
        let files = FileSystem.list(directory).filter { $0.hasSuffix(".toml") && !$0.hasPrefix(".") }.map { directory + "/" + $0 }
        return try loadServices(files: files, verifyImageLayers: verifyImageLayers)
    }

    /// Each file read and checked, then the set checked as a graph (`DependencyGraph`), which also
    /// fills in each spec's peer addresses.
    public static func loadServices(files: [String], verifyImageLayers: Bool = false) throws(ManifestErrors) -> [ServiceSpec] {
        try resolveGraph(readServices(files: files, verifyImageLayers: verifyImageLayers))
    }

    /// The graph check of specs read one by one: unknown `requires`, cycles, `{addr:NAME}`.
    public static func resolveGraph(_ specs: [ServiceSpec]) throws(ManifestErrors) -> [ServiceSpec] {
        let graph = DependencyGraph.validate(specs)
        if !graph.issues.isEmpty { throw ManifestErrors(graph.issues) }
        return graph.specs
    }

    /// Each file on its own: decoded, its env files read, checked against the host; names and
    /// listeners unique across the files.
    public static func readServices(files: [String], verifyImageLayers: Bool = false) throws(ManifestErrors) -> [ServiceSpec] {
        var specs: [ServiceSpec] = []
        var issues: [ManifestIssue] = []
        var seen: [String: String] = [:]
        var listeners: [ListenAddress: String] = [:]
        for path in files {
            let name = PathText.fileName(of: path)
            do throws(ManifestErrors) {
                let text: String
                switch readTrusted(path, kind: .manifest) {
                case .success(let read): text = read
                case .failure(.unreadable(let code)): throw ManifestErrors([ManifestIssue(file: name, message: "cannot read \(path): \(FileSystem.errorText(code))")])
                case .failure(.refused(let why)): throw ManifestErrors([ManifestIssue(file: name, message: why)])
                }
                var spec = try ManifestDecoder.decode(text, fileName: name, sourcePath: path)
                let imageIssues = readImage(into: &spec, file: name, verifyLayers: verifyImageLayers)
                let hostIssues = imageIssues + (imageIssues.isEmpty ? checkHost(spec, file: name) : []) + readEnvFiles(into: &spec, file: name)
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
        if let container = spec.container { return checkContainer(container, file: file) }
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
        let isolation = spec.isolation
        for (key, paths) in [("read_only_paths", isolation.readOnlyPaths), ("writable_paths", isolation.writablePaths),
                             ("inaccessible_paths", isolation.inaccessiblePaths)] {
            for entry in paths where !entry.optional && !entry.path.contains("{") && !FileSystem.exists(entry.path) {
                issues.append(ManifestIssue(file: file, table: "isolation", key: key, value: "\"\(entry)\"",
                                            message: "no such file or folder on this host (create it, or write \"-\(entry.path)\" to skip it where it is missing)"))
            }
        }
        return issues
    }

    /// A container's user, folder and program are the container's, not the host's: only its
    /// root and its mounts' sources are on this host.
    static func checkContainer(_ container: ContainerSpec, file: String) -> [ManifestIssue] {
        var issues: [ManifestIssue] = []
        switch container.source {
        case .rootfs(let folder):
            if !FileSystem.isDirectory(folder) {
                issues.append(ManifestIssue(file: file, table: "container", key: "rootfs", value: "\"\(folder)\"",
                                            message: "no such folder (unpack the root filesystem there, or use image = an OCI image)"))
            }
        case .image:
            break  // read by readImage
        }
        if container.userNamespace {
            // Read, but refused until the uid range of /etc/subuid is mapped: running the
            // container as the host's root instead would be the opposite of what was asked.
            issues.append(ManifestIssue(file: file, table: "container", key: "user_namespace", value: "true",
                                        message: "this musterd cannot map a user namespace yet (remove the key, and set user = an unprivileged account of the image instead)"))
        }
        for mount in container.mounts where !FileSystem.exists(mount.source) {
            issues.append(ManifestIssue(file: file, table: "container.mounts", key: "source", value: "\"\(mount.source)\"",
                                        message: "no such file or folder on this host (create it, or fix the path; relative paths are relative to the manifest's folder)"))
        }
        return issues
    }

    /// Reads a container's image (index, manifest and config, each blob's digest checked) and
    /// fills in what the manifest left to it: command, directory, user, and the Env under the
    /// manifest's `environment`. Missing, corrupt, or for another machine: named, with the fix.
    static func readImage(into spec: inout ServiceSpec, file: String, verifyLayers: Bool) -> [ManifestIssue] {
        guard case .image(let path, let tag)? = spec.container?.source else { return [] }
        let image: ResolvedImage
        do throws(ImageError) {
            image = try OCIImage.resolve(path: path, tag: tag, verifyLayers: verifyLayers)
        } catch {
            let key = error.kind == .unknownTag ? "tag" : "image"
            let value = key == "tag" ? tag.map { "\"\($0)\"" } : "\"\(path)\""
            return [ManifestIssue(file: file, table: "container", key: key, value: value, message: error.description)]
        }
        let config = image.config
        let facts = ContainerImageFacts(manifestDigest: image.manifestDigest, environment: config.env, workingDir: config.workingDir,
                                        user: config.user, entrypoint: config.entrypoint ?? [], cmd: config.cmd ?? [])
        guard spec.applyImageDefaults(facts) else {
            return [ManifestIssue(file: file, key: "command", message: "is required: the image \(path) has no Entrypoint or Cmd (write command = [\"/bin/app\"])")]
        }
        return []
    }

    /// Reads `env_file` in order into `envFileEnvironment` (a later file wins). A missing file
    /// is skipped when written with a leading `-`; anything else unreadable is a problem.
    static func readEnvFiles(into spec: inout ServiceSpec, file: String) -> [ManifestIssue] {
        var issues: [ManifestIssue] = []
        var parsed: [[(key: String, value: String)]] = []
        let folder = spec.sourcePath.isEmpty ? "" : PathText.directory(of: spec.sourcePath)
        for ref in spec.envFiles {
            // As the manifest names it when it sits beside the manifest, else in full.
            let shown = !folder.isEmpty && ref.path.hasPrefix(folder + "/") ? String(ref.path.dropFirst(folder.count + 1)) : ref.path
            let written = "\"" + (ref.optional ? "-" : "") + shown + "\""
            switch readTrusted(ref.path, kind: .envFile) {
            case .success(let text):
                do throws(EnvFile.Problem) { parsed.append(try EnvFile.parse(text)) }
                catch { issues.append(ManifestIssue(file: file, key: "env_file", message: "\(shown):\(error.line): \(error.message)")) }
            case .failure(.unreadable(ENOENT)) where ref.optional:
                continue
            case .failure(.unreadable(ENOENT)):
                issues.append(ManifestIssue(file: file, key: "env_file", value: written,
                                            message: "no such file \(ref.path) (create it, or write \"-\(shown)\" to skip it where it is missing)"))
            case .failure(.unreadable(let code)):
                issues.append(ManifestIssue(file: file, key: "env_file", value: written, message: "cannot read \(ref.path): \(FileSystem.errorText(code))"))
            case .failure(.refused(let why)):
                issues.append(ManifestIssue(file: file, key: "env_file", value: written, message: "\(ref.path) \(why)"))
            }
        }
        spec.envFileEnvironment = EnvFile.merge(parsed)
        return issues
    }

    enum ReadFailure: Error {
        case unreadable(Int32)
        case refused(String)
    }

    /// Reads a file musterd takes orders from, after `FileTrust`'s check of its owner and mode.
    /// The check and the read use one descriptor, so the file cannot be swapped in between.
    static func readTrusted(_ path: String, kind: FileTrust.Kind, runningAs uid: uid_t = geteuid()) -> Result<String, ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.unreadable(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(.unreadable(errno)) }
        if let why = FileTrust.refusal(runningAs: uid, owner: info.st_uid, ownerName: info.st_uid == 0 ? nil : Accounts.user(id: info.st_uid)?.name,
                                       mode: info.st_mode, path: path, kind: kind) {
            return .failure(.refused(why))
        }
        do throws(FileSystem.Failure) { return .success(try FileSystem.read(fd: fd, path: path)) }
        catch { return .failure(.unreadable(error.errno)) }
    }
}
