import Glibc
import MusterCore
import MusterRuntime
import Testing

/// The default container seccomp filter, checked from inside real processes: each test starts a
/// program through `Spawner.spawn` and reads what it saw. The probes call the denied system calls
/// with arguments that do nothing even if a call got through (NULL pointers, bad magic numbers,
/// the process itself as the target), so a broken filter fails a test and changes nothing.
@Suite("Seccomp filter applied by the spawn shim", .enabled(if: isRoot, "probes what root may do under the filter: needs root"))
struct SeccompTests {
    @Test func theDefaultFilterCompilesWithinTheKernelsLimit() throws {
        let filter = SeccompFilter.containerDefault
        #expect(filter.instructionCount > 0)
        #expect(filter.instructionCount <= 4096)
        #expect(filter.program.count == filter.instructionCount * 8)
        let again = try SeccompFilter.build(SeccompFilter.containerDefaultRules)
        #expect(again == filter)
    }

    @Test func aCallLibseccompDoesNotKnowIsAnErrorNotAHole() {
        do {
            _ = try SeccompFilter.build([SeccompRule(["mount", "no_such_call"], reason: "test")])
            Issue.record("an unknown system call name should fail the build")
        } catch {
            #expect(error.description.contains("no_such_call"), "\(error)")
        }
    }

    @Test func aFilteredChildRunsInFilterModeWithNoNewPrivileges() async throws {
        try await KernelFixture.with { f in
            let run = try await spawnAndWait(f, "/bin/sh", ["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"],
                                             filter: .containerDefault, isolation: IsolationSpec())
            #expect(run.exit == .exited(code: 0))
            #expect(run.output == "NoNewPrivs:\t1\nSeccomp:\t2\n", "\(run.output)")
        }
    }

    @Test func theDefaultFilterDeniesWhatContainerRuntimesDeny() async throws {
        try await KernelFixture.with { f in
            let run = try await spawnAndWait(f, "/usr/bin/python3", ["python3", "-c", Self.deniedProbe],
                                             filter: .containerDefault, isolation: IsolationSpec())
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            let seen = Self.lines(run.output)
            let expected = [
                "unshare": "EPERM", "setns": "EPERM", "clone_newuser": "EPERM", "clone_newns": "EPERM", "clone3": "ENOSYS",
                "mount": "EPERM", "umount2": "EPERM", "pivot_root": "EPERM", "open_tree": "EPERM",
                "kexec_load": "EPERM", "init_module": "EPERM", "reboot": "EPERM", "keyctl": "EPERM", "add_key": "EPERM",
                "bpf": "EPERM", "perf_event_open": "EPERM", "ptrace": "EPERM", "process_vm_readv": "EPERM",
                "io_uring_setup": "EPERM", "userfaultfd": "EPERM", "settimeofday": "EPERM", "iopl": "EPERM",
                "personality_no_randomize": "EPERM", "personality_high_bit": "EPERM",
                "personality_query": "ok", "personality_linux32": "ok",
            ]
            #expect(seen == expected, "\(run.output)")
        }
    }

