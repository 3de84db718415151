import Foundation
import MusterAPI
import Testing

/// An imported supervisord program, run by musterd, starts the same processes supervisord
/// started from the original config: same argv, working directory and environment (less each
/// daemon's own bookkeeping variables).
@Suite("supervisord import round trip", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct RoundTripTests {
    struct Started: Equatable {
        var argv: [String]
        var cwd: String
        var environment: [String: String]
    }

    static func inspect(_ pid: Int32) throws -> Started {
        let argv = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        var environment: [String: String] = [:]
        for entry in try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")).split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
        }
        let cwd = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
        return Started(argv: argv, cwd: cwd, environment: environment)
    }

    /// Variables each daemon adds of its own: they name the daemon, not the program.
    static func withoutBookkeeping(_ started: Started) -> Started {
        var copy = started
        copy.environment = started.environment.filter { key, _ in
            !key.hasPrefix("SUPERVISOR_") && !key.hasPrefix("MUSTER_") && key != "PORT"
        }
        return copy
    }

    @Test func anImportedProgramStartsTheSameProcessesUnderMusterd() async throws {
        try await DaemonHarness.with(services: [:]) { d in
            let work = d.directory.appendingPathComponent("app with space")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let conf = d.directory.appendingPathComponent("supervisord.conf").path
            try """
                [unix_http_server]
                file=%(here)s/supervisor.sock

                [supervisord]
                logfile=%(here)s/supervisord.log
                pidfile=%(here)s/supervisord.pid
                childlogdir=%(here)s
                ; the environment every program gets
                environment=SHARED="from supervisord"

                [rpcinterface:supervisor]
                supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

                [supervisorctl]
                serverurl=unix://%(here)s/supervisor.sock

                [program:sleeper]
                command=/bin/sleep "1000%(process_num)02d"   ; quoted, with a format spec
                process_name=%(program_name)s_%(process_num)02d
                numprocs=2
                directory=%(here)s/app with space
                environment=GREETING="hello world",
                    LEVEL=debug
                startsecs=0
                autorestart=true
                """.write(toFile: conf, atomically: true, encoding: .utf8)

            // supervisord first: what it starts is the reference.
            let supervisord = Process()
            supervisord.executableURL = URL(fileURLWithPath: "/usr/bin/supervisord")
            supervisord.arguments = ["-n", "-c", conf]
            supervisord.standardOutput = FileHandle.nullDevice
            supervisord.standardError = FileHandle.nullDevice
            try supervisord.run()
            defer {
                if supervisord.isRunning { kill(supervisord.processIdentifier, SIGKILL) }
                supervisord.waitUntilExit()
            }
            func supervisorctl(_ args: String...) -> DaemonHarness.Result { d.run("/usr/bin/supervisorctl", ["-c", conf] + args) }
            let up = await eventually(20) { supervisorctl("status").stdout.components(separatedBy: "RUNNING").count == 3 }
            try #require(up, "supervisord did not start both: \(supervisorctl("status").stdout)")
            var reference: [Started] = []
            for name in ["sleeper:sleeper_00", "sleeper:sleeper_01"] {
                let pid = try #require(Int32(supervisorctl("pid", name).stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
                reference.append(Self.withoutBookkeeping(try Self.inspect(pid)))
            }
            _ = supervisorctl("shutdown")
            _ = await eventually(20) { !supervisord.isRunning }

            // Then the import, run by musterd.
            let imported = d.run(DaemonHarness.binDir + "/musterctl", ["import", "supervisord", conf, "-o", d.servicesDir.path])
            #expect(imported.code == 0, "\(imported.stderr)")
            try await d.start()
            let musterRunning = await eventually { try d.running("sleeper", count: 2) }
            #expect(musterRunning)
            let rows = try d.instances("sleeper")
            var musterStarted: [Started] = []
            for row in rows { musterStarted.append(Self.withoutBookkeeping(try Self.inspect(try #require(row.pid)))) }

            #expect(musterStarted.map(\.argv) == [["/bin/sleep", "100000"], ["/bin/sleep", "100001"]])
            #expect(musterStarted.map(\.argv) == reference.map(\.argv))
            #expect(musterStarted.map(\.cwd) == reference.map(\.cwd))
            #expect(musterStarted.map(\.environment) == reference.map(\.environment))
            #expect(musterStarted.first?.environment["GREETING"] == "hello world")
            #expect(musterStarted.first?.environment["SHARED"] == "from supervisord")
        }
    }
}
