import Glibc
import Foundation
import Logging
import MusterAPI
import MusterCore
import MusterRuntime
import Testing

/// The Supervisor against the real kernel: real processes in real cgroups with real limits.
@Suite("Supervision against the kernel", .enabled(if: isRoot, "creates cgroups: needs root"))
struct SupervisorKernelTests {
    @Test func aMemoryLimitEndsInAReportedOOMKill() async throws {
        try await KernelFixture.with { f in
            let hog = spec("hog", ["/usr/bin/python3", "-c", "b = bytearray(512 * 1024 * 1024); import time; time.sleep(30)"]) {
                $0.resources.memoryMax = 48 << 20
                $0.restart.policy = .never
                $0.restart.startSeconds = 0
            }
            let supervisor = f.supervisor([hog])
            await supervisor.start()
            let reported = try await KernelFixture.eventually { try await instance(supervisor, "hog")?.state == "exited" }
            let row = try await instance(supervisor, "hog")
            await supervisor.shutdown()
            #expect(reported)
            #expect(row?.reason == "oom-killed: out of memory (memory_max 48M)")
            let oomReported = f.journal.recent().contains { $0.kind == "oom-killed" && $0.instance == "hog:0" }
            #expect(oomReported)
        }
    }

    @Test func aPidsLimitHoldsAForkBomb() async throws {
        try await KernelFixture.with { f in
            let bomb = spec("bomb", ["/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; sleep 60"]) {
                $0.resources.pidsMax = 16
            }
            let supervisor = f.supervisor([bomb])
            await supervisor.start()
            let path = try #require(try await instance(supervisor, "bomb")?.cgroup)
            let hitLimit = await KernelFixture.eventually {
                let events = f.cgroups.mode == .hybrid
                    ? FileSystem.readIfPresent("/sys/fs/cgroup/pids/\(f.rootName)/services/bomb/0-1/pids.events")
                    : FileSystem.readIfPresent(path + "/pids.events")
                return (events ?? "").split(separator: "\n").contains { $0.hasPrefix("max ") && $0 != "max 0" }
            }
            let count = (FileSystem.readIfPresent(path + "/cgroup.procs") ?? "").split(separator: "\n").count
            await supervisor.shutdown()
            #expect(hitLimit)
            #expect(count <= 16)
            #expect(count >= 8)
        }
    }

    @Test func stoppingKillsADoubleForkedGrandchild() async throws {
        try await KernelFixture.with { f in
            let pidFile = f.directory + "/grandchild.pid"
            let escaper = spec("escaper", ["/bin/sh", "-c", "setsid sh -c 'echo $$ > \(pidFile); exec sleep 1000' & exec sleep 1000"])
            let supervisor = f.supervisor([escaper])
            await supervisor.start()
            let wrote = await KernelFixture.eventually { (FileSystem.readIfPresent(pidFile) ?? "").hasSuffix("\n") }
            #expect(wrote)
            let grandchild = try #require(Int32((FileSystem.readIfPresent(pidFile) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(processExists(grandchild))
            let lines = try await supervisor.stop(["escaper"])
            #expect(lines == ["escaper:0: stopped"])
            let gone = await KernelFixture.eventually(5) { !processExists(grandchild) }
            await supervisor.shutdown()
            #expect(gone, "grandchild \(grandchild) survived the stop")
        }
    }

    @Test func aProcessThatIgnoresTheStopSignalIsKilledAfterTheTimeout() async throws {
        try await KernelFixture.with { f in
            let stubborn = spec("stubborn", ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"]) {
                $0.stop.timeout = .milliseconds(300)
            }
            let supervisor = f.supervisor([stubborn])
            await supervisor.start()
            _ = await KernelFixture.eventually { (try? await instance(supervisor, "stubborn")?.state) == "running" }
            let started = ContinuousClock.now
            let lines = try await supervisor.stop(["stubborn"])
            #expect(lines == ["stubborn:0: stopped: killed after stop timeout"])
            #expect(ContinuousClock.now - started >= .milliseconds(300))
            let timeoutReported = f.journal.recent().contains { $0.kind == "stop-timeout" }
            #expect(timeoutReported)
            await supervisor.shutdown()
        }
    }

