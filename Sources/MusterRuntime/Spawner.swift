import CMusterShims
import Glibc
import MusterCore

/// Everything one exec needs, resolved: the kernel-facing half of a spawn.
public struct LaunchRequest: Sendable {
    public var program: String
    public var argv: [String]
    public var environment: [String]
    public var directory: String
    public var credentials: Credentials?
    public var stdoutFD: Int32
    public var stderrFD: Int32
    public var cgroup: InstanceCgroup?
    public var v1ProcsPaths: [String]
    /// What the child may see and do; `.unconfined` (the default) changes nothing.
    public var isolation: IsolationSpec
    /// Join this process's mount namespace instead of building one from `isolation`'s paths:
    /// an exec health probe sees exactly what its instance sees.
    public var mountNamespaceOf: ProcessHandle?
    /// Run as a container: namespaces, this overlay root, its mounts. `program` and
    /// `directory` are then paths inside it.
    public var container: ContainerLaunch?
    /// With `mountNamespaceOf`: join all of that container's namespaces (mount, uts, ipc, network,
    /// cgroup), not only its mounts: an exec probe of a container runs inside it. Its pid
    /// namespace is not joined (that applies to children only): the probe's own pid is the host's.
    public var joinContainerNamespaces = false
    /// A listening socket the child gets as descriptor 3 (socket activation: LISTEN_FDS=1); the
    /// caller keeps and closes its own copy.
    public var listenSocket: Int32?
    /// Loaded in the child just before exec (`.containerDefault` for `[container] seccomp =
    /// "default"`); nil: none.
    public var seccompFilter: SeccompFilter?

    public init(program: String, argv: [String], environment: [String], directory: String, credentials: Credentials?,
                stdoutFD: Int32 = -1, stderrFD: Int32 = -1, cgroup: InstanceCgroup? = nil, v1ProcsPaths: [String] = [],
                isolation: IsolationSpec = .unconfined, mountNamespaceOf: ProcessHandle? = nil, seccompFilter: SeccompFilter? = nil) {
        self.program = program
        self.argv = argv
        self.environment = environment
        self.directory = directory
        self.credentials = credentials
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.cgroup = cgroup
        self.v1ProcsPaths = v1ProcsPaths
        self.isolation = isolation
        self.mountNamespaceOf = mountNamespaceOf
        self.seccompFilter = seccompFilter
    }
}

public struct Credentials: Sendable, Equatable {
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]
    public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

