/// `[isolation]`: what an instance may see and do beyond its account and its cgroup. The spawn
/// shim applies all of it in the child, before exec.
public struct IsolationSpec: Sendable, Equatable, Codable {
    /// PR_SET_NO_NEW_PRIVS: setuid/setgid programs and file capabilities grant nothing after exec.
    public var noNewPrivileges = true
    /// The capabilities the instance may keep (bounding set, and permitted, effective and
    /// inheritable); nil leaves them as the daemon has them.
    public var capabilities: CapabilitySet?
    /// A fresh tmpfs on /tmp in a mount namespace of the instance's own.
    public var privateTmp = false
    public var readOnlyPaths: [IsolatedPath] = []
    /// Writable again inside a read-only path.
    public var writablePaths: [IsolatedPath] = []
    public var inaccessiblePaths: [IsolatedPath] = []
    public var limits = ProcessLimits()

    /// The manifest's default: no new privileges, nothing else.
    public init() {}

    /// Nothing at all: what a spawn gets that no manifest asked to confine.
    public static let unconfined: IsolationSpec = {
        var spec = IsolationSpec()
        spec.noNewPrivileges = false
        return spec
    }()

    /// Any of the mount settings: the instance gets a mount namespace of its own.
    public var needsMountNamespace: Bool {
        privateTmp || !readOnlyPaths.isEmpty || !writablePaths.isEmpty || !inaccessiblePaths.isEmpty
    }

    /// At most this many paths per list: the shim keeps one descriptor per writable path on the
    /// child's small stack.
    public static let maxPaths = 64

    /// `{service}`, `{index}` and `{port}` expanded in every path.
    public func expanded(_ values: Placeholders.Values) -> IsolationSpec {
        var copy = self
        for keyPath in [\IsolationSpec.readOnlyPaths, \.writablePaths, \.inaccessiblePaths] {
            copy[keyPath: keyPath] = self[keyPath: keyPath].map { IsolatedPath(path: Placeholders.expand($0.path, values), optional: $0.optional) }
        }
        return copy
    }
}

/// One entry of `read_only_paths`, `writable_paths` or `inaccessible_paths`. Written `"-/path"`,
/// it is skipped when the path does not exist (systemd's convention); otherwise a missing path is
/// an error.
public struct IsolatedPath: Sendable, Equatable, Codable, CustomStringConvertible {
    public var path: String
    public var optional: Bool

    public init(path: String, optional: Bool = false) {
        self.path = path
        self.optional = optional
    }

    /// Reads the manifest's spelling; nil unless it is absolute and free of `.` and `..` parts.
    public init?(_ text: String) {
        let optional = text.hasPrefix("-")
        var path = optional ? String(text.dropFirst()) : text
        guard path.hasPrefix("/"), !path.contains("\0") else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.contains(where: { $0 == "." || $0 == ".." }) else { return nil }
        path = "/" + parts.joined(separator: "/")
        self.init(path: path, optional: optional)
    }

    /// As written in a manifest, and as the shim reads it: a leading `-` when optional.
    public var description: String { (optional ? "-" : "") + path }
}

/// Resource limits (setrlimit) of an instance; soft and hard are both set to the value.
public struct ProcessLimits: Sendable, Equatable, Codable {
    /// RLIM_INFINITY.
    public static let unlimited = UInt64.max

    /// Open files (RLIMIT_NOFILE).
    public var nofile: UInt64?
    /// Processes of the instance's user, all of them, not just this instance's (RLIMIT_NPROC).
    public var nproc: UInt64?
    /// Core dump size in bytes; 0 turns core dumps off (RLIMIT_CORE).
    public var core: UInt64?
    /// Locked memory in bytes (RLIMIT_MEMLOCK).
    public var memlock: UInt64?

    public init(nofile: UInt64? = nil, nproc: UInt64? = nil, core: UInt64? = nil, memlock: UInt64? = nil) {
        self.nofile = nofile
        self.nproc = nproc
        self.core = core
        self.memlock = memlock
    }

    public enum Kind: String, Sendable, CaseIterable {
        case nofile, nproc, core, memlock
    }

    /// The limits that are set, in a fixed order.
    public var entries: [(kind: Kind, value: UInt64)] {
        [(Kind.nofile, nofile), (.nproc, nproc), (.core, core), (.memlock, memlock)].compactMap { kind, value in value.map { (kind, $0) } }
    }

    public subscript(kind: Kind) -> UInt64? {
        get {
            switch kind {
            case .nofile: nofile
            case .nproc: nproc
            case .core: core
            case .memlock: memlock
            }
        }
        set {
            switch kind {
            case .nofile: nofile = newValue
            case .nproc: nproc = newValue
            case .core: core = newValue
            case .memlock: memlock = newValue
            }
        }
    }
}

/// A set of Linux capabilities, by number (bit n of `mask` is capability n).
public struct CapabilitySet: Sendable, Equatable, Codable, CustomStringConvertible {
    public var mask: UInt64

    public init(mask: UInt64 = 0) { self.mask = mask }

    public init(_ numbers: [Int]) {
        mask = numbers.reduce(0) { $0 | (1 << UInt64($1)) }
    }

    public func contains(_ number: Int) -> Bool { number >= 0 && number < 64 && mask & (1 << UInt64(number)) != 0 }

    public var numbers: [Int] { (0..<64).filter(contains) }

    /// What a container keeps when `[isolation] capabilities` does not say: podman's default set
    /// (containers.conf): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE, SETFCAP,
    /// SETGID, SETPCAP, SETUID, SYS_CHROOT. Docker's adds MKNOD, NET_RAW and AUDIT_WRITE.
    public static let containerDefault = CapabilitySet([0, 1, 3, 4, 5, 10, 31, 6, 8, 7, 18])

    /// `CAP_CHOWN, CAP_NET_BIND_SERVICE`, or `(none)`.
    public var description: String {
        numbers.isEmpty ? "(none)" : numbers.map(Capabilities.name).joined(separator: ", ")
    }
}

/// Capability names as capabilities(7) spells them, by number (linux/capability.h).
public enum Capabilities {
    public static let names = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// `CAP_NET_BIND_SERVICE`, `NET_BIND_SERVICE` or `cap_net_bind_service`; nil for anything else.
    public static func number(named text: String) -> Int? {
        let upper = text.uppercased()
        let name = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
        return names.firstIndex(of: name)
    }

    public static func name(_ number: Int) -> String {
        names.indices.contains(number) ? names[number] : "capability \(number)"
    }
}
