import Glibc
import MusterCore
import MusterRuntime
import Testing

/// The spawn shim and pidfd handling against the real kernel. cgroups need root, which CI has.
@Suite("Spawning, reaping and signalling", .enabled(if: isRoot, "creates cgroups: needs root"))
struct SpawnerTests {
    @Test func aChildStartsInsideItsOwnFreshCgroup() async throws {
        try await KernelFixture.with { f in
            #expect(f.cgroups.mode != .unavailable, "cgroups unavailable: \(f.cgroups.unavailableReason ?? "")")
            let group = try #require(try f.cgroups.createInstance(service: "probe", leaf: "0-1", limits: ResourceLimits(memoryMax: 64 << 20)))
            let handle = try Spawner.spawn(LaunchRequest(program: "/bin/sleep", argv: ["sleep", "30"], environment: [], directory: "/",
                                                         credentials: nil, cgroup: group, v1ProcsPaths: f.cgroups.v1ProcsPaths(group)))
            let membership = try FileSystem.read("/proc/\(handle.pid)/cgroup")
            #expect(membership.contains("0::/\(f.rootName)/services/probe/0-1\n"), "\(membership)")
            if f.cgroups.mode == .hybrid {
                #expect(membership.contains("memory:/\(f.rootName)/services/probe/0-1\n"), "\(membership)")
            }
            #expect(f.cgroups.processes(group) == [handle.pid])
            f.cgroups.kill(group)
            let exited = await KernelFixture.eventually { !processExists(handle.pid) }
            #expect(exited)
        }
    }

    @Test func anExecFailureComesBackAsAClearReason() throws {
        #expect(throws: SpawnError.self) {
            try Spawner.spawn(LaunchRequest(program: "/usr/bin/nope", argv: ["nope"], environment: [], directory: "/", credentials: nil))
        }
        do {
            _ = try Spawner.spawn(LaunchRequest(program: "/usr/bin/nope", argv: ["nope"], environment: [], directory: "/", credentials: nil))
        } catch {
            #expect(error.description == "exec /usr/bin/nope: No such file or directory")
        }
        do {
            _ = try Spawner.spawn(LaunchRequest(program: "/bin/true", argv: ["true"], environment: [], directory: "/no/such/dir", credentials: nil))
            Issue.record("chdir into a missing folder should fail")
        } catch {
            #expect(error.description == "chdir /no/such/dir: No such file or directory")
        }
    }

    @Test func theChildGetsExactlyTheEnvironmentArgvAndDefaultSignals() async throws {
        try await KernelFixture.with { f in
            let out = f.directory + "/out"
            // SIGPIPE is ignored in the test runner (as NIO does in the daemon); the child must see defaults.
            signal(SIGPIPE, SIG_IGN)
            let handle = try Spawner.spawn(LaunchRequest(
                program: "/bin/sh", argv: ["sh", "-c", "env > \(out).env; grep -E '^(SigIgn|SigBlk)' /proc/self/status > \(out).sig; ls /proc/self/fd > \(out).fd"],
                environment: ["ONLY=this", "PATH=/bin:/usr/bin"], directory: f.directory, credentials: nil))
            let done = await KernelFixture.eventually { !processExists(handle.pid) && FileSystem.exists(out + ".fd") }
            #expect(done)
            try await Task.sleep(for: .milliseconds(50))
            let env = try FileSystem.read(out + ".env").split(separator: "\n").filter { !$0.hasPrefix("PWD=") && !$0.hasPrefix("SHLVL=") && !$0.hasPrefix("_=") }
            #expect(Set(env) == ["ONLY=this", "PATH=/bin:/usr/bin"])
            let signals = try FileSystem.read(out + ".sig")
            #expect(signals == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "\(signals)")
            // stdin, stdout, stderr and the one ls opens itself: nothing of the parent leaks.
            #expect(try FileSystem.read(out + ".fd").split(separator: "\n").count == 4)
        }
    }

    @Test func aReapedProcessCanNeverBeSignalledAgain() async throws {
        let reaper = Reaper.shared
        let handle = try reaper.spawning { () throws(SpawnError) -> ProcessHandle in
            try Spawner.spawn(LaunchRequest(program: "/bin/sleep", argv: ["sleep", "0.05"], environment: [], directory: "/", credentials: nil))
        }
        let status = AsyncStream<MusterCore.ExitStatus>.makeStream()
        reaper.watch(handle) { status.continuation.yield($0) }
        var iterator = status.stream.makeAsyncIterator()
        let exit = await iterator.next()
        #expect(exit == .exited(code: 0))
        #expect(handle.pidfd == nil)
        // The PID may already belong to someone else; the handle refuses rather than guess.
        #expect(handle.signal(SIGKILL) == false)
    }

    @Test func aSignalGoesToTheProcessThroughItsPidfd() async throws {
        let reaper = Reaper.shared
        let handle = try reaper.spawning { () throws(SpawnError) -> ProcessHandle in
            try Spawner.spawn(LaunchRequest(program: "/bin/sleep", argv: ["sleep", "30"], environment: [], directory: "/", credentials: nil))
        }
        let status = AsyncStream<MusterCore.ExitStatus>.makeStream()
        reaper.watch(handle) { status.continuation.yield($0) }
        #expect(handle.signal(SIGUSR1))
        var iterator = status.stream.makeAsyncIterator()
        #expect(await iterator.next() == .killed(signal: SIGUSR1, coreDumped: false))
    }

    @Test func mountinfoIsReadForBothLayouts() {
        let hybrid = """
            30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
            31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
            34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
            35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
            36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
            """
        let mounts = CgroupMounts.parse(mountinfo: hybrid)
        #expect(mounts.unified == "/sys/fs/cgroup/unified")
        #expect(mounts.v1["memory"] == "/sys/fs/cgroup/memory")
        #expect(mounts.v1["cpu"] == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(mounts.v1["pids"] == "/sys/fs/cgroup/pids")
        let pure = CgroupMounts.parse(mountinfo: "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
        #expect(pure == CgroupMounts(unified: "/sys/fs/cgroup", v1: [:]))
        #expect(CgroupMounts.parse(procCgroup: "4:memory:/a/b\n1:cpu,cpuacct:/\n0::/system.slice/muster.service\n")
                == ["memory": "/a/b", "cpu": "/", "cpuacct": "/", "": "/system.slice/muster.service"])
    }
}