    @Test func crashingServicesBackOffThenGoFatalAndStartClearsIt() async throws {
        try await KernelFixture.with { f in
            let crasher = spec("crasher", ["/bin/sh", "-c", "exit 3"]) {
                $0.restart.maxFailedStarts = 3
                $0.restart.backoffMin = .milliseconds(20)
                $0.restart.backoffMax = .milliseconds(50)
            }
            let missing = spec("missing", ["/usr/bin/nope"]) {
                $0.restart.maxFailedStarts = 2
                $0.restart.backoffMin = .milliseconds(20)
            }
            let supervisor = f.supervisor([crasher, missing])
            await supervisor.start()
            let fatal = try await KernelFixture.eventually {
                let crasher = try await instance(supervisor, "crasher")?.state
                let missing = try await instance(supervisor, "missing")?.state
                return crasher == "fatal" && missing == "fatal"
            }
            #expect(fatal)
            let crasherReason = try await instance(supervisor, "crasher")?.reason
            let missingReason = try await instance(supervisor, "missing")?.reason
            #expect(crasherReason == "exited with code 3 before start_seconds (200ms); gave up after 3 failed starts in a row")
            #expect(missingReason == "exec /usr/bin/nope: No such file or directory; gave up after 2 failed starts in a row")
            let backoffs = f.journal.recent().filter { $0.kind == "backoff" && $0.service == "crasher" }.count
            #expect(backoffs == 2)
            _ = try await supervisor.start(["crasher"])
            let starts = f.journal.recent().filter { $0.kind == "started" && $0.service == "crasher" }.count
            #expect(starts == 4)
            await supervisor.shutdown()
        }
    }

    @Test func logsAreStampedRotatedAndLoseNoLine() async throws {
        try await KernelFixture.with { f in
            let chatty = spec("chatty", ["/bin/sh", "-c", "i=1; while [ $i -le 3000 ]; do echo \"line $i of the chatty service, padded to be long enough\"; i=$((i+1)); done; echo bye >&2; sleep 100"]) {
                $0.logs.maxBytes = 64 << 10
                $0.logs.backups = 8
            }
            let supervisor = f.supervisor([chatty])
            await supervisor.start()
            let base = f.directory + "/log/chatty/0.log"
            let finished = await KernelFixture.eventually { (FileSystem.readIfPresent(base) ?? "").contains("stderr bye") }
            await supervisor.shutdown()
            #expect(finished)
            var lines: [Substring] = []
            for suffix in [".8", ".7", ".6", ".5", ".4", ".3", ".2", ".1", ""] {
                let text = FileSystem.readIfPresent(base + suffix) ?? ""
                if suffix != "" && !text.isEmpty { #expect(text.utf8.count <= 64 << 10) }
                lines += text.split(separator: "\n")
            }
            let numbers = lines.compactMap { line -> Int? in
                guard line.contains(" stdout line ") else { return nil }
                return Int(line.split(separator: " ")[3])
            }
            #expect(numbers == Array(1...3000))
            #expect(lines.first?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stdout line 1 "#, options: .regularExpression) != nil)
            #expect(FileSystem.exists(base + ".1"))
        }
    }

    @Test func aFloodingServiceDoesNotStallAnother() async throws {
        try await KernelFixture.with { f in
            let flood = spec("flood", ["/usr/bin/yes", "flooding the log as fast as a pipe allows"]) {
                $0.logs.maxBytes = 64 << 20
                $0.logs.backups = 1
            }
            let ticker = spec("ticker", ["/bin/sh", "-c", "i=1; while [ $i -le 3000 ]; do echo tick $i; i=$((i+1)); sleep 0.01; done; sleep 100"])
            let supervisor = f.supervisor([flood, ticker])
            await supervisor.start()
            func ticks() -> Int {
                (FileSystem.readIfPresent(f.directory + "/log/ticker/0.log") ?? "").split(separator: "\n").count
            }
            func flooded() -> Int {
                var info = stat()
                return stat(f.directory + "/log/flood/0.log", &info) == 0 ? Int(info.st_size) : 0
            }
            // Once the flood is in full swing, the neighbour's lines keep getting through and the
            // supervisor keeps answering.
            let flooding = await KernelFixture.eventually(15) { flooded() > 4 << 20 }
            let before = ticks()
            let progressed = await KernelFixture.eventually(15) { ticks() >= before + 20 }
            // yes never stops by itself: still running means the flood went on the whole time.
            let floodState = try await instance(supervisor, "flood")?.state
            let answered = try await supervisor.status().services.count
            await supervisor.shutdown()
            #expect(flooding)
            #expect(progressed, "ticker stuck at \(ticks()) lines beside the flood")
            #expect(floodState == "running")
            #expect(answered == 2)
        }
    }
}

@Suite("Supervision without cgroups")
struct NoCgroupTests {
    @Test func aServiceWithLimitsFailsWithTheReasonInsteadOfRunningUnlimited() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let limited = spec("limited", ["/bin/sleep", "1000"]) { $0.resources.memoryMax = 64 << 20 }
        let plain = spec("plain", ["/bin/sleep", "1000"])
        let journal = EventJournal(stateDir: nil)
        let supervisor = Supervisor(specs: [limited, plain], dependencies: .init(
            cgroups: .unavailable("not running as root"), reaper: .shared, logs: LogPump { _ in }, journal: journal, store: nil,
            logDir: "/tmp/muster-nocgroup-\(getpid())", ports: 33000...33099, daemonEnvironment: [:], logger: logger,
            loadManifests: { () throws(ManifestErrors) -> [ServiceSpec] in [] }))
        await supervisor.start()
        let limitedRow = try await instance(supervisor, "limited")
        let up = await KernelFixture.eventually { (try? await instance(supervisor, "plain")?.state) == "running" }
        await supervisor.shutdown()
        _ = system("rm -rf /tmp/muster-nocgroup-\(getpid())")
        #expect(limitedRow?.state == "fatal")
        #expect(limitedRow?.reason == "resource limits need cgroups, which musterd cannot use here: not running as root")
        #expect(up)
    }
}