/// Why a spawn failed, phrased like the shell would: `exec /usr/bin/nope: No such file or directory`.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Starts processes through the C shim: clone3 with CLONE_PIDFD and CLONE_INTO_CGROUP, fork as
/// the fallback, and the child's failure before exec reported back as a reason.
public enum Spawner {
    public static func spawn(_ request: LaunchRequest) throws(SpawnError) -> ProcessHandle {
        var cgroupFD: Int32 = -1
        if let leaf = request.cgroup?.unified {
            cgroupFD = open(leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if cgroupFD < 0 { throw SpawnError("open cgroup \(leaf): \(FileSystem.errorText(errno))") }
        }
        defer { if cgroupFD >= 0 { close(cgroupFD) } }

        // Held across the spawn, so the pidfd cannot be closed (the instance reaped) mid-way.
        if let container = request.container, container.binds.count > Int(MUSTER_MAX_CONTAINER_BINDS) {
            throw SpawnError("[[container.mounts]]: \(container.binds.count) mounts; at most \(MUSTER_MAX_CONTAINER_BINDS) are supported")
        }
        guard let namespaceOwner = request.mountNamespaceOf else { return try spawn(request, cgroupFD: cgroupFD, mountNamespaceFD: nil) }
        return try namespaceOwner.withPidfd { (pidfd) throws(SpawnError) -> ProcessHandle in
            guard let pidfd else { throw SpawnError("join the mount namespace of pid \(namespaceOwner.pid): it has exited") }
            return try spawn(request, cgroupFD: cgroupFD, mountNamespaceFD: pidfd)
        }
    }

    private static func spawn(_ request: LaunchRequest, cgroupFD: Int32, mountNamespaceFD: Int32?) throws(SpawnError) -> ProcessHandle {
        var result = muster_spawn_result()
        let procsPath = request.cgroup?.unified.map { $0 + "/cgroup.procs" }
        var isolation = ShimIsolation(request.isolation)
        defer { isolation.release() }
        var container = request.container.map(ShimContainer.init)
        defer { container?.release() }
        let rc = withFilter(request.seccompFilter) { filter, filterLength in CStrings.withArray(request.argv) { argv in
            CStrings.withArray(request.environment) { envp in
                CStrings.withArray(request.v1ProcsPaths) { v1 in
                    let groups = request.credentials?.groups ?? []
                    return groups.withUnsafeBufferPointer { groupBuffer in
                        request.program.withCString { program in
                            request.directory.withCString { directory in
                                withOptionalCString(procsPath) { procs in
                                    var q = muster_spawn_request()
                                    q.path = program
                                    q.argv = UnsafePointer(argv)
                                    q.envp = UnsafePointer(envp)
                                    q.directory = directory
                                    if let credentials = request.credentials {
                                        q.set_ids = 1
                                        q.uid = credentials.uid
                                        q.gid = credentials.gid
                                        q.groups = groupBuffer.baseAddress
                                        q.group_count = groupBuffer.count
                                    }
                                    q.stdout_fd = request.stdoutFD
                                    q.stderr_fd = request.stderrFD
                                    q.cgroup2_fd = cgroupFD
                                    q.cgroup2_procs_path = procs
                                    q.v1_procs_paths = UnsafeRawPointer(v1).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                                    q.v1_count = request.v1ProcsPaths.count
                                    isolation.fill(&q, mountNamespaceFD: mountNamespaceFD)
                                    container?.fill(&q)
                                    if request.joinContainerNamespaces, let mountNamespaceFD {
                                        q.join_mount_namespace = 1
                                        q.mount_namespace_fd = mountNamespaceFD
                                        q.join_container_namespaces = 1
                                    }
                                    if let listener = request.listenSocket {
                                        q.pass_listen_socket = 1
                                        q.listen_socket = listener
                                    }
                                    q.seccomp_filter = filter
                                    q.seccomp_filter_length = filterLength
                                    return muster_spawn(&q, &result)
                                }
                            }
                        }
                    }
                }
            }
        } }
        guard rc == 0 else { throw SpawnError(reason(result, request)) }
        return ProcessHandle(pid: result.pid, pidfd: result.pidfd)
    }

    static func reason(_ result: muster_spawn_result, _ request: LaunchRequest) -> String {
        let text = FileSystem.errorText(result.error)
        switch Int(result.failed_step) {
        case Int(MUSTER_STEP_EXEC): return "exec \(request.program): \(text)"
        case Int(MUSTER_STEP_CHDIR): return "chdir \(request.directory): \(text)"
        case Int(MUSTER_STEP_SETUID): return "setuid \(request.credentials?.uid ?? 0): \(text)"
        case Int(MUSTER_STEP_SETGID): return "setgid \(request.credentials?.gid ?? 0): \(text)"
        case Int(MUSTER_STEP_SETGROUPS): return "setgroups: \(text)"
        case Int(MUSTER_STEP_CGROUP): return "join cgroup \(request.cgroup?.displayPath ?? ""): \(text)"
        case Int(MUSTER_STEP_SETSID): return "setsid: \(text)"
        case Int(MUSTER_STEP_STDIO): return "set up stdin/stdout/stderr: \(text)"
        case Int(MUSTER_STEP_CLONE): return "clone: \(text)"
        case Int(MUSTER_STEP_PIDFD): return "pidfd_open: \(text)"
        case Int(MUSTER_STEP_LISTEN_SOCKET): return "pass the listening socket as descriptor 3: \(text)"
        case Int(MUSTER_STEP_SECCOMP):
            let hint = result.error == EACCES ? " (a seccomp filter needs no_new_privileges = true or CAP_SYS_ADMIN; or set seccomp = \"none\")" : ""
            return "load the seccomp filter (\(request.seccompFilter?.instructionCount ?? 0) instructions): \(text)\(hint)"
        default:
            return isolationReason(result, request.isolation, text) ?? containerReason(result, request.container, text) ?? "spawn: \(text)"
        }
    }

    static func isolationReason(_ result: muster_spawn_result, _ isolation: IsolationSpec, _ text: String) -> String? {
        let index = Int(result.failed_index)
        func path(_ paths: [IsolatedPath]) -> String { paths.indices.contains(index) ? paths[index].path : "?" }
        switch Int(result.failed_step) {
        case Int(MUSTER_STEP_RLIMIT):
            let entries = isolation.limits.entries
            guard entries.indices.contains(index) else { return "setrlimit: \(text)" }
            let (kind, value) = entries[index]
            var line = "setrlimit \(kind.rawValue) \(value == ProcessLimits.unlimited ? "unlimited" : String(value)): \(text)"
            if result.error == EPERM, let hard = ShimIsolation.daemonHardLimit(kind), value > hard {
                line += " (above musterd's own hard limit of \(hard); raising it needs CAP_SYS_RESOURCE)"
            }
            return line
        case Int(MUSTER_STEP_MOUNT_NAMESPACE): return "new mount namespace: \(text)"
        case Int(MUSTER_STEP_MOUNT_PRIVATE): return "make / a private mount: \(text)"
        case Int(MUSTER_STEP_READ_ONLY): return "make \(path(isolation.readOnlyPaths)) read-only: \(text)"
        case Int(MUSTER_STEP_WRITABLE): return "make \(path(isolation.writablePaths)) writable: \(text)"
        case Int(MUSTER_STEP_PRIVATE_TMP): return "mount tmpfs on /tmp: \(text)"
        case Int(MUSTER_STEP_INACCESSIBLE): return "make \(path(isolation.inaccessiblePaths)) inaccessible: \(text)"
        case Int(MUSTER_STEP_CAPBSET): return "drop \(Capabilities.name(index)) from the bounding set: \(text)"
        case Int(MUSTER_STEP_AMBIENT): return "clear ambient capabilities: \(text)"
        case Int(MUSTER_STEP_CAPSET): return "limit capabilities to \(isolation.capabilities?.description ?? "(none)"): \(text)"
        case Int(MUSTER_STEP_NO_NEW_PRIVS): return "set no_new_privs: \(text)"
        case Int(MUSTER_STEP_JOIN_MOUNT_NAMESPACE): return "join the instance's mount namespace: \(text)"
        default: return nil
        }
    }

    static func containerReason(_ result: muster_spawn_result, _ container: ContainerLaunch?, _ text: String) -> String? {
        let index = Int(result.failed_index)
        switch Int(result.failed_step) {
        case Int(MUSTER_STEP_CONTAINER_NAMESPACES): return "container: unshare the mount, uts, ipc, cgroup\(container?.privateNetwork == true ? " and network" : "") namespaces: \(text)"
        case Int(MUSTER_STEP_CONTAINER_ROOT): return "container: mount the overlay root on \(container?.root ?? "?"): \(text)"
        case Int(MUSTER_STEP_CONTAINER_MOUNT): return "container: mount \(muster_container_mount_name(Int32(index)).map { String(cString: $0) } ?? "?"): \(text)"
        case Int(MUSTER_STEP_CONTAINER_BIND):
            guard let binds = container?.binds, binds.indices.contains(index) else { return "container: bind mount: \(text)" }
            return "container: bind \(binds[index].source) to \(binds[index].target): \(text)"
        case Int(MUSTER_STEP_CONTAINER_PIVOT): return "container: pivot_root into \(container?.root ?? "?"): \(text)"
        case Int(MUSTER_STEP_CONTAINER_HOSTNAME): return "container: sethostname \(container?.hostname ?? ""): \(text)"
        case Int(MUSTER_STEP_CONTAINER_LOOPBACK): return "container: bring up loopback: \(text)"
        default: return nil
        }
    }
}

/// An `IsolationSpec` as the C request holds it: C strings and arrays, alive until `release()`.
struct ShimIsolation {
    private let isolation: IsolationSpec
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var readOnly: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private var writable: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private var inaccessible: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private var limits: UnsafeMutablePointer<muster_rlimit>

