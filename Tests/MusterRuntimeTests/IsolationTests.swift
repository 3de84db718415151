import Glibc
import MusterCore
import MusterRuntime
import Testing

/// `[isolation]` checked from inside real processes: each test runs a shell in the isolation it
/// names and reads what the shell saw. Output goes through a descriptor opened by the test, since
/// the process may not be able to see the test's folders at all.
@Suite("Isolation applied by the spawn shim", .enabled(if: isRoot, "mount namespaces and capability drops need root"))
struct IsolationTests {
    static let loop = EpollLoop(name: "isolation-test")

    @Test func aWriteToAReadOnlyPathFailsAndAWritablePathInsideItStillWorks() async throws {
        try await KernelFixture.with { f in
            let tree = f.directory + "/tree"
            try FileSystem.makeDirectories(tree + "/data")
            var isolation = IsolationSpec()
            isolation.readOnlyPaths = [IsolatedPath(path: tree)]
            isolation.writablePaths = [IsolatedPath(path: tree + "/data")]
            let run = try await runIsolated(f, isolation, """
                echo x > \(tree)/new && echo "wrote tree" || echo "refused tree"
                echo y > \(tree)/data/file && echo "wrote data"
                """)
            #expect(run.exit == .exited(code: 0))
            #expect(run.output.contains("Read-only file system"), "\(run.output)")
            #expect(run.output.contains("refused tree"), "\(run.output)")
            #expect(run.output.contains("wrote data"), "\(run.output)")
            // The host's view is untouched: still writable, and no mount of the instance's leaked.
            #expect(!FileSystem.exists(tree + "/new"))
            #expect(FileSystem.exists(tree + "/data/file"))
            try FileSystem.writeAtomically(Array("host".utf8), to: tree + "/new")
            #expect(FileSystem.exists(tree + "/new"))
            let mounts = try FileSystem.read("/proc/self/mountinfo")
            #expect(!mounts.contains(" \(tree) "), "\(mounts)")
        }
    }

    @Test func privateTmpIsAFreshTmpfsThatTheHostNeverSees() async throws {
        try await KernelFixture.with { f in
            let tag = "muster-isolation-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let hostFile = "/tmp/\(tag)-host"
            let instanceFile = "/tmp/\(tag)-instance"
            try FileSystem.writeAtomically(Array("host".utf8), to: hostFile)
            defer { unlink(hostFile); unlink(instanceFile) }
            var isolation = IsolationSpec()
            isolation.privateTmp = true
            let run = try await runIsolated(f, isolation, """
                test -e \(hostFile) && echo "host file visible" || echo "host file hidden"
                echo mine > \(instanceFile) && echo "wrote instance file"
                echo "entries: $(ls -A /tmp | wc -l)"
                echo "mode: $(stat -c %a /tmp)"
                echo "fs: $(stat -f -c %T /tmp)"
                """)
            #expect(run.exit == .exited(code: 0))
            #expect(run.output.contains("host file hidden"), "\(run.output)")
            #expect(run.output.contains("wrote instance file"), "\(run.output)")
            #expect(run.output.contains("entries: 1\n"), "\(run.output)")
            #expect(run.output.contains("mode: 1777\n"), "\(run.output)")
            #expect(run.output.contains("fs: tmpfs\n"), "\(run.output)")
            #expect(!FileSystem.exists(instanceFile))
            #expect(FileSystem.exists(hostFile))
        }
    }

