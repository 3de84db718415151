import Foundation
import Testing

/// requires, env_file and MUSTER_<NAME>_ADDR as musterd reads them from disk, and a bad graph
/// refused by check and reload.
@Suite("requires, wants and env_file end to end", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct DependencyManifestTests {
    static let port = Int.random(in: 33_000...33_999)

    static let db = """
        command = ["/bin/sleep", "100000"]
        [proxy]
        listen = ["0.0.0.0:\(port)"]
        protocol = "tcp"
        [stop]
        timeout = "2s"
        """

    static let api = """
        command = ["/bin/sh", "-c", "echo db=$MUSTER_DB_ADDR url=${MUSTER_DB_URL-none} file=$FROM_FILE override=$OVERRIDE arg=$0 env=$DB; exec /bin/sleep 100000", "{addr:db}"]
        requires = ["db"]
        env_file = ["api.env", "-missing.env"]
        environment = { OVERRIDE = "manifest", DB = "tcp://{addr:db}" }
        [restart]
        start_seconds = 0.3
        [stop]
        timeout = "2s"
        """

    @Test func envFilesAndPeerAddressesReachTheProcessAndAChangedFileRestartsIt() async throws {
        try await DaemonHarness.with(services: ["db": Self.db, "api": Self.api]) { d in
            let envFile = d.servicesDir.appendingPathComponent("api.env").path
            try "# api settings\nexport FROM_FILE=\"quoted value\"\nOVERRIDE=file\n".write(toFile: envFile, atomically: true, encoding: .utf8)
            let checked = d.run(DaemonHarness.binDir + "/musterctl", ["check", d.configPath])
            #expect(checked.code == 0, "\(checked.stdout)\(checked.stderr)")
            try await d.start()
            let line = "stdout db=127.0.0.1:\(Self.port) url=none file=quoted value override=manifest arg=127.0.0.1:\(Self.port) env=tcp://127.0.0.1:\(Self.port)\n"
            let printed = await eventually(15) { d.ctl("logs", "api").stdout.hasSuffix(line) }
            #expect(printed, "\(d.ctl("logs", "api").stdout)")

            try "FROM_FILE=changed\n".write(toFile: envFile, atomically: true, encoding: .utf8)
            let plan = d.ctl("reload", "--dry-run")
            #expect(plan.stdout.contains("~ restart api (manifest changed)"), "\(plan.stdout)\(plan.stderr)")
            #expect(plan.stdout.contains("= leave db alone (unchanged)"))

            try "FROM_FILE=changed\nNOT A LINE\n".write(toFile: envFile, atomically: true, encoding: .utf8)
            let malformed = d.ctl("reload")
            #expect(malformed.code == 1)
            #expect(malformed.stderr.contains(#"api.toml: env_file: api.env:2: "NOT A LINE" is not KEY=value"#), "\(malformed.stderr)")
        }
    }

    @Test func aCycleOrAnUnknownNameIsRefusedAndTheRunningSystemStaysAsItWas() async throws {
        let sleeper = "command = [\"/bin/sleep\", \"100000\"]\n[restart]\nstart_seconds = 0.3\n[stop]\ntimeout = \"2s\"\n"
        try await DaemonHarness.with(services: ["db": sleeper, "api": "requires = [\"db\"]\n" + sleeper]) { d in
            try await d.start()
            let up = await eventually { try d.running("api", count: 1) && d.running("db", count: 1) }
            #expect(up)
            func pidsNow() throws -> [Int32?] { try d.status().services.flatMap { $0.instances.map(\.pid) } }
            let pids = try pidsNow()

            try d.write(service: "db", "wants = [\"api\"]\n" + sleeper)
            let cycle = d.ctl("reload")
            #expect(cycle.code == 1)
            #expect(cycle.stderr.contains("api.toml: requires: cycle api → db → api"), "\(cycle.stderr)")
            #expect(try pidsNow() == pids)

            try d.write(service: "db", sleeper)
            try d.write(service: "api", "requires = [\"dbb\"]\n" + sleeper)
            let files = ["api", "db"].map { d.servicesDir.appendingPathComponent("\($0).toml").path }
            let checked = d.run(DaemonHarness.binDir + "/musterctl", ["check", files[0], files[1]])
            #expect(checked.code == 1)
            #expect(checked.stderr.contains(#"api.toml: requires: no service named "dbb" (did you mean "db"?)"#), "\(checked.stderr)")
            let unknown = d.ctl("reload")
            #expect(unknown.code == 1)
            #expect(unknown.stderr.contains(#"api.toml: requires: no service named "dbb" (did you mean "db"?)"#))
            #expect(try pidsNow() == pids)
        }
    }
}
