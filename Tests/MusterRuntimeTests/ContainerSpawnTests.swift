import Glibc
import MusterCore
import MusterRuntime
import Testing

/// Container instances as the spawn shim starts them: each test builds a busybox root folder,
/// starts a shell in it through `Spawner.spawn` with a `ContainerLaunch`, and reads what the
/// shell saw through a descriptor the test opened (the test's folders are not in the container).
@Suite("Containers started by the spawn shim", .enabled(if: isRoot && FileSystem.isExecutableFile("/bin/busybox"), "namespaces and mounts need root, and the root folder is built from busybox-static"))
struct ContainerSpawnTests {
    @Test func theServiceIsPID1InItsOwnRootWithAMinimalDevAndAReadOnlySys() async throws {
        try await KernelFixture.with { f in
            let box = try ContainerBox(f)
            let run = try await box.run("""
                echo "pid=$$"
                echo "hostname=$(hostname)"
                echo "root=$(ls / | tr '\\n' ' ')"
                echo "dev=$(ls /dev | tr '\\n' ' ')"
                test -e /proc/\(getpid()) && echo "test process visible" || echo "test process hidden"
                echo "init=$(cat /proc/1/comm)"
                touch /sys/x 2>/dev/null && echo "sys writable" || echo "sys read-only"
                echo hello > /dev/null && echo "null works"
                head -c 4 /dev/zero | wc -c
                ls /work 2>/dev/null && echo "host visible" || echo "host hidden"
                echo written > /etc/new-file
                """, hostname: "web-0")
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output.contains("pid=1\n"), "\(run.output)")
            #expect(run.output.contains("hostname=web-0\n"), "\(run.output)")
            #expect(run.output.contains("root=bin dev etc proc sys tmp www \n"), "\(run.output)")
            for node in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd", "stdin", "stdout", "stderr"] {
                #expect(run.output.contains(" \(node) ") || run.output.contains("=\(node) "), "/dev/\(node) missing: \(run.output)")
            }
            #expect(run.output.contains("sys read-only"), "\(run.output)")
            #expect(run.output.contains("null works"), "\(run.output)")
            #expect(run.output.contains("host hidden"), "\(run.output)")
            // Its own pid namespace: the shell is its init, and the host's processes are not there.
            #expect(run.output.contains("test process hidden"), "\(run.output)")
            #expect(run.output.contains("init=sh\n"), "\(run.output)")
            // The write went to the instance's own layer, never to the shared root.
            #expect(FileSystem.readIfPresent(box.launch.upper + "/etc/new-file") == "written\n")
            #expect(!FileSystem.exists(box.rootfs + "/etc/new-file"))
            // The overlay lived in the container's mount namespace only.
            let mounts = try FileSystem.read("/proc/self/mountinfo")
            #expect(!mounts.contains(box.launch.root), "\(mounts)")
        }
    }

    @Test func bindMountsAppearAtTheirTargetsAndReadOnlyOnesRefuseWrites() async throws {
        try await KernelFixture.with { f in
            var box = try ContainerBox(f)
            let data = f.directory + "/data", config = f.directory + "/config"
            try FileSystem.makeDirectories(data)
            try FileSystem.makeDirectories(config)
            try FileSystem.writeAtomically(Array("from host\n".utf8), to: config + "/app.conf")
            box.launch.binds = [
                ContainerLaunch.Bind(source: data, target: "/var/lib/web", readOnly: false),
                ContainerLaunch.Bind(source: config, target: "/etc/app", readOnly: true),
            ]
            let run = try await box.run("""
                echo kept > /var/lib/web/state && echo "wrote data"
                cat /etc/app/app.conf
                echo x > /etc/app/other 2>/dev/null && echo "wrote config" || echo "config read-only"
                """)
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output.contains("wrote data"), "\(run.output)")
            #expect(run.output.contains("from host"), "\(run.output)")
            #expect(run.output.contains("config read-only"), "\(run.output)")
            #expect(FileSystem.readIfPresent(data + "/state") == "kept\n")
            #expect(!FileSystem.exists(config + "/other"))
        }
    }

    @Test func aSymlinkInTheImageCannotRedirectAMountOntoTheHost() async throws {
        try await KernelFixture.with { f in
            var box = try ContainerBox(f)
            // The image's /srv is an absolute symlink to /tmp. Resolved on the host, a bind below
            // it would create a folder in the host's /tmp; resolved in the container, it lands in
            // the container's /tmp, which is its own layer.
            #expect(symlink("/tmp", box.rootfs + "/srv") == 0)
            let name = "muster-escape-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let data = f.directory + "/data"
            try FileSystem.makeDirectories(data)
            try FileSystem.writeAtomically(Array("secret\n".utf8), to: data + "/file")
            box.launch.binds = [ContainerLaunch.Bind(source: data, target: "/srv/" + name, readOnly: true)]
            let run = try await box.run("cat /srv/\(name)/file /tmp/\(name)/file")
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output == "secret\nsecret\n", "\(run.output)")
            #expect(!FileSystem.exists("/tmp/" + name), "the bind's mount point was made on the host")
            #expect(FileSystem.isDirectory(box.launch.upper + "/tmp/" + name))
        }
    }

    @Test func aPrivateNetworkHasOnlyLoopbackAndItIsUp() async throws {
        try await KernelFixture.with { f in
            var box = try ContainerBox(f)
            box.launch.privateNetwork = true
            let run = try await box.run("ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags")
            #expect(run.exit == .exited(code: 0), "\(run.output)")
            #expect(run.output.hasPrefix("lo \n"), "\(run.output)")
            // IFF_UP (0x1) set on lo.
            let flags = run.output.split(separator: "\n").last.map(String.init) ?? ""
            let up = (Int(flags.dropFirst(2), radix: 16) ?? 0) & 1
            #expect(up == 1, "\(run.output)")
        }
    }

    @Test func aMissingRootIsReportedAsTheOverlayMountThatFailed() async throws {
        try await KernelFixture.with { f in
            var box = try ContainerBox(f)
            box.launch.lowerLayers = [f.directory + "/no-such-root"]
            do {
                _ = try await box.run("true")
                Issue.record("spawned without a root")
            } catch let error as SpawnError {
                #expect(error.description.hasPrefix("container: mount the overlay root on \(box.launch.root): "), "\(error)")
            }
        }
    }
}