    @Test func inaccessiblePathsAreEmptyReadOnlyAndModeZero() async throws {
        try await KernelFixture.with { f in
            let folder = f.directory + "/secret"
            let file = f.directory + "/key.pem"
            try FileSystem.makeDirectories(folder)
            try FileSystem.writeAtomically(Array("top secret".utf8), to: folder + "/inside")
            try FileSystem.writeAtomically(Array("private key".utf8), to: file)
            var isolation = IsolationSpec()
            isolation.inaccessiblePaths = [IsolatedPath(path: folder), IsolatedPath(path: file), IsolatedPath(path: "/no/such/thing", optional: true)]
            // Without CAP_DAC_OVERRIDE even root is kept out by the mode.
            isolation.capabilities = CapabilitySet([])
            let run = try await runIsolated(f, isolation, """
                echo "folder mode: $(stat -c %a \(folder))"
                echo "file mode: $(stat -c %a \(file))"
                ls \(folder) >/dev/null 2>&1 && echo "listed folder" || echo "folder refused"
                cat \(file) >/dev/null 2>&1 && echo "read file" || echo "file refused"
                """)
            #expect(run.exit == .exited(code: 0))
            #expect(run.output.contains("folder mode: 0\n"), "\(run.output)")
            #expect(run.output.contains("file mode: 0\n"), "\(run.output)")
            #expect(run.output.contains("folder refused"), "\(run.output)")
            #expect(run.output.contains("file refused"), "\(run.output)")
            // As root with every capability: it can look, and there is nothing there.
            var open = IsolationSpec()
            open.inaccessiblePaths = [IsolatedPath(path: folder), IsolatedPath(path: file)]
            let asRoot = try await runIsolated(f, open, """
                echo "entries: $(ls -A \(folder) | wc -l)"
                echo "bytes: $(cat \(file) | wc -c)"
                echo z > \(file) || echo "write refused"
                """)
            #expect(asRoot.output.contains("entries: 0\n"), "\(asRoot.output)")
            #expect(asRoot.output.contains("bytes: 0\n"), "\(asRoot.output)")
            #expect(asRoot.output.contains("write refused"), "\(asRoot.output)")
            #expect(try FileSystem.read(file) == "private key")
        }
    }

    @Test func theBoundingSetMatchesTheListAndNoNewPrivsIsSet() async throws {
        try await KernelFixture.with { f in
            var isolation = IsolationSpec()
            isolation.capabilities = CapabilitySet([Capabilities.number(named: "CAP_NET_BIND_SERVICE")!, Capabilities.number(named: "KILL")!])
            let script = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status"
            let root = try await runIsolated(f, isolation, script)
            // CAP_KILL is 5, CAP_NET_BIND_SERVICE 10: 0x20 | 0x400.
            #expect(root.output.contains("CapBnd:\t0000000000000420\n"), "\(root.output)")
            #expect(root.output.contains("CapPrm:\t0000000000000420\n"), "\(root.output)")
            #expect(root.output.contains("CapEff:\t0000000000000420\n"), "\(root.output)")
            #expect(root.output.contains("CapInh:\t0000000000000000\n"), "\(root.output)")
            #expect(root.output.contains("CapAmb:\t0000000000000000\n"), "\(root.output)")
            #expect(root.output.contains("NoNewPrivs:\t1\n"), "\(root.output)")

            let nobody = try #require(Accounts.user(named: "nobody"))
            let asNobody = try await runIsolated(f, isolation, script, credentials: Credentials(uid: nobody.uid, gid: nobody.gid, groups: []))
            #expect(asNobody.output.contains("CapBnd:\t0000000000000420\n"), "\(asNobody.output)")
            #expect(asNobody.output.contains("CapPrm:\t0000000000000000\n"), "\(asNobody.output)")
            #expect(asNobody.output.contains("NoNewPrivs:\t1\n"), "\(asNobody.output)")
        }
    }

    @Test func noNewPrivsIsTheManifestDefaultAndUnconfinedLeavesEverythingAlone() async throws {
        try await KernelFixture.with { f in
            let script = "grep -E '^(CapBnd|NoNewPrivs):' /proc/self/status"
            let ours = try FileSystem.read("/proc/self/status").split(separator: "\n").first { $0.hasPrefix("CapBnd:") }.map(String.init) ?? "?"
            let byDefault = try await runIsolated(f, IsolationSpec(), script)
            #expect(byDefault.output.contains("NoNewPrivs:\t1\n"), "\(byDefault.output)")
            #expect(byDefault.output.contains(ours + "\n"), "\(byDefault.output)")
            let unconfined = try await runIsolated(f, .unconfined, script)
            #expect(unconfined.output.contains("NoNewPrivs:\t0\n"), "\(unconfined.output)")
        }
    }

    @Test func rlimitsAreSetSoftAndHard() async throws {
        try await KernelFixture.with { f in
            var isolation = IsolationSpec()
            isolation.limits = ProcessLimits(nofile: 4096, nproc: 3000, core: 0, memlock: 1 << 20)
            let run = try await runIsolated(f, isolation, "cat /proc/self/limits")
            let lines = run.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            #expect(lines.contains("Max open files 4096 4096 files"), "\(run.output)")
            #expect(lines.contains("Max processes 3000 3000 processes"), "\(run.output)")
            #expect(lines.contains("Max core file size 0 0 bytes"), "\(run.output)")
            #expect(lines.contains("Max locked memory 1048576 1048576 bytes"), "\(run.output)")
        }
    }