    @Test func ordinaryWorkStillRunsUnderTheFilter() async throws {
        try await KernelFixture.with { f in
            let file = f.directory + "/written"
            let script = """
                import os, socket, subprocess, threading
                with open(\(pythonString(file)), "w") as out: out.write("data")
                print("file", open(\(pythonString(file))).read())
                a, b = socket.socketpair(); a.send(b"ping"); print("socketpair", b.recv(4).decode())
                server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
                client = socket.create_connection(server.getsockname()); peer, _ = server.accept()
                client.sendall(b"tcp"); print("tcp", peer.recv(3).decode())
                results = []
                threads = [threading.Thread(target=results.append, args=(i,)) for i in range(4)]
                for t in threads: t.start()
                for t in threads: t.join()
                print("threads", sorted(results))
                print("subprocess", subprocess.run(["/bin/sh", "-c", "echo child"], capture_output=True, text=True).stdout.strip())
                pid = os.fork()
                if pid == 0: os._exit(7)
                print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
                """
            let run = try await spawnAndWait(f, "/usr/bin/python3", ["python3", "-c", script],
                                             filter: .containerDefault, isolation: IsolationSpec())
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output == "file data\nsocketpair ping\ntcp tcp\nthreads [0, 1, 2, 3]\nsubprocess child\nfork 7\n", "\(run.output)")
        }
    }

    @Test func unshareAndMountFailWithTheFilterAndWorkWithoutIt() async throws {
        try await KernelFixture.with { f in
            let target = f.directory + "/mnt"
            try FileSystem.makeDirectories(target)
            // A private mount namespace of unshare's own: the tmpfs never reaches the host's.
            let script = """
                grep '^Seccomp:' /proc/self/status
                /bin/busybox unshare -m /bin/busybox sh -c '/bin/busybox mount --make-rprivate / && /bin/busybox mount -t tmpfs none \(target) && echo mounted' 2>&1
                echo "exit $?"
                """
            let filtered = try await spawnAndWait(f, "/bin/sh", ["sh", "-c", script], filter: .containerDefault, isolation: IsolationSpec())
            #expect(filtered.output.hasPrefix("Seccomp:\t2\n"), "\(filtered.output)")
            #expect(filtered.output.contains("Operation not permitted"), "\(filtered.output)")
            #expect(!filtered.output.contains("mounted"), "\(filtered.output)")

            let unfiltered = try await spawnAndWait(f, "/bin/sh", ["sh", "-c", script], filter: nil, isolation: IsolationSpec())
            #expect(unfiltered.output == "Seccomp:\t0\nmounted\nexit 0\n", "\(unfiltered.output)")
            let mounts = try FileSystem.read("/proc/self/mountinfo")
            #expect(!mounts.contains(" \(target) "), "\(mounts)")
        }
    }

    @Test func withoutNoNewPrivilegesTheFilterStillLoadsForAServiceThatLeftRoot() async throws {
        try await KernelFixture.with { f in
            var isolation = IsolationSpec()
            isolation.noNewPrivileges = false
            let run = try await spawnAndWait(f, "/bin/sh", ["sh", "-c", "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"],
                                             filter: .containerDefault, isolation: isolation,
                                             credentials: Credentials(uid: 65534, gid: 65534, groups: []))
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output == "65534\nNoNewPrivs:\t0\nSeccomp:\t2\n", "\(run.output)")
        }
    }

    @Test(.enabled(if: FileSystem.exists("/usr/bin/gcc"), "builds an i386 probe with gcc -m32: no gcc here"))
    func a32BitProgramMeetsTheSameRules() async throws {
        try await KernelFixture.with { f in
            let probe = try buildI386Probe(f)
            let filtered = try await spawnAndWait(f, probe, ["probe32"], filter: .containerDefault, isolation: IsolationSpec())
            #expect(filtered.exit == .exited(code: 0), "\(filtered.output)")
            let expected = [
                "getpid": "0", "unshare": "\(EPERM)", "mount": "\(EPERM)", "umount": "\(EPERM)", "kexec_load": "\(EPERM)",
                "keyctl": "\(EPERM)", "ptrace": "\(EPERM)", "stime": "\(EPERM)", "clone3": "\(ENOSYS)",
            ]
            #expect(Self.lines(filtered.output) == expected, "\(filtered.output)")
            // The same probe without the filter: the numbers are right, and root may unshare.
            let unfiltered = try await spawnAndWait(f, probe, ["probe32"], filter: nil, isolation: IsolationSpec())
            let seen = Self.lines(unfiltered.output)
            #expect(seen["getpid"] == "0", "\(unfiltered.output)")
            #expect(seen["unshare"] == "0", "\(unfiltered.output)")
        }
    }

    /// "name: result" lines into a dictionary.
    static func lines(_ output: String) -> [String: String] {
        var seen: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { seen[String(parts[0])] = String(parts[1].drop { $0 == " " || $0 == "\t" }) }
        }
        return seen
    }

    /// Each denied call with arguments that make it a no-op (or a plain error) if it ran, by its
    /// x86-64 number; prints "name: ok" or "name: ERRNO".
    static let deniedProbe = """
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def probe(name, nr, *args):
            ctypes.set_errno(0)
            r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
            if r == 0 and nr == 56: os._exit(0)
            print(f"{name}: {'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]}", flush=True)
        me = os.getpid()
        probe("unshare", 272, 0x00020000)
        probe("setns", 308, -1, 0)
        probe("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
        probe("clone_newns", 56, 0x00020000 | 17, 0, 0, 0, 0)
        probe("clone3", 435, 0, 0)
        probe("mount", 165, 0, 0, 0, 0, 0)
        probe("umount2", 166, 0, 0)
        probe("pivot_root", 155, 0, 0)
        probe("open_tree", 428, -1, 0, 0)
        probe("kexec_load", 246, 0, 0, 0, 0xdead0000)
        probe("init_module", 175, 0, 0, 0)
        probe("reboot", 169, 0, 0, 0, 0)
        probe("keyctl", 250, 0, -3, 0)
        probe("add_key", 248, 0, 0, 0, 0, 0)
        probe("bpf", 321, 0, 0, 0)
        probe("perf_event_open", 298, 0, me, -1, -1, 0)
        probe("ptrace", 101, 3, me, 0, 0)
        probe("process_vm_readv", 310, me, 0, 0, 0, 0, 0)
        probe("io_uring_setup", 425, 0, 0)
        probe("userfaultfd", 323, -1)
        probe("settimeofday", 164, 0, 0)
        probe("iopl", 172, 0)
        probe("personality_no_randomize", 135, 0x0040000)
        probe("personality_high_bit", 135, 0x80000000)
        probe("personality_query", 135, 0xffffffff)
        probe("personality_linux32", 135, 8)
        libc.syscall(ctypes.c_long(135), ctypes.c_long(0))
        """
}