    init(_ isolation: IsolationSpec) {
        self.isolation = isolation
        var strings: [UnsafeMutablePointer<CChar>] = []
        func array(_ paths: [IsolatedPath]) -> UnsafeMutablePointer<UnsafePointer<CChar>?> {
            let pointers = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: paths.count + 1)
            for (i, path) in paths.enumerated() {
                let copy = strdup(path.description)!
                strings.append(copy)
                pointers[i] = UnsafePointer(copy)
            }
            pointers[paths.count] = nil
            return pointers
        }
        readOnly = array(isolation.readOnlyPaths)
        writable = array(isolation.writablePaths)
        inaccessible = array(isolation.inaccessiblePaths)
        let entries = isolation.limits.entries
        limits = .allocate(capacity: max(1, entries.count))
        for (i, entry) in entries.enumerated() {
            limits[i] = muster_rlimit(resource: Self.resource(entry.kind), value: entry.value)
        }
        self.strings = strings
    }

    func fill(_ q: inout muster_spawn_request, mountNamespaceFD: Int32?) {
        q.rlimits = UnsafePointer(limits)
        q.rlimit_count = isolation.limits.entries.count
        if let mountNamespaceFD {
            q.join_mount_namespace = isolation.needsMountNamespace ? 1 : 0
            q.mount_namespace_fd = mountNamespaceFD
        } else if isolation.needsMountNamespace {
            q.new_mount_namespace = 1
            q.read_only_paths = UnsafePointer(readOnly)
            q.read_only_count = isolation.readOnlyPaths.count
            q.writable_paths = UnsafePointer(writable)
            q.writable_count = isolation.writablePaths.count
            q.private_tmp = isolation.privateTmp ? 1 : 0
            q.inaccessible_paths = UnsafePointer(inaccessible)
            q.inaccessible_count = isolation.inaccessiblePaths.count
        }
        if let capabilities = isolation.capabilities {
            q.limit_capabilities = 1
            q.keep_capabilities = capabilities.mask
            q.cap_last = Self.lastCapability
        }
        q.no_new_privs = isolation.noNewPrivileges ? 1 : 0
    }