    @Test func aFailedIsolationStepComesBackNamedWithItsPath() throws {
        var missing = IsolationSpec()
        missing.readOnlyPaths = [IsolatedPath(path: "/no/such/path")]
        do {
            _ = try Spawner.spawn(LaunchRequest(program: "/bin/true", argv: ["true"], environment: [], directory: "/", credentials: nil, isolation: missing))
            Issue.record("a missing read-only path should fail the spawn")
        } catch {
            #expect(error.description == "make /no/such/path read-only: No such file or directory")
        }
        var tooMany = IsolationSpec()
        tooMany.limits.nofile = 1_073_741_816  // above fs.nr_open
        do {
            _ = try Spawner.spawn(LaunchRequest(program: "/bin/true", argv: ["true"], environment: [], directory: "/", credentials: nil, isolation: tooMany))
            Issue.record("nofile above fs.nr_open should fail the spawn")
        } catch {
            #expect(error.description.hasPrefix("setrlimit nofile 1073741816: Operation not permitted"), "\(error)")
        }
    }

    @Test func anOptionalMissingPathIsSkipped() async throws {
        try await KernelFixture.with { f in
            var isolation = IsolationSpec()
            isolation.readOnlyPaths = [IsolatedPath(path: "/no/such/path", optional: true), IsolatedPath(path: f.directory + "/absent", optional: true)]
            isolation.writablePaths = [IsolatedPath(path: "/no/such/writable", optional: true)]
            isolation.inaccessiblePaths = [IsolatedPath(path: "/no/such/secret", optional: true)]
            let run = try await runIsolated(f, isolation, "echo started")
            #expect(run.exit == .exited(code: 0))
            #expect(run.output == "started\n")
        }
    }

    @Test func anExecProbeSeesTheInstancesPrivateTmp() async throws {
        try await KernelFixture.with { f in
            var isolation = IsolationSpec()
            isolation.privateTmp = true
            let marker = "/tmp/muster-isolation-marker-\(getpid())"
            defer { unlink(marker) }
            let out = open(f.directory + "/instance.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            try #require(out >= 0)
            defer { close(out) }
            let instance = try Reaper.shared.spawning { () throws(SpawnError) -> ProcessHandle in
                let handle = try Spawner.spawn(LaunchRequest(
                    program: "/bin/sh", argv: ["sh", "-c", "echo up > \(marker) && echo ready && exec sleep 30"],
                    environment: ["PATH=/usr/bin:/bin"], directory: "/", credentials: nil, stdoutFD: out, stderrFD: out, isolation: isolation))
                Reaper.shared.watch(handle) { _ in }
                return handle
            }
            let ready = await KernelFixture.eventually { (FileSystem.readIfPresent(f.directory + "/instance.out") ?? "").contains("ready") }
            #expect(ready)
            let probe = HealthProbe(loop: Self.loop)
            let command = ["/bin/sh", "-c", "test -e \(marker)"]
            let inside = await probe.exec(command: command, environment: ["PATH=/usr/bin:/bin"], isolation: isolation, instance: instance, timeout: .seconds(5))
            #expect(inside == .ok("exited with code 0"))
            // Without the instance, the same isolation builds a namespace of its own: an empty /tmp.
            let apart = await probe.exec(command: command, environment: ["PATH=/usr/bin:/bin"], isolation: isolation, timeout: .seconds(5))
            #expect(apart == .failed("exited with code 1"))
            instance.signal(SIGKILL)
            let gone = await KernelFixture.eventually { instance.pidfd == nil }
            #expect(gone)
            let after = await probe.exec(command: command, environment: ["PATH=/usr/bin:/bin"], isolation: isolation, instance: instance, timeout: .seconds(5))
            #expect(after == .failed("join the mount namespace of pid \(instance.pid): it has exited"))
        }
    }
}

/// Runs `script` with `sh -c` under `isolation` and waits for it; stdout and stderr together.
private func runIsolated(_ f: KernelFixture, _ isolation: IsolationSpec, _ script: String,
                         credentials: Credentials? = nil) async throws -> (output: String, exit: MusterCore.ExitStatus) {
    try await f.runCapturingOutput(LaunchRequest(
        program: "/bin/sh", argv: ["sh", "-c", script], environment: ["PATH=/usr/bin:/bin"], directory: "/",
        credentials: credentials, isolation: isolation))
}