@Suite("What the supervisor tells systemd", .enabled(if: isRoot, "creates cgroups: needs root"))
struct NotifyLineTests {
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    @Test func statusReloadAndStoppingAreReported() async throws {
        try await KernelFixture.with { f in
            let recorder = Recorder()
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let specs = [spec("one", ["/bin/sleep", "1000"]) { $0.instances = 2; $0.restart.startSeconds = 0 },
                         spec("broken", ["/usr/bin/nope"]) { $0.restart.maxFailedStarts = 1 }]
            let supervisor = Supervisor(specs: specs, dependencies: .init(
                cgroups: f.cgroups, reaper: .shared, logs: LogPump { _ in }, journal: f.journal, store: nil,
                logDir: f.directory + "/log", ports: 31000...31999, daemonEnvironment: [:], logger: logger,
                loadManifests: { () throws(ManifestErrors) -> [ServiceSpec] in specs },
                notify: { recorder.add($0) }))
            await supervisor.start()
            let settled = await KernelFixture.eventually { await supervisor.statusLine == "2 services, 2/3 instances running, 1 fatal" }
            let line = await supervisor.statusLine
            _ = try await supervisor.reload(dryRun: false)
            await supervisor.heartbeat()
            await supervisor.shutdown()
            let lines = recorder.all
            #expect(settled, "\(line)")
            #expect(lines.contains("STATUS=2 services, 2/3 instances running, 1 fatal"))
            #expect(lines.contains("RELOADING=1"))
            let readyAfterReloading = lines.firstIndex(of: "READY=1").map { $0 > lines.firstIndex(of: "RELOADING=1")! }
            #expect(readyAfterReloading == true, "\(lines)")
            #expect(lines.contains("STOPPING=1"))
            // A line is sent when it changes, not on every pass.
            let statusLines = lines.filter { $0.hasPrefix("STATUS=") }
            #expect(Set(statusLines).count == statusLines.count, "\(statusLines)")
        }
    }
}
