import Glibc
import MusterCore
import Synchronization

/// A started instance's cgroup: one leaf in the cgroup2 tree (tracking, `cgroup.kill`, CPU
/// usage; on pure cgroup2 hosts the limits too) and, on hybrid hosts, one leaf per v1 controller
/// hierarchy that carries a limit or accounting.
public struct InstanceCgroup: Sendable, Equatable {
    /// Relative name under the root: "services/web/0-3".
    public var relativePath: String
    public var unified: String?
    /// v1 controller → leaf directory.
    public var v1: [String: String]

    /// The path operators see (status shows it).
    public var displayPath: String? { unified ?? v1.values.sorted().first }
}

/// The cgroup tree that musterd owns: `<root>/services/<service>/<index>-<generation>` in every
/// hierarchy it uses, `<root>/daemon` for the daemon itself when the root is its own delegated
/// cgroup. Each kernel file it touches is named in the error when it fails.
public final class Cgroups: Sendable {
    public enum Mode: String, Sendable {
        /// Pure cgroup2 with controllers: everything in one tree.
        case unified
        /// cgroup2 for tracking and kill, v1 hierarchies for memory, pids and cpu limits.
        case hybrid
        /// No cgroups (not root, no delegation): processes are tracked by pidfd and process group.
        case unavailable
    }

    public let mode: Mode
    /// Why cgroups are unavailable, said once at start and given as the reason for refusing limits.
    public let unavailableReason: String?
    /// The root in the cgroup2 tree.
    public let unifiedRoot: String?
    /// v1 controller → the root in that hierarchy.
    let v1Roots: [String: String]
    /// Controllers enabled for services in the cgroup2 tree (pure cgroup2 hosts).
    let v2Controllers: Set<String>
    /// Named roots are created by musterd and removed at shutdown; an `auto` root is not ours.
    let ownsRoot: Bool

    static let limitControllers = ["memory", "pids", "cpu"]

    private init(mode: Mode, reason: String?, unifiedRoot: String?, v1Roots: [String: String],
                 v2Controllers: Set<String>, ownsRoot: Bool) {
        self.mode = mode
        self.unavailableReason = reason
        self.unifiedRoot = unifiedRoot
        self.v1Roots = v1Roots
        self.v2Controllers = v2Controllers
        self.ownsRoot = ownsRoot
    }

    public static func unavailable(_ reason: String) -> Cgroups {
        Cgroups(mode: .unavailable, reason: reason, unifiedRoot: nil, v1Roots: [:], v2Controllers: [], ownsRoot: false)
    }

    /// Finds the hierarchies, creates the root (or adopts the daemon's own cgroup for `auto`, moving
    /// the daemon into a leaf of its own) and enables controllers. Never throws: when cgroups
    /// cannot be used, the result is `.unavailable` with the reason.
    public static func setUp(root: DaemonConfig.CgroupRoot) -> Cgroups {
        guard let mountinfo = FileSystem.readIfPresent("/proc/self/mountinfo") else {
            return unavailable("cannot read /proc/self/mountinfo")
        }
        let mounts = CgroupMounts.parse(mountinfo: mountinfo)
        guard let unifiedMount = mounts.unified else {
            return unavailable("no cgroup2 hierarchy is mounted (pure cgroup v1 hosts are not supported)")
        }
        let rootControllers = Set((FileSystem.readIfPresent(unifiedMount + "/cgroup.controllers") ?? "").split(separator: " ").map { String($0).trimmingWhitespace() })
        let pureV2 = rootControllers.contains("memory") || mounts.v1["memory"] == nil
        let own = CgroupMounts.parse(procCgroup: FileSystem.readIfPresent("/proc/self/cgroup") ?? "")

        var unifiedRoot: String
        var v1Roots: [String: String] = [:]
        switch root {
        case .named(let name):
            unifiedRoot = unifiedMount + "/" + name
            if !pureV2 { for c in limitControllers { if let m = mounts.v1[c] { v1Roots[c] = m + "/" + name } } }
        case .auto:
            let ownPath = own[""] ?? "/"
            unifiedRoot = unifiedMount + (ownPath == "/" ? "" : ownPath)
            if !pureV2 {
                for c in limitControllers {
                    if let m = mounts.v1[c] { v1Roots[c] = m + ((own[c] ?? "/") == "/" ? "" : own[c]!) }
                }
            }
        }
        do {
            try FileSystem.makeDirectories(unifiedRoot + "/services")
            if case .auto = root {
                // cgroup2's no-internal-process rule: a cgroup with children cannot hold processes
                // if controllers are to be enabled, so the daemon moves into a leaf of its own.
                try FileSystem.makeDirectories(unifiedRoot + "/daemon")
                try FileSystem.write(String(getpid()), to: unifiedRoot + "/daemon/cgroup.procs")
            }
        } catch {
            return unavailable("cannot create cgroups under \(unifiedRoot): \(error)")
        }
        var enabled: Set<String> = []
        if pureV2 {
            if case .named = root { _ = enableControllers(path: unifiedMount, wanted: limitControllers) }
            enabled = enableControllers(path: unifiedRoot, wanted: limitControllers)
            if !enabled.isEmpty { _ = enableControllers(path: unifiedRoot + "/services", wanted: Array(enabled)) }
        } else {
            for (controller, path) in v1Roots {
                do { try FileSystem.makeDirectories(path + "/services") }
                catch { v1Roots[controller] = nil }
            }
        }
        let ownsRoot: Bool = if case .named = root { true } else { false }
        return Cgroups(mode: pureV2 ? .unified : .hybrid, reason: nil, unifiedRoot: unifiedRoot, v1Roots: v1Roots,
                       v2Controllers: enabled, ownsRoot: ownsRoot)
    }

