import Glibc

extension SeccompFilter {
    /// `[container] seccomp = "default"`: what Docker's and Podman's default profiles keep from a
    /// container that holds no extra capabilities, as a deny list over "allow" (theirs are allow
    /// lists over "deny"; the calls they do not list at all are old, unimplemented or
    /// architecture-specific, and the kernel itself refuses them). Built on first use, once per
    /// process; the rules are constants, so a libseccomp that cannot compile them (one too old to
    /// know a call) is an installation fault, reported the first time a container starts.
    public static let containerDefault: SeccompFilter = {
        do {
            return try build(containerDefaultRules)
        } catch {
            fatalError("\(error) (the default container seccomp filter; scripts/setup installs libseccomp 2.5.4)")
        }
    }()

    /// The deny list. Sources: moby `profiles/seccomp/default.json` ("docker") and
    /// containers/common `pkg/seccomp/seccomp.json` ("podman"); a call one of them allows only
    /// with a capability counts as denied, since a container here holds no capability it was
    /// not given. Left allowed where both allow them unconditionally: adjtimex and clock_adjtime
    /// (the kernel wants CAP_SYS_TIME for any change; glibc's ntp_gettime reads with them) and
    /// name_to_handle_at (harmless without open_by_handle_at).
    public static let containerDefaultRules: [SeccompRule] = [
        // docker and podman (CAP_SYS_MODULE; kexec never).
        SeccompRule(["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                     "create_module", "query_module", "get_kernel_syms"],
                    reason: "replaces or extends the running kernel"),
        // docker (CAP_SYS_ADMIN); podman allows these and leaves it to the capability set.
        SeccompRule(["mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
                     "move_mount", "open_tree", "mount_setattr"],
                    reason: "changes the container's mounts: uncovers what its root hides, or mounts host devices"),
        // docker (CAP_SYS_ADMIN).
        SeccompRule(["unshare", "setns"],
                    reason: "new or other namespaces: a user namespace hands out capabilities, setns enters the host's"),
        // docker (its mask 0x7E020000 for clone without CAP_SYS_ADMIN).
        SeccompRule(["clone"], when: .firstArgumentHasAnyOf(cloneNamespaceFlags),
                    reason: "clone into new namespaces, unshare's other door"),
        // docker: clone3 passes its flags in memory, where a filter cannot look, so it does not
        // exist; glibc (threads, posix_spawn) then falls back to clone, whose flags are checked.
        SeccompRule(["clone3"], errno: ENOSYS,
                    reason: "clone with flags a filter cannot see"),
        // docker and podman (swap never; reboot with CAP_SYS_BOOT).
        SeccompRule(["swapon", "swapoff", "reboot"],
                    reason: "the host's swap and power"),
        // podman (CAP_SYS_PTRACE); docker allows ptrace and process_vm_* on kernels from 4.8,
        // where a tracer can no longer skip the tracee's filter. Denied here all the same:
        // issue 16 asks for "ptrace of others", and a supervised service has no one to debug.
        SeccompRule(["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise"],
                    reason: "reads, writes or steers another process's memory and descriptors"),
        // docker (CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON).
        SeccompRule(["bpf", "perf_event_open", "lookup_dcookie"],
                    reason: "programs and tracing in the kernel itself, a frequent source of kernel exploits"),
        // docker (not namespaced, so one container could read or fill another's keys; podman allows keyctl).
        SeccompRule(["keyctl", "add_key", "request_key"],
                    reason: "the kernel keyring, shared with the host"),
        // docker and podman (CAP_SYS_TIME).
        SeccompRule(["settimeofday", "stime", "clock_settime", "clock_settime64"],
                    reason: "the host's clock"),
        // docker and podman (CAP_SYS_RAWIO, CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, CAP_SYS_PACCT,
        // CAP_SYS_TTY_CONFIG, CAP_SYSLOG).
        SeccompRule(["iopl", "ioperm", "open_by_handle_at", "quotactl", "quotactl_fd", "acct", "vhangup", "syslog"],
                    reason: "hardware ports, files by handle past the root, quotas, accounting, terminals and the kernel log of the host"),
        // docker and podman (neither allows them at all).
        SeccompRule(["nfsservctl", "uselib", "sysfs", "_sysctl", "ustat", "vm86", "vm86old", "userfaultfd"],
                    reason: "obsolete interfaces and userfaultfd, which stalls the kernel at will in exploits"),
        // docker from 25.0 (podman does not list them either).
        SeccompRule(["io_uring_setup", "io_uring_enter", "io_uring_register"],
                    reason: "io_uring: a second system call interface that seccomp does not see into"),
        // docker and podman: PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), both, and the query.
        SeccompRule(["personality"], when: .firstArgumentOutside(allowedBits: 0x0002_0008),
                    reason: "execution domains that turn off address randomisation or map page zero"),
    ]

    /// CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID and
    /// CLONE_NEWNET (<linux/sched.h>; Glibc's module leaves them out, they need _GNU_SOURCE).
    /// CLONE_NEWTIME (0x80) is one of clone's exit-signal bits: only unshare and clone3 take it.
    static let cloneNamespaceFlags: UInt64 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000
        | 0x1000_0000 | 0x2000_0000 | 0x4000_0000
}