    mutating func release() {
        for string in strings { free(string) }
        strings = []
        readOnly.deallocate()
        writable.deallocate()
        inaccessible.deallocate()
        limits.deallocate()
    }

    static func resource(_ kind: ProcessLimits.Kind) -> Int32 {
        switch kind {
        case .nofile: Int32(MUSTER_LIMIT_NOFILE)
        case .nproc: Int32(MUSTER_LIMIT_NPROC)
        case .core: Int32(MUSTER_LIMIT_CORE)
        case .memlock: Int32(MUSTER_LIMIT_MEMLOCK)
        }
    }

    /// The highest capability this kernel knows; every one above the kept list up to it is
    /// dropped. Unreadable: 63, and the child skips the numbers the kernel does not have.
    static let lastCapability: Int32 = {
        let text = FileSystem.readIfPresent("/proc/sys/kernel/cap_last_cap") ?? ""
        return Int32(text.filter { !$0.isWhitespace }).map { min($0, 63) } ?? 63
    }()

    /// musterd's own hard limit, to explain an EPERM.
    static func daemonHardLimit(_ kind: ProcessLimits.Kind) -> UInt64? {
        var value: UInt64 = 0
        return muster_hard_limit(resource(kind), &value) == 0 ? value : nil
    }
}

/// The filter's instructions and their count, alive for the call; (nil, 0) without one.
private func withFilter<R>(_ filter: SeccompFilter?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let filter else { return body(nil, 0) }
    return filter.program.withUnsafeBytes { body($0.baseAddress, filter.instructionCount) }
}

private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let text else { return body(nil) }
    return text.withCString { body($0) }
}

/// NULL-terminated C string arrays that live for the duration of a call.
enum CStrings {
    static func withArray<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
        defer { pointers.deallocate() }
        for (i, string) in strings.enumerated() { pointers[i] = strdup(string) }
        pointers[strings.count] = nil
        defer { for i in 0..<strings.count { free(pointers[i]) } }
        return body(pointers)
    }
}