    /// Writes "+memory +pids +cpu" (those available) to the group's subtree_control; returns what
    /// is now enabled.
    private static func enableControllers(path: String, wanted: [String]) -> Set<String> {
        let available = Set((FileSystem.readIfPresent(path + "/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace).map(String.init))
        var enabled: Set<String> = []
        for controller in wanted where available.contains(controller) {
            if (try? FileSystem.write("+" + controller, to: path + "/cgroup.subtree_control")) != nil { enabled.insert(controller) }
        }
        return enabled
    }

    // MARK: Instances

    /// Creates a fresh leaf for one instance start (never a reused one: after `cgroup.kill` the
    /// kernel here SIGKILLs every later CLONE_INTO_CGROUP child of that group) and applies limits.
    /// - Throws: a reason a person can act on, naming the file or the missing controller.
    public func createInstance(service: String, leaf: String, limits: ResourceLimits) throws(CgroupError) -> InstanceCgroup? {
        guard mode != .unavailable, let unifiedRoot else {
            if limits.isEmpty { return nil }
            throw CgroupError("resource limits need cgroups, which musterd cannot use here: \(unavailableReason ?? "unknown reason")")
        }
        let relative = "services/\(service)/\(leaf)"
        var group = InstanceCgroup(relativePath: relative, unified: unifiedRoot + "/" + relative, v1: [:])
        do {
            if mode == .unified, !v2Controllers.isEmpty, !FileSystem.isDirectory(unifiedRoot + "/services/" + service) {
                try FileSystem.makeDirectories(unifiedRoot + "/services/" + service)
                _ = Self.enableControllers(path: unifiedRoot + "/services/" + service, wanted: Array(v2Controllers))
            }
            try makeLeaf(group.unified!)
            if mode == .hybrid {
                for controller in v1ControllersNeeded(limits) {
                    guard let base = v1Roots[controller] else {
                        throw CgroupError("\(controller) limit asked for, but the v1 \(controller) hierarchy is not usable by musterd")
                    }
                    let path = base + "/" + relative
                    try makeLeaf(path)
                    group.v1[controller] = path
                }
            }
            try applyLimits(limits, to: group)
        } catch let error as CgroupError {
            remove(group)
            throw error
        } catch {
            remove(group)
            throw CgroupError("\(error)")
        }
        return group
    }

    private func makeLeaf(_ path: String) throws(FileSystem.Failure) {
        if mkdir(path, 0o755) < 0 {
            var code = errno
            // The first instance of a service makes the service's folder too.
            if code == ENOENT {
                try FileSystem.makeDirectories(PathText.directory(of: path))
                if mkdir(path, 0o755) == 0 { return }
                code = errno
            }
            // A leftover of an earlier run with the same name: take it over if it is empty.
            if code == EEXIST, rmdir(path) == 0, mkdir(path, 0o755) == 0 { return }
            throw FileSystem.Failure(operation: "mkdir", path: path, errno: code)
        }
    }

    private func v1ControllersNeeded(_ limits: ResourceLimits) -> [String] {
        // Only to hold a limit: creating and joining a v1 memory group costs a spawn ~0.1 ms and
        // sometimes 10 ms, for nothing when there is no limit (status then reads the process's RSS).
        var controllers: [String] = []
        if limits.memoryMax != nil { controllers.append("memory") }
        if limits.pidsMax != nil { controllers.append("pids") }
        if limits.cpuMax != nil { controllers.append("cpu") }
        return controllers
    }

    private func applyLimits(_ limits: ResourceLimits, to group: InstanceCgroup) throws {
        let period = 100_000
        if mode == .unified, let leaf = group.unified {
            func need(_ controller: String) throws {
                if !v2Controllers.contains(controller) {
                    throw CgroupError("\(controller) limit asked for, but the \(controller) controller is not enabled for musterd's cgroup \(unifiedRoot ?? "")")
                }
            }
            if let memory = limits.memoryMax { try need("memory"); try FileSystem.write(String(memory), to: leaf + "/memory.max") }
            if let pids = limits.pidsMax { try need("pids"); try FileSystem.write(String(pids), to: leaf + "/pids.max") }
            if let cpu = limits.cpuMax {
                try need("cpu")
                try FileSystem.write("\(max(1000, Int(cpu * Double(period)))) \(period)", to: leaf + "/cpu.max")
            }
        } else {
            if let memory = limits.memoryMax, let leaf = group.v1["memory"] {
                try FileSystem.write(String(memory), to: leaf + "/memory.limit_in_bytes")
            }
            if let pids = limits.pidsMax, let leaf = group.v1["pids"] { try FileSystem.write(String(pids), to: leaf + "/pids.max") }
            if let cpu = limits.cpuMax, let leaf = group.v1["cpu"] {
                try FileSystem.write(String(period), to: leaf + "/cpu.cfs_period_us")
                try FileSystem.write(String(max(1000, Int(cpu * Double(period)))), to: leaf + "/cpu.cfs_quota_us")
            }
        }
    }

    /// cgroup.procs files the child writes itself into (v1 leaves).
    public func v1ProcsPaths(_ group: InstanceCgroup) -> [String] {
        group.v1.keys.sorted().map { group.v1[$0]! + "/cgroup.procs" }
    }

    /// Kills every process in the group at once: `cgroup.kill` where the kernel has it, else
    /// SIGKILL to each listed process until none is left.
    public func kill(_ group: InstanceCgroup) {
        guard let leaf = group.unified else { return }
        if (try? FileSystem.write("1", to: leaf + "/cgroup.kill")) != nil { return }
        for _ in 0..<20 {
            let pids = processes(group)
            if pids.isEmpty { return }
            for pid in pids { Glibc.kill(pid, SIGKILL) }
        }
    }

    /// Sends `signal` to every process in the group.
    public func signalAll(_ group: InstanceCgroup, _ signal: Int32) {
        for pid in processes(group) { Glibc.kill(pid, signal) }
    }

    public func processes(_ group: InstanceCgroup) -> [Int32] {
        guard let leaf = group.unified ?? group.v1["memory"] else { return [] }
        return (FileSystem.readIfPresent(leaf + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    public func isPopulated(_ group: InstanceCgroup) -> Bool {
        if let leaf = group.unified, let events = FileSystem.readIfPresent(leaf + "/cgroup.events") {
            return Self.field("populated", in: events) != 0
        }
        return !processes(group).isEmpty
    }

    /// Removes the leaf in every hierarchy. Returns false while processes remain in it.
    @discardableResult
    public func remove(_ group: InstanceCgroup) -> Bool {
        var removed = true
        for path in [group.unified].compactMap({ $0 }) + group.v1.values.sorted() {
            if rmdir(path) < 0 && errno != ENOENT { removed = false }
        }
        return removed
    }

    /// How many times the kernel's OOM killer killed a process in the group.
    public func oomKills(_ group: InstanceCgroup) -> Int {
        if mode == .unified, let leaf = group.unified, let events = FileSystem.readIfPresent(leaf + "/memory.events") {
            return Self.field("oom_kill", in: events) ?? 0
        }
        if let leaf = group.v1["memory"], let control = FileSystem.readIfPresent(leaf + "/memory.oom_control") {
            return Self.field("oom_kill", in: control) ?? 0
        }
        return 0
    }

    public struct Usage: Sendable {
        public var cpuSeconds: Double?
        /// Share of one core between the two latest samples (since start for the first).
        public var cpuPercent: Double?
        public var memoryBytes: UInt64?
    }

    /// Opens the group's usage files once, so that each `status` reads them with one pread each
    /// instead of walking the cgroupfs path again: with 200 instances the path walks were most of
    /// a status request's time.
    /// - Parameter pid: whose resident memory stands in when the group has no memory accounting
    ///   (hybrid hosts without a memory limit).
    public func usageReader(_ group: InstanceCgroup, pid: Int32, startedAt: ContinuousClock.Instant) -> UsageReader {
        let cpu = group.unified.map { $0 + "/cpu.stat" }
        if mode == .unified, v2Controllers.contains("memory"), let leaf = group.unified {
            return UsageReader(cpuStat: cpu, memory: leaf + "/memory.current", startedAt: startedAt)
        }
        if let leaf = group.v1["memory"] {
            return UsageReader(cpuStat: cpu, memory: leaf + "/memory.usage_in_bytes", startedAt: startedAt)
        }
        return UsageReader(cpuStat: cpu, statm: "/proc/\(pid)/statm", startedAt: startedAt)
    }

    /// The service's folder as a whole (every instance, retiring ones included): the kernel sums
    /// cgroup2's `cpu.stat` over descendants, and `memory.current` too where the memory
    /// controller is on. One read a second a service, instead of two an instance, is what keeps
    /// the charts' sampler flat at 2,000 instances. Without a service-wide memory file (hybrid
    /// hosts, where instances without a memory limit have no v1 memory group) the reader's
    /// `readsMemory` is false: the caller sums the instances' own readings then.
    /// - Returns: nil without cgroups, or before the service's folder exists (its first instance
    ///   makes it).
    public func serviceUsageReader(_ service: String) -> UsageReader? {
        guard mode != .unavailable, let unifiedRoot else { return nil }
        let folder = unifiedRoot + "/services/" + service
        guard FileSystem.isDirectory(folder) else { return nil }
        if mode == .unified, v2Controllers.contains("memory") {
            return UsageReader(cpuStat: folder + "/cpu.stat", memory: folder + "/memory.current")
        }
        return UsageReader(cpuStat: folder + "/cpu.stat")
    }

    // MARK: The tree

    /// Instance leaves found under the root, e.g. left by a daemon that was SIGKILLed.
    public func leftovers() -> [InstanceCgroup] {
        guard let unifiedRoot else { return [] }
        var groups: [InstanceCgroup] = []
        var relatives: Set<String> = []
        for service in FileSystem.list(unifiedRoot + "/services") where FileSystem.isDirectory(unifiedRoot + "/services/" + service) {
            for leaf in FileSystem.list(unifiedRoot + "/services/" + service) where FileSystem.isDirectory(unifiedRoot + "/services/\(service)/\(leaf)") {
                relatives.insert("services/\(service)/\(leaf)")
            }
        }
        for (_, base) in v1Roots {
            for service in FileSystem.list(base + "/services") where FileSystem.isDirectory(base + "/services/" + service) {
                for leaf in FileSystem.list(base + "/services/" + service) where FileSystem.isDirectory(base + "/services/\(service)/\(leaf)") {
                    relatives.insert("services/\(service)/\(leaf)")
                }
            }
        }
        for relative in relatives.sorted() {
            var group = InstanceCgroup(relativePath: relative, unified: nil, v1: [:])
            if FileSystem.isDirectory(unifiedRoot + "/" + relative) { group.unified = unifiedRoot + "/" + relative }
            for (controller, base) in v1Roots where FileSystem.isDirectory(base + "/" + relative) { group.v1[controller] = base + "/" + relative }
            groups.append(group)
        }
        return groups
    }

    /// Removes a service's folder once its instances are gone.
    public func removeService(_ service: String) {
        for base in [unifiedRoot].compactMap({ $0 }) + v1Roots.values.sorted() {
            _ = rmdir(base + "/services/" + service)
        }
    }

    /// At shutdown: removes every empty folder musterd made, and the root itself when it is named.
    public func tearDown() {
        for base in [unifiedRoot].compactMap({ $0 }) + v1Roots.values.sorted() {
            for service in FileSystem.list(base + "/services") { _ = rmdir(base + "/services/" + service) }
            _ = rmdir(base + "/services")
            if ownsRoot { _ = rmdir(base) }
        }
    }

    static func field(_ name: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return Int(parts[1]) }
        }
        return nil
    }
}

public struct CgroupError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// CPU time (cgroup2 `cpu.stat` works without the cpu controller) and current memory of one
/// instance cgroup, from files held open for the instance's life.
public final class UsageReader: Sendable {
    private struct State {
        /// Opened on the first read, not at spawn: a mass start should not pay for files nobody reads.
        var cpuFD: Int32 = -1
        var memoryFD: Int32 = -1
        var opened = false
        var latest: (usage: Cgroups.Usage, at: ContinuousClock.Instant)?
        var previousCPU: (seconds: Double, at: ContinuousClock.Instant)
    }

    /// Samples are reused for this long: `status` in a loop (or 200 rows of it) should not make the
    /// kernel regenerate every cpu.stat each time.
    static let sampleInterval: Duration = .seconds(1)

    private let paths: (cpu: String?, memory: String?)
    private let state: Mutex<State>
    /// The memory file is /proc/PID/statm (pages) rather than a cgroup's byte count.
    private let memoryIsStatm: Bool

    init(cpuStat: String?, memory: String? = nil, statm: String? = nil, startedAt: ContinuousClock.Instant = .now) {
        paths = (cpuStat, memory ?? statm)
        memoryIsStatm = memory == nil && statm != nil
        state = Mutex(State(previousCPU: (0, startedAt)))
    }

    deinit {
        state.withLock { s in
            if s.cpuFD >= 0 { close(s.cpuFD) }
            if s.memoryFD >= 0 { close(s.memoryFD) }
        }
    }

    public func read(now: ContinuousClock.Instant = .now) -> Cgroups.Usage {
        state.withLock { s in
            if let latest = s.latest, now - latest.at < Self.sampleInterval { return latest.usage }
            var usage = Cgroups.Usage()
            let (cpuSeconds, memoryBytes) = readFiles(&s)
            if let seconds = cpuSeconds {
                usage.cpuSeconds = seconds
                let elapsed = (now - s.previousCPU.at).seconds
                if elapsed > 0 { usage.cpuPercent = max(0, (seconds - s.previousCPU.seconds) / elapsed * 100) }
                s.previousCPU = (seconds, now)
            }
            usage.memoryBytes = memoryBytes
            s.latest = (usage, now)
            return usage
        }
    }

    /// CPU seconds and memory right now, past the shared sample: the autoscaler keeps its own
    /// previous reading, so its rate neither waits for nor disturbs what `status` shows.
    public func readFresh() -> (cpuSeconds: Double?, memoryBytes: UInt64?) {
        state.withLock { s in readFiles(&s) }
    }

    private func openIfNeeded(_ s: inout State) {
        guard !s.opened else { return }
        s.opened = true
        s.cpuFD = paths.cpu.map { open($0, O_RDONLY | O_CLOEXEC) } ?? -1
        s.memoryFD = paths.memory.map { open($0, O_RDONLY | O_CLOEXEC) } ?? -1
    }

    private func readFiles(_ s: inout State) -> (cpuSeconds: Double?, memoryBytes: UInt64?) {
        openIfNeeded(&s)
        let micros = Self.pread(s.cpuFD) { Self.number(after: Self.usageKey, in: $0) }
        return (micros.map { Double($0) / 1e6 }, memory(s))
    }

    /// It has a memory file (a cgroup's, or the process's statm) to read.
    public var readsMemory: Bool { paths.memory != nil }

    /// Only the memory file, past the shared sample: the charts' sampler on hybrid hosts sums it
    /// over every instance now and then, and does not need the CPU file read with it.
    public func readMemory() -> UInt64? {
        state.withLock { s in
            openIfNeeded(&s)
            return memory(s)
        }
    }

    private func memory(_ s: State) -> UInt64? {
        Self.pread(s.memoryFD) { bytes in
            // statm: "size resident shared …" in pages; a cgroup's file: bytes.
            guard memoryIsStatm else { return Self.number(after: [], in: bytes) }
            guard let space = bytes.firstIndex(of: UInt8(ascii: " ")),
                  let pages = Self.number(after: [], in: UnsafeBufferPointer(rebasing: bytes[(space + 1)...])) else { return nil }
            return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        }
    }

    /// cpu.stat's first line, "usage_usec 123456".
    private static let usageKey = Array("usage_usec ".utf8)

    /// The decimal number right after `key` at the start of a line (no String made: at 2,000
    /// instances, splitting each file into lines was a fifth of the sampler's time).
    private static func number(after key: [UInt8], in bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        var start = 0
        while start + key.count <= bytes.count {
            var matches = true
            for (offset, byte) in key.enumerated() where bytes[start + offset] != byte { matches = false; break }
            if matches {
                var value: UInt64 = 0
                var i = start + key.count
                let first = i
                while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                    value = value &* 10 &+ UInt64(bytes[i] - 48)
                    i += 1
                }
                return i > first ? value : nil
            }
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            start = newline + 1
        }
        return nil
    }

    /// cgroupfs regenerates a file's content on every read from offset 0.
    private static func pread<T>(_ fd: Int32, _ parse: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        guard fd >= 0 else { return nil }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer in
            let n = Glibc.pread(fd, buffer.baseAddress, buffer.count, 0)
            return n > 0 ? parse(UnsafeBufferPointer(rebasing: buffer[..<n])) : nil
        }
    }
}