/// A busybox root folder and a `ContainerLaunch` over it, in the fixture's folder.
struct ContainerBox {
    let fixture: KernelFixture
    let rootfs: String
    var launch: ContainerLaunch

    init(_ f: KernelFixture) throws {
        fixture = f
        rootfs = f.directory + "/rootfs"
        try ContainerBox.makeBusyboxRoot(rootfs)
        let instance = f.directory + "/instance"
        for folder in ["root", "upper", "work"] { try FileSystem.makeDirectories(instance + "/" + folder) }
        launch = ContainerLaunch(root: instance + "/root", lowerLayers: [rootfs], upper: instance + "/upper",
                                 work: instance + "/work", hostname: "box")
    }

    static func makeBusyboxRoot(_ root: String) throws {
        for folder in ["bin", "etc", "tmp", "www"] { try FileSystem.makeDirectories(root + "/" + folder) }
        // A hard link (the test folders are on the root filesystem here): the lower layer is
        // never written, so sharing the host's file is safe, and it costs no copy.
        try #require(link("/bin/busybox", root + "/bin/busybox") == 0, "link /bin/busybox: \(FileSystem.errorText(errno))")
        for tool in ["sh", "ls", "cat", "echo", "hostname", "touch", "head", "wc", "tr", "grep", "id", "mount", "sleep"] {
            _ = symlink("busybox", root + "/bin/" + tool)
        }
        try FileSystem.writeAtomically(Array("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n".utf8), to: root + "/etc/passwd")
        try FileSystem.writeAtomically(Array("root:x:0:\nnobody:x:65534:\n".utf8), to: root + "/etc/group")
    }

    /// Runs `script` with the container's `sh -c` and waits for it; stdout and stderr together.
    func run(_ script: String, hostname: String? = nil) async throws -> (output: String, exit: MusterCore.ExitStatus) {
        var request = LaunchRequest(program: "/bin/sh", argv: ["sh", "-c", script], environment: ["PATH=/bin"], directory: "/",
                                    credentials: nil)
        request.container = launch
        if let hostname { request.container?.hostname = hostname }
        return try await fixture.runCapturingOutput(request)
    }
}
