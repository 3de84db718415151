import Foundation
import Testing

private let peerToolsPresent = ["/usr/bin/umoci", "/usr/bin/crun", "/usr/bin/unshare"].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }

/// The same image under crun and under Muster: one probe script, run as each container's PID 1,
/// writes what it sees (pid, hostname, root and /etc listings, mounts with their types and
/// options, ids, capability sets, seccomp mode, network links, /dev, masked and read-only /proc
/// paths) and the two outputs are compared line by line. Where they differ on purpose,
/// `knownDifferences` says so and why; any other difference fails the test with both outputs.
///
/// The crun bundle is what `umoci unpack` writes for the image, edited only where Muster's
/// manifest says something umoci's default spec says otherwise (the program, no terminal, the
/// hostname, Muster's namespaces, the same `/out` bind mount) and where this machine needs it
/// (a cgroup path of the test's own, no device rule; see `runUnderCrun`). Its policy
/// (capabilities, no seccomp profile, masked paths, rlimits, environment) is left as umoci wrote
/// it: those differences are listed, not hidden. docs/containers.md, "Compared with crun", has
/// the same table for readers.
@Suite("Containers compared with crun", .enabled(if: isRoot && peerToolsPresent, "needs root, umoci and crun"), .serialized)
struct ContainerPeerTests {
    /// Runs in both containers as `/bin/sh /out/probe.sh`. One `key=value` line per fact; lists are
    /// sorted, so only what is there matters, not the order the kernel or `ls` gives.
    static let probe = #"""
        exec >/out/probe.txt 2>&1
        bb=busybox
        join() { $bb tr '\n' ' ' | $bb sed 's/ $//'; }
        echo "pid=$$"
        echo "hostname=$(hostname)"
        echo "domainname=$(cat /proc/sys/kernel/domainname)"
        echo "etc/hostname=$(cat /etc/hostname 2>/dev/null)"
        echo "root=$(ls / | $bb sort | join)"
        echo "etc=$(ls /etc | $bb sort | join)"
        $bb awk '{ tags = ""; i = 7; while ($i != "-") { tags = tags " " $i; i++ }
                   print "mount=" $5 " " $(i + 1) " " $6 " | " $(i + 3) (tags == "" ? "" : " |" tags) }' /proc/self/mountinfo | $bb sort
        echo "cgroup=$(cat /proc/self/cgroup | join)"
        echo "cgroupfs=$(ls /sys/fs/cgroup | $bb sort | join)"
        echo "id=$(id)"
        $bb grep -E '^(Seccomp|NoNewPrivs|Cap[A-Za-z]+|Sig(Blk|Ign)):' /proc/self/status | $bb tr -d '\t' | $bb sed 's/:/=/'
        echo "net=$(ls /sys/class/net | $bb sort | join)"
        echo "dev=$(ls /dev | $bb sort | join)"
        for f in /dev/*; do [ -c "$f" ] && [ ! -L "$f" ] && echo "devnode=$f $($bb stat -c '%t:%T %a' "$f")"; done
        for f in /dev/*; do [ -L "$f" ] && echo "devlink=$f -> $($bb readlink "$f")"; done
        echo "oom_score_adj=$(cat /proc/self/oom_score_adj)"
        echo "init=$($bb tr '\0' '\n' < /proc/1/cmdline | join)"
        echo "cwd=$(pwd)"
        echo "umask=$(umask)"
        echo "nofile=$(ulimit -n)"
        echo "env=$(env | $bb cut -d= -f1 | $bb sort | join)"
        for p in /proc/acpi /proc/asound /proc/interrupts /proc/kcore /proc/keys /proc/latency_stats /proc/sched_debug \
                 /proc/scsi /proc/timer_list /proc/timer_stats /sys/devices/virtual/powercap /sys/firmware; do
            if [ ! -e "$p" ]; then state=absent
            elif [ -d "$p" ]; then if [ -z "$(ls -A "$p")" ]; then state=empty; else state=listed; fi
            elif [ "$($bb head -c 1 "$p" 2>/dev/null | $bb wc -c)" = 0 ]; then state=empty
            else state=readable; fi
            echo "hidden $p=$state"
        done
        if (echo probe > /proc/sys/kernel/hostname) 2>/dev/null; then echo "proc/sys=writable"; else echo "proc/sys=read-only"; fi
        echo end
        """#

    enum Network: String, CaseIterable, Sendable {
        /// Muster's default; the crun bundle without a network namespace.
        case host
        /// Muster's `network = "private"`; the crun bundle with a network namespace.
        case `private`
    }

    /// A line one side shows and the other does not (nil: no such line on that side), and why. A
    /// line ending in `*` matches every line that starts with what comes before it.
    struct KnownDifference: Sendable {
        var muster: String?
        var crun: String?
        var why: String
        /// The runs it applies to.
        var networks: Set<Network> = Set(Network.allCases)
        /// Depends on the host or on how the test is run (what this kernel has, the caller's
        /// limits): not an error when it does not occur.
        var hostDependent = false

        static func matches(_ pattern: String?, _ line: String) -> Bool {
            guard let pattern else { return false }
            return pattern.hasSuffix("*") ? line.hasPrefix(pattern.dropLast()) : line == pattern
        }
    }

    static let etcFiles = "Muster writes /etc/hostname, /etc/hosts and /etc/resolv.conf into each start's writable layer, as podman does; crun is a runtime and provides only what config.json mounts (an engine such as podman adds them)"
    static let procOptions = "umoci's spec mounts /proc with no options; Muster mounts it nosuid,nodev,noexec, as podman's and runc's default specs do. The read-only /proc paths are binds of that /proc and carry its flags"
    static let maskedFile = "a masked file: Muster binds the container's own /dev/null over it (on the container's /dev tmpfs), crun the host's (devtmpfs); both make the bind read-only, and both read as empty"
    static let maskedList = "masked by Muster (podman's maskedPaths list), not by umoci's shorter default list"
    static let capabilities = "policy: Muster gives podman's default capabilities (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP = 0x800405fb) as permitted, effective and bounding, none inheritable or ambient; umoci's spec gives AUDIT_WRITE KILL NET_BIND_SERVICE (0x20000420) in all five sets, ambient included"

    static let knownDifferences: [KnownDifference] = [
        .init(muster: "etc/hostname=probe-0", crun: "etc/hostname=", why: etcFiles),
        .init(muster: "etc=group hostname hosts passwd resolv.conf", crun: "etc=group passwd", why: etcFiles),
        .init(muster: "mount=/ overlay rw,relatime | rw,lowerdir=*", crun: "mount=/ *",
              why: "Muster's root is an overlay (the unpacked image read-only below, a writable layer per start above, as podman's storage does; its options name those host folders under state_dir, as podman's name /var/lib/containers); the bundle's root is the folder umoci unpacked, on the host's filesystem"),
        .init(muster: "mount=/proc proc rw,nosuid,nodev,noexec,relatime | rw", crun: "mount=/proc proc rw,relatime | rw", why: procOptions),
        .init(muster: "mount=/proc/bus proc ro,nosuid,nodev,noexec,relatime | rw", crun: "mount=/proc/bus proc ro,relatime | rw", why: procOptions, hostDependent: true),
        .init(muster: "mount=/proc/fs proc ro,nosuid,nodev,noexec,relatime | rw", crun: "mount=/proc/fs proc ro,relatime | rw", why: procOptions, hostDependent: true),
        .init(muster: "mount=/proc/irq proc ro,nosuid,nodev,noexec,relatime | rw", crun: "mount=/proc/irq proc ro,relatime | rw", why: procOptions, hostDependent: true),
        .init(muster: "mount=/proc/sys proc ro,nosuid,nodev,noexec,relatime | rw", crun: "mount=/proc/sys proc ro,relatime | rw", why: procOptions),
        .init(muster: "mount=/proc/timer_list tmpfs ro,nosuid | rw,size=65536k,mode=755", crun: "mount=/proc/timer_list devtmpfs ro,relatime | *", why: maskedFile, hostDependent: true),
        .init(muster: "mount=/proc/interrupts tmpfs ro,nosuid | rw,size=65536k,mode=755", why: maskedList, hostDependent: true),
        .init(muster: "mount=/proc/keys tmpfs ro,nosuid | rw,size=65536k,mode=755", why: maskedList, hostDependent: true),
        .init(muster: "mount=/proc/acpi tmpfs ro,nosuid,nodev,noexec,relatime | ro,size=0k", why: maskedList + " (a folder: an empty read-only tmpfs over it)", hostDependent: true),
        .init(muster: "hidden /proc/interrupts=empty", crun: "hidden /proc/interrupts=readable", why: maskedList, hostDependent: true),
        .init(muster: "hidden /proc/keys=empty", crun: "hidden /proc/keys=readable", why: maskedList, hostDependent: true),
        .init(muster: "mount=/sys/firmware tmpfs ro,nosuid,nodev,noexec,relatime | ro,size=0k", crun: "mount=/sys/firmware tmpfs ro,relatime | rw,size=0k",
              why: "a masked folder: Muster mounts its empty tmpfs read-only (and nosuid,nodev,noexec) from the start, crun mounts it and then remounts the mount read-only. Both are empty and read-only", hostDependent: true),
        .init(muster: "mount=/sys sysfs ro,nosuid,nodev,noexec,relatime | ro", crun: "mount=/sys sysfs ro,nosuid,nodev,noexec,relatime | rw",
              why: "in a network namespace of its own sysfs gets a new superblock: Muster creates it read-only, crun creates it read-write and makes the mount read-only. On the host's network both share the host's sysfs superblock, which stays read-write, and only the mount is read-only",
              networks: [.private]),
        .init(muster: "cgroupfs=*", crun: "cgroupfs=*",
              why: "the controllers enabled for the container's cgroup: crun enables every controller the cgroup2 hierarchy offers (here hugetlb, whose files then appear), Muster only those it sets limits with (memory, pids, cpu), which this host's cgroup2 hierarchy does not offer",
              hostDependent: true),
        .init(muster: "id=uid=0(root) gid=0(root) groups=0(root)", crun: "id=uid=0(root) gid=0(root)",
              why: "Muster sets the user's groups from the container's /etc/group and the primary group, as podman and docker do; umoci's spec has no additionalGids, so crun clears the supplementary groups"),
        .init(muster: "SigIgn=0000000000000000", crun: "SigIgn=*",
              why: "crun passes on the signals its caller ignores (under swift test, 32 and 33; from a shell none); Muster's child resets every disposition, 32 and 33 too (spawn.c)",
              hostDependent: true),
        .init(muster: "CapInh=0000000000000000", crun: "CapInh=0000000020000420", why: capabilities),
        .init(muster: "CapPrm=00000000800405fb", crun: "CapPrm=0000000020000420", why: capabilities),
        .init(muster: "CapEff=00000000800405fb", crun: "CapEff=0000000020000420", why: capabilities),
        .init(muster: "CapBnd=00000000800405fb", crun: "CapBnd=0000000020000420", why: capabilities),
        .init(muster: "CapAmb=0000000000000000", crun: "CapAmb=0000000020000420", why: capabilities),
        .init(muster: "Seccomp=2", crun: "Seccomp=0",
              why: "policy: Muster loads its default filter (seccomp = \"default\"); umoci's spec has no linux.seccomp, so crun loads none"),
        .init(muster: "nofile=*", crun: "nofile=1024",
              why: "umoci's spec sets RLIMIT_NOFILE to 1024; Muster leaves the daemon's limit unless [isolation] nofile is set", hostDependent: true),
        .init(muster: "env=GREETING HOME HOSTNAME LOGNAME MUSTER_INSTANCE MUSTER_SERVICE PATH PORT PWD SHLVL USER container",
              crun: "env=GREETING HOME PATH PWD SHLVL TERM",
              why: "both start from the image's Env (PATH, GREETING) and HOME; Muster adds HOSTNAME, USER, LOGNAME, container=muster and its own MUSTER_SERVICE, MUSTER_INSTANCE and PORT, umoci's spec adds TERM=xterm",
              hostDependent: true),
        .init(muster: "env=GREETING HOME HOSTNAME LISTEN_FDNAMES LISTEN_FDS LISTEN_PID LOGNAME MUSTER_INSTANCE MUSTER_SERVICE PATH PORT PWD SHLVL USER container",
              crun: "env=GREETING HOME PATH PWD SHLVL TERM",
              why: "as on the host network, and with network = \"private\" Muster passes the instance's listening socket in (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES)",
              hostDependent: true),
    ]

    @Test(arguments: Network.allCases)
    func whatAProcessSeesMatchesCrunExceptWhereListed(_ network: Network) async throws {
        let manifest = """
            command = ["/bin/sh", "/out/probe.sh"]
            [restart]
            policy = "never"
            start_seconds = 0
            [container]
            image = "../images/probe"
            hostname = "probe-{index}"
            network = "\(network.rawValue)"
            [[container.mounts]]
            source = "../out-muster"
            target = "/out"
            """
        try await DaemonHarness.with(services: ["probe": manifest]) { d in
            let image = d.directory.appendingPathComponent("images/probe").path
            try ContainerIntegrationTests.buildImage(d, at: image)
            let musterOut = d.directory.appendingPathComponent("out-muster").path
            let crunOut = d.directory.appendingPathComponent("out-crun").path
            for folder in [musterOut, crunOut] {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Self.probe.write(toFile: folder + "/probe.sh", atomically: true, encoding: .utf8)
            }

            let crun = try Self.runUnderCrun(d, image: image, out: crunOut, network: network)
            try await d.start()
            let finished = await eventually(20) { Self.finished(musterOut) }
            #expect(finished, "the probe under Muster did not finish: \(d.ctl("status").stdout)\n\(d.log)")
            let muster = (try? String(contentsOfFile: musterOut + "/probe.txt", encoding: .utf8)) ?? ""

            let comparison = Self.compare(muster: muster, crun: crun, network: network)
            let report = "\n--- Muster (network = \(network.rawValue)) ---\n\(muster)\n--- crun ---\n\(crun)"
            #expect(comparison.unexpected.isEmpty, "unexpected differences:\n\(comparison.unexpected.joined(separator: "\n"))\(report)")
            #expect(comparison.stale.isEmpty, "known differences that no longer occur (remove them from the table):\n\(comparison.stale.joined(separator: "\n"))\(report)")
        }
    }

    static func finished(_ out: String) -> Bool {
        ((try? String(contentsOfFile: out + "/probe.txt", encoding: .utf8)) ?? "").hasSuffix("end\n")
    }

    struct Comparison {
        /// `muster: LINE` / `crun: LINE` for each line only one side has and the table does not list.
        var unexpected: [String] = []
        /// Entries of the table whose lines were not seen on the side they name.
        var stale: [String] = []
    }

    static func compare(muster: String, crun: String, network: Network) -> Comparison {
        let musterLines = muster.split(separator: "\n").map(String.init)
        let crunLines = crun.split(separator: "\n").map(String.init)
        let onlyMuster = musterLines.filter { !crunLines.contains($0) }
        let onlyCrun = crunLines.filter { !musterLines.contains($0) }
        let known = knownDifferences.filter { $0.networks.contains(network) }
        var comparison = Comparison()
        for line in onlyMuster where !known.contains(where: { KnownDifference.matches($0.muster, line) }) { comparison.unexpected.append("muster: \(line)") }
        for line in onlyCrun where !known.contains(where: { KnownDifference.matches($0.crun, line) }) { comparison.unexpected.append("crun:   \(line)") }
        for entry in known where !entry.hostDependent {
            if let line = entry.muster, !onlyMuster.contains(where: { KnownDifference.matches(line, $0) }) { comparison.stale.append("muster: \(line) (\(entry.why))") }
            if let line = entry.crun, !onlyCrun.contains(where: { KnownDifference.matches(line, $0) }) { comparison.stale.append("crun:   \(line) (\(entry.why))") }
        }
        return comparison
    }

    /// Unpacks the image into a runtime bundle, edits its config.json, runs the probe with
    /// `crun run` and returns what it wrote. The container, its state and its cgroup are removed
    /// afterwards, whether or not it ran.
    static func runUnderCrun(_ d: DaemonHarness, image: String, out: String, network: Network) throws -> String {
        let bundle = d.directory.appendingPathComponent("crun-bundle").path
        let state = d.directory.appendingPathComponent("crun-state").path
        let id = "muster-peer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let cgroup = "/\(id)"
        let unpacked = d.run("/usr/bin/umoci", ["unpack", "--image", image + ":latest", bundle])
        try #require(unpacked.code == 0, "\(unpacked)")

        let configPath = bundle + "/config.json"
        let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
        var config = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var process = try #require(config["process"] as? [String: Any])
        process["args"] = ["/bin/sh", "/out/probe.sh"]
        process["terminal"] = false
        config["process"] = process
        config["hostname"] = "probe-0"
        var mounts = try #require(config["mounts"] as? [[String: Any]])
        mounts.append(["destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]])
        config["mounts"] = mounts
        var linux = try #require(config["linux"] as? [String: Any])
        // Muster's namespaces: umoci's spec has a network namespace always and no cgroup one.
        let namespaces = ["pid", "mount", "uts", "ipc", "cgroup"] + (network == .private ? ["network"] : [])
        linux["namespaces"] = namespaces.map { ["type": $0] }
        linux["cgroupsPath"] = cgroup
        // umoci's "deny all devices" rule is a cgroup v2 eBPF program, whose load needs a higher
        // RLIMIT_MEMLOCK than this machine's root may set (no CAP_SYS_RESOURCE). Muster has no
        // device cgroup rule either: the container's /dev holds only the nodes it is given.
        linux["resources"] = nil
        config["linux"] = linux
        let edited = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try edited.write(to: URL(fileURLWithPath: configPath))

        defer {
            _ = runCrun(d, ["--root", state, "delete", "--force", id])
            rmdir("/sys/fs/cgroup/unified" + cgroup)
            rmdir("/sys/fs/cgroup" + cgroup)
        }
        let ran = runCrun(d, ["--root", state, "run", "--bundle", bundle, id])
        let output = (try? String(contentsOfFile: out + "/probe.txt", encoding: .utf8)) ?? ""
        try #require(ran.code == 0 && output.hasSuffix("end\n"), "crun run: \(ran)\n\(output)")
        return output
    }

    /// crun refuses a hybrid cgroup host whose cgroup2 hierarchy has a controller (this one's has
    /// hugetlb): "cgroups in hybrid mode not supported". Muster uses only that cgroup2 hierarchy,
    /// so crun is shown it as the whole of /sys/fs/cgroup, in a mount namespace of its own; its
    /// cgroup then sits in the same hierarchy as Muster's instances.
    static func runCrun(_ d: DaemonHarness, _ arguments: [String]) -> DaemonHarness.Result {
        guard isHybridCgroupHost else { return d.run("/usr/bin/crun", arguments) }
        return d.run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                          "mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec /usr/bin/crun \"$@\"", "crun"] + arguments)
    }

    static var isHybridCgroupHost: Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first == "/sys/fs/cgroup/unified" }
    }
}
