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

    public init(program: String, argv: [String], environment: [String], directory: String, credentials: Credentials?,
                stdoutFD: Int32 = -1, stderrFD: Int32 = -1, cgroup: InstanceCgroup? = nil, v1ProcsPaths: [String] = []) {
        self.program = program
        self.argv = argv
        self.environment = environment
        self.directory = directory
        self.credentials = credentials
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.cgroup = cgroup
        self.v1ProcsPaths = v1ProcsPaths
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

        var result = muster_spawn_result()
        let procsPath = request.cgroup?.unified.map { $0 + "/cgroup.procs" }
        let rc = CStrings.withArray(request.argv) { argv in
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
                                    return muster_spawn(&q, &result)
                                }
                            }
                        }
                    }
                }
            }
        }
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
        default: return "spawn: \(text)"
        }
    }
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
