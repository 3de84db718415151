import CMusterShims
import CSeccomp
import Glibc

/// A seccomp filter as the kernel loads it: a classic BPF program (`struct sock_filter`
/// instructions, 8 bytes each). It is compiled in the daemon with libseccomp, once, and the spawn
/// shim only hands the finished bytes to prctl(PR_SET_SECCOMP) in the child, where nothing may
/// allocate or take a lock: libseccomp does both, so it cannot run there.
public struct SeccompFilter: Sendable, Equatable {
    /// The program, as seccomp_export_bpf writes it (native byte order).
    public let program: [UInt8]

    /// Its length in instructions, which is what `struct sock_fprog` counts.
    public var instructionCount: Int { program.count / 8 }

    /// Compiles `rules` over a default of allowing everything else, for the native architecture
    /// and its 32-bit ABIs (an x86-64 kernel also runs i386 and x32 programs, whose system call
    /// numbers differ: a filter without them leaves those numbers open).
    /// - Throws: `SeccompError` naming the rule or libseccomp call that failed.
    public static func build(_ rules: [SeccompRule], architectures: [String] = SeccompFilter.compatArchitectures) throws(SeccompError) -> SeccompFilter {
        guard let context = seccomp_init(SCMP_ACT_ALLOW) else { throw SeccompError("seccomp_init: out of memory") }
        defer { seccomp_release(context) }
        // A binary tree of system call numbers instead of a chain: at load the kernel runs the
        // program for every number to find the calls it may skip filtering, and the child pays
        // for that walk per spawn (measured here: 270 µs with the chain, 135 µs with the tree).
        let optimize = seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        guard optimize == 0 else { throw SeccompError("seccomp_attr_set optimize: \(FileSystem.errorText(-optimize))") }
        for name in architectures {
            let token = seccomp_arch_resolve_name(name)
            guard token != 0 else { throw SeccompError("seccomp: libseccomp does not know the architecture \(name)") }
            let rc = seccomp_arch_add(context, token)
            // EEXIST: it is the native one already.
            guard rc == 0 || rc == -EEXIST else { throw SeccompError("seccomp_arch_add \(name): \(FileSystem.errorText(-rc))") }
        }
        for rule in rules {
            for name in rule.syscalls {
                let number = seccomp_syscall_resolve_name(name)
                // Not the same as "not on this architecture": those resolve to a negative
                // pseudo-number that libseccomp maps to each architecture that has the call.
                guard number != __NR_SCMP_ERROR else {
                    throw SeccompError("seccomp: this libseccomp (\(libraryVersion)) does not know the system call \(name); the filter would leave it open")
                }
                for comparisons in rule.condition.comparisons {
                    let rc = comparisons.withUnsafeBufferPointer { buffer in
                        seccomp_rule_add_array(context, rule.action, number, UInt32(buffer.count), buffer.baseAddress)
                    }
                    guard rc == 0 else { throw SeccompError("seccomp_rule_add \(name): \(FileSystem.errorText(-rc))") }
                }
            }
        }
        return SeccompFilter(program: try export(context))
    }

    /// The 32-bit ABIs of the architecture musterd was built for.
    public static var compatArchitectures: [String] {
        #if arch(x86_64)
        ["x86", "x32"]
        #elseif arch(arm64)
        ["arm"]
        #else
        []
        #endif
    }

    /// libseccomp 2.5 exports only into a file descriptor (seccomp_export_bpf_mem is 2.6): a
    /// memfd, read back whole.
    private static func export(_ context: scmp_filter_ctx) throws(SeccompError) -> [UInt8] {
        let fd = muster_memfd_cloexec("muster-seccomp")
        guard fd >= 0 else { throw SeccompError("seccomp: memfd_create: \(FileSystem.errorText(errno))") }
        defer { close(fd) }
        let rc = seccomp_export_bpf(context, fd)
        guard rc == 0 else { throw SeccompError("seccomp_export_bpf: \(FileSystem.errorText(-rc))") }
        let size = Int(lseek(fd, 0, SEEK_END))
        // BPF_MAXINSNS: the kernel refuses a longer program.
        guard size > 0, size % 8 == 0, size / 8 <= 4096 else { throw SeccompError("seccomp_export_bpf: a program of \(size) bytes is not 1 to 4096 instructions") }
        var program = [UInt8](repeating: 0, count: size)
        let read = program.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard read == size else { throw SeccompError("seccomp: reading the exported program back: \(read < 0 ? FileSystem.errorText(errno) : "\(read) of \(size) bytes")") }
        return program
    }

    /// "2.5.4", for error messages.
    static var libraryVersion: String {
        guard let v = seccomp_version()?.pointee else { return "unknown version" }
        return "\(v.major).\(v.minor).\(v.micro)"
    }
}

/// One group of system calls a filter denies, and why.
public struct SeccompRule: Sendable {
    /// When a call of the group is denied.
    public enum Condition: Sendable {
        case always
        /// Any of these bits set in the first argument (clone's flags). One masked comparison
        /// per bit: libseccomp 2.5 takes one comparison per argument in a rule, and the rules
        /// of a call are or'ed.
        case firstArgumentHasAnyOf(UInt64)
        /// The first argument, taken as 32 bits, is neither a combination of `allowedBits` nor
        /// 0xffffffff (personality's "only tell me"). See `comparisons` for how that is spelled
        /// without a "not equal" on a masked value.
        case firstArgumentOutside(allowedBits: UInt32)
    }

    public var syscalls: [String]
    /// What the denied call returns: -1 with this errno.
    public var errno: Int32
    public var condition: Condition
    /// One line: what the group could do inside a container.
    public var reason: String

    public init(_ syscalls: [String], errno: Int32 = EPERM, when condition: Condition = .always, reason: String) {
        self.syscalls = syscalls
        self.errno = errno
        self.condition = condition
        self.reason = reason
    }

    /// SCMP_ACT_ERRNO(errno) (a function-like macro, which Swift does not import).
    var action: UInt32 { 0x0005_0000 | (UInt32(bitPattern: errno) & 0xffff) }
}

extension SeccompRule.Condition {
    /// The rules libseccomp gets for one call, each a list of comparisons that must all hold.
    var comparisons: [[scmp_arg_cmp]] {
        func masked(_ mask: UInt64, equals value: UInt64) -> [scmp_arg_cmp] {
            [scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: mask, datum_b: value)]
        }
        switch self {
        case .always:
            return [[]]
        case .firstArgumentHasAnyOf(let flags):
            return (0..<64).map { UInt64(1) << $0 }.filter { flags & $0 != 0 }.map { masked($0, equals: $0) }
        case .firstArgumentOutside(let allowed):
            // Masks within the low 32 bits leave the high half of the register unchecked, as the
            // kernel does (personality takes an unsigned int). Denied: bit 31 clear and some bit
            // outside `allowed` set; or bit 31 set (never allowed by itself) and any other bit
            // clear, which is every value with bit 31 but 0xffffffff.
            let top = UInt64(1) << 31
            let bits = (0..<31).map { UInt64(1) << $0 }
            return bits.filter { UInt64(allowed) & $0 == 0 }.map { masked($0 | top, equals: $0) }
                + bits.map { masked($0 | top, equals: top) }
        }
    }
}

/// Why a filter could not be built, naming the call or the libseccomp step.
public struct SeccompError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
