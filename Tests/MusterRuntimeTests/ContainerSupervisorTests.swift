import Glibc
import MusterAPI
import MusterCore
import MusterRuntime
import Testing

/// Container instances under the supervisor: started from a `rootfs`, shown in status, stopped,
/// restarted clean, and their writable layers removed.
@Suite("Container instances under the supervisor", .enabled(if: isRoot && FileSystem.isExecutableFile("/bin/busybox"), "namespaces and mounts need root, and the root folder is built from busybox-static"))
struct ContainerSupervisorTests {
    static func containerSpec(_ f: KernelFixture, _ name: String, _ command: [String], configure: (inout ServiceSpec) -> Void = { _ in }) throws -> ServiceSpec {
        let rootfs = f.directory + "/rootfs"
        if !FileSystem.isDirectory(rootfs) { try ContainerBox.makeBusyboxRoot(rootfs) }
        return spec(name, command) {
            $0.container = ContainerSpec(source: .rootfs(rootfs))
            configure(&$0)
        }
    }

    @Test func aContainerInstanceRunsAsPID1AndAStopWithoutAHandlerKillsItAtOnce() async throws {
        try await KernelFixture.with { f in
            let out = f.directory + "/out"
            try FileSystem.makeDirectories(out)
            let web = try Self.containerSpec(f, "web", ["/bin/sh", "-c", "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status > /out/status; echo \"$$ $(hostname) $HOSTNAME $container $(id -u)\" > /out/seen; exec sleep 1000"]) {
                $0.container?.mounts = [ContainerMount(source: out, target: "/out", readOnly: false)]
                $0.stop.timeout = .seconds(20)
            }
            let supervisor = f.supervisor([web])
            await supervisor.start()
            let wrote = await KernelFixture.eventually { (FileSystem.readIfPresent(out + "/seen") ?? "").hasSuffix("\n") }
            #expect(wrote)
            #expect(FileSystem.readIfPresent(out + "/seen") == "1 web-0 web-0 muster 0\n")
            // The default seccomp filter, no new privileges, and podman's default capabilities
            // (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP).
            #expect(FileSystem.readIfPresent(out + "/status") == "CapEff:\t00000000800405fb\nNoNewPrivs:\t1\nSeccomp:\t2\n")
            let row = try #require(try await instance(supervisor, "web"))
            #expect(row.container == ContainerInstanceStatus(image: nil, rootfs: f.directory + "/rootfs"))
            let layers = f.directory + "/containers/web"
            #expect(FileSystem.list(layers).count == 1)

            // sleep has no SIGTERM handler, and as PID 1 the kernel would drop the signal: the stop
            // must not sit out its 20 s timeout.
            let started = ContinuousClock.now
            let lines = try await supervisor.stop(["web"])
            #expect(ContinuousClock.now - started < .seconds(15))
            #expect(lines.first?.hasPrefix("web:0: stopped") == true, "\(lines)")
            let killedAtOnce = f.journal.recent().contains { $0.kind == "stopping" && $0.message.contains("has no handler for SIGTERM") }
            #expect(killedAtOnce)
            let removed = await KernelFixture.eventually(5) { FileSystem.list(layers).isEmpty }
            #expect(removed, "left: \(FileSystem.list(layers))")
            await supervisor.shutdown()
        }
    }

    @Test func aPID1ThatHandlesTheSignalGetsItAndARestartStartsFromACleanLayer() async throws {
        try await KernelFixture.with { f in
            let out = f.directory + "/out"
            try FileSystem.makeDirectories(out)
            // Leaves a mark in its own layer, reports whether the mark of an earlier start is there.
            let script = "test -e /mark && echo dirty >> /out/starts || echo clean >> /out/starts; touch /mark; "
                + "trap 'echo term >> /out/starts; exit 0' TERM; while true; do sleep 0.05; done"
            let web = try Self.containerSpec(f, "web", ["/bin/sh", "-c", script]) {
                $0.container?.mounts = [ContainerMount(source: out, target: "/out", readOnly: false)]
            }
            let supervisor = f.supervisor([web])
            await supervisor.start()
            _ = await KernelFixture.eventually { (FileSystem.readIfPresent(out + "/starts") ?? "") == "clean\n" }
            _ = try await supervisor.restart(["web"])
            let twice = await KernelFixture.eventually { (FileSystem.readIfPresent(out + "/starts") ?? "") == "clean\nterm\nclean\n" }
            #expect(twice, "\(FileSystem.readIfPresent(out + "/starts") ?? "")")
            let handled = f.journal.recent().contains { $0.kind == "stopping" && $0.message.contains("sent SIGTERM") }
            #expect(handled)
            await supervisor.shutdown()
        }
    }

    @Test func aUserOfTheImageIsResolvedInItsOwnPasswdAndAMissingOneFailsTheStart() async throws {
        try await KernelFixture.with { f in
            let out = f.directory + "/out"
            try FileSystem.makeDirectories(out)
            chmod(out, 0o777)
            let nobody = try Self.containerSpec(f, "nobody", ["/bin/sh", "-c", "id > /out/id; exec sleep 1000"]) {
                $0.user = "nobody"
                $0.container?.mounts = [ContainerMount(source: out, target: "/out", readOnly: false)]
            }
            let ghost = try Self.containerSpec(f, "ghost", ["/bin/sh", "-c", "exec sleep 1000"]) { $0.user = "ghost" }
            let supervisor = f.supervisor([nobody, ghost])
            await supervisor.start()
            let wrote = await KernelFixture.eventually { (FileSystem.readIfPresent(out + "/id") ?? "").hasSuffix("\n") }
            #expect(wrote)
            #expect(FileSystem.readIfPresent(out + "/id")?.hasPrefix("uid=65534(nobody) gid=65534(nobody)") == true, "\(FileSystem.readIfPresent(out + "/id") ?? "")")
            let failed = await KernelFixture.eventually {
                f.journal.recent().contains { $0.kind == "spawn-failed" && $0.message.contains("user ghost is not in the container's /etc/passwd") }
            }
            #expect(failed)
            await supervisor.shutdown()
        }
    }

    @Test func anExecHealthCheckRunsInsideTheContainer() async throws {
        try await KernelFixture.with { f in
            // Passes only in the container's root (its /www, its passwd) and uts namespace.
            let probe = "test \"$(hostname)\" = checked-0 && test -d /www && grep -q '^nobody:' /etc/passwd && ! test -e /proc/\(getpid())/root"
            let checked = try Self.containerSpec(f, "checked", ["/bin/sh", "-c", "exec sleep 1000"]) {
                $0.health.check = .exec
                $0.health.command = ["/bin/sh", "-c", probe]
                $0.health.interval = .milliseconds(100)
                $0.health.rise = 1
            }
            let supervisor = f.supervisor([checked])
            await supervisor.start()
            let ready = await KernelFixture.eventually { (try? await instance(supervisor, "checked")?.ready) == true }
            #expect(ready, "\(f.journal.recent().map(\.message))")
            await supervisor.shutdown()
        }
    }
}