/// Starts `program` with `filter`, its output in a file of the fixture's, and waits for its exit.
private func spawnAndWait(_ f: KernelFixture, _ program: String, _ argv: [String], filter: SeccompFilter?, isolation: IsolationSpec,
                          credentials: Credentials? = nil) async throws -> (output: String, exit: MusterCore.ExitStatus) {
    try await f.runCapturingOutput(LaunchRequest(
        program: program, argv: argv, environment: ["PATH=/usr/bin:/bin"], directory: "/",
        credentials: credentials, isolation: isolation, seccompFilter: filter))
}

private func pythonString(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}

/// A static i386 program without libc (none for i386 is installed): each call through int 0x80
/// with its i386 number, printed as "name: errno" (0 for success).
private func buildI386Probe(_ f: KernelFixture) throws -> String {
    let source = f.directory + "/probe32.c"
    let binary = f.directory + "/probe32"
    try FileSystem.writeAtomically(Array("""
        static long sys(long nr, long a, long b, long c, long d) {
            long ret;
            __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
            return ret;
        }
        static void say(const char *name, long ret) {
            char line[64]; int n = 0;
            while (*name) line[n++] = *name++;
            line[n++] = ':'; line[n++] = ' ';
            unsigned long e = ret < 0 ? (unsigned long)-ret : 0;
            char digits[12]; int d = 0;
            do { digits[d++] = (char)('0' + e % 10); e /= 10; } while (e);
            while (d) line[n++] = digits[--d];
            line[n++] = '\\n';
            sys(4, 1, (long)line, n, 0);
        }
        void _start(void) {
            long me = sys(20, 0, 0, 0, 0);
            say("getpid", me < 0 ? me : 0);
            say("unshare", sys(310, 0x00020000, 0, 0, 0));
            say("mount", sys(21, 0, 0, 0, 0));
            say("umount", sys(22, 0, 0, 0, 0));
            say("kexec_load", sys(283, 0, 0, 0, 0xdead0000));
            say("keyctl", sys(288, 0, -3, 0, 0));
            say("ptrace", sys(26, 3, me, 0, 0));
            say("stime", sys(25, 0, 0, 0, 0));
            say("clone3", sys(435, 0, 0, 0, 0));
            sys(1, 0, 0, 0, 0);
            for (;;) {}
        }
        """.utf8), to: source)
    let rc = system("/usr/bin/gcc -m32 -static -nostdlib -ffreestanding -fno-pic -fno-stack-protector -O1 -o '\(binary)' '\(source)' 2>'\(binary).log'")
    guard rc == 0 else {
        throw SpawnError("gcc -m32 could not build the i386 probe: \(FileSystem.readIfPresent(binary + ".log") ?? "")")
    }
    return binary
}
