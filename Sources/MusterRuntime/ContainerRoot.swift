import CMusterShims
import Glibc
import MusterCore

/// The folders of one container start, under `<state_dir>/containers/<service>/<index>-<generation>`:
/// `root` (where the overlay is mounted, in the instance's mount namespace only), `upper` (its
/// writable layer) and `work` (overlayfs's own). They are made before the spawn and removed when
/// the process has ended, so every start begins from the image as it is; whatever a killed musterd
/// left is removed by `sweep` at the next start.
public enum ContainerRoot {
    /// What a spawn needs besides the launch: the program and the ids, resolved in the container.
    public struct Prepared: Sendable {
        public var launch: ContainerLaunch
        /// Absolute inside the container.
        public var program: String
        /// `<index>-<generation>`'s folder: removed whole.
        public var folder: String
    }

    public static func folder(containersDir: String, service: String, index: Int, generation: Int) -> String {
        "\(containersDir)/\(service)/\(index)-\(generation)"
    }

    /// The account `user` and `group` name in the container's own /etc/passwd and /etc/group
    /// (root when neither is set).
    public static func account(lower: String, spec: ServiceSpec) throws(SpawnError) -> ContainerAccounts.Account {
        let root = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw SpawnError("container root \(lower): \(FileSystem.errorText(errno))") }
        defer { close(root) }
        let accounts = ContainerAccounts(passwd: read(root, "/etc/passwd"), group: read(root, "/etc/group"))
        do throws(ContainerAccounts.Problem) { return try accounts.resolve(user: spec.user, group: spec.group) }
        catch { throw SpawnError(error.description) }
    }

    /// Makes the instance's folders and its /etc/hostname, /etc/hosts and /etc/resolv.conf (in its
    /// upper layer: the image's own files stay as they are), and resolves the program inside
    /// `lower`. On failure nothing is left behind.
    public static func prepare(containersDir: String, lower: String, spec: ServiceSpec, plan: LaunchPlan, index: Int,
                               generation: Int) throws(SpawnError) -> Prepared {
        guard let container = spec.container else { throw SpawnError("not a container") }
        let root = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw SpawnError("container root \(lower): \(FileSystem.errorText(errno))") }
        defer { close(root) }
        guard let program = plan.resolveProgram(isExecutable: { isExecutable(root, $0) }) else {
            let place = plan.argv[0].contains("/") ? "in the container" : "in the container's PATH (\(plan.path ?? LaunchPlan.defaultPath))"
            throw SpawnError("exec \(plan.argv[0]): no such executable file \(place)")
        }

        let folder = folder(containersDir: containersDir, service: spec.name, index: index, generation: generation)
        do throws(SpawnError) {
            do throws(FileSystem.Failure) {
                try FileSystem.removeTree(folder)
                for part in ["root", "upper/etc", "work"] { try FileSystem.makeDirectories(folder + "/" + part, mode: 0o755) }
            } catch {
                throw SpawnError("container folders: \(error)")
            }
            let hostname = container.hostname(Placeholders.Values(port: plan.port, index: index, service: spec.name))
            try writeEtc(folder + "/upper/etc", hostname: hostname, privateNetwork: container.network == .private, lowerEtc: lower + "/etc")
            let launch = ContainerLaunch(
                root: folder + "/root", lowerLayers: [lower], upper: folder + "/upper", work: folder + "/work", hostname: hostname,
                privateNetwork: container.network == .private,
                binds: container.mounts.map { ContainerLaunch.Bind(source: $0.source, target: $0.target, readOnly: $0.readOnly) })
            return Prepared(launch: launch, program: program, folder: folder)
        } catch {
            try? FileSystem.removeTree(folder)
            throw error
        }
    }

    /// Removes an ended instance's folders.
    public static func remove(_ folder: String) {
        try? FileSystem.removeTree(folder)
    }

    /// Removes every instance folder under `containersDir`: at musterd's start none is in use.
    public static func sweep(containersDir: String) {
        for service in FileSystem.list(containersDir) {
            try? FileSystem.removeTree(containersDir + "/" + service)
        }
    }

    /// A file of the container's root, read with every link resolved inside it; nil when missing.
    static func read(_ root: Int32, _ path: String) -> String? {
        let fd = muster_open_in_root(root, path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return try? FileSystem.read(fd: fd, path: path)
    }

    /// A regular file with an execute bit, as the container would find it.
    static func isExecutable(_ root: Int32, _ path: String) -> Bool {
        let fd = muster_open_in_root(root, path, 0o10000000)  // O_PATH, which Glibc does not export to Swift
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        return fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && info.st_mode & 0o111 != 0
    }

    /// The three files every runtime provides. /etc in the upper layer takes the image's mode and
    /// owner, so the merged /etc looks as the image has it.
    static func writeEtc(_ etc: String, hostname: String, privateNetwork: Bool, lowerEtc: String) throws(SpawnError) {
        var info = stat()
        if stat(lowerEtc, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
            _ = chmod(etc, info.st_mode & 0o7777)
            _ = chown(etc, info.st_uid, info.st_gid)
        }
        let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(hostname)\n"
        // On the host's network its resolvers are the container's, as podman does with
        // --network=host; a private network reaches no resolver at all.
        let resolv = privateNetwork ? "# a private network (loopback only): no resolver is reachable\n"
            : FileSystem.readIfPresent("/etc/resolv.conf") ?? ""
        // Plain writes, not writeAtomically: the layer is thrown away when the instance ends and
        // after a crash, so the six fsyncs that would make these survive a power cut bought
        // nothing and were most of a container's start (7 of 10 ms, scripts/bench/containers).
        for (name, text) in [("hostname", hostname + "\n"), ("hosts", hosts), ("resolv.conf", resolv)] {
            let path = etc + "/" + name
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard fd >= 0 else { throw SpawnError("container /etc files: open \(path): \(FileSystem.errorText(errno))") }
            let bytes = Array(text.utf8)
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            let code = errno
            close(fd)
            guard written == bytes.count else { throw SpawnError("container /etc files: write \(path): \(FileSystem.errorText(code))") }
        }
    }
}
