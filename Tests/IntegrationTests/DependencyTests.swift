import Foundation
import MusterAPI
import Testing

/// `requires` through the built musterd and musterctl: start after readiness, MUSTER_<NAME>_URL
/// for an http peer, `waiting` in status, stop and start of the required service. (Bad graphs:
/// DependencyManifestTests.)
@Suite("Dependencies end to end", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct DependencyTests {
    static func db(port: Int) -> String {
        """
        command = ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
        directory = "/tmp"
        [restart]
        start_seconds = 0.3
        [stop]
        signal = "INT"
        [proxy]
        listen = ["127.0.0.1:\(port)"]
        [health]
        check = "http"
        interval = "200ms"
        rise = 1
        """
    }

    /// Writes what it was told about db, then serves nothing.
    static func api(_ out: String) -> String {
        """
        command = ["/bin/sh", "-c", "echo \\"$MUSTER_DB_URL $MUSTER_DB_ADDR {addr:db}\\" > \(out); exec sleep 1000"]
        requires = ["db"]
        [restart]
        start_seconds = 0.2
        """
    }

    @Test func aDependentFindsWhatItRequiresAndStopsFirst() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: [:]) { d in
            let seen = d.directory.appendingPathComponent("api-saw").path
            try d.write(service: "db", Self.db(port: port))
            try d.write(service: "api", Self.api(seen))
            try await d.start()
            let up = await eventually { try d.running("api", count: 1) }
            #expect(up)
            let told = (try? String(contentsOfFile: seen, encoding: .utf8)) ?? ""
            #expect(told == "http://127.0.0.1:\(port) 127.0.0.1:\(port) 127.0.0.1:\(port)\n")
            let table = d.ctl("status").stdout
            #expect(table.contains("api: requires db"))

            // api's process was started only after db was ready.
            let events = d.ctl("events").stdout.split(separator: "\n")
            let dbReady = events.firstIndex { $0.contains("db:0") && $0.contains("ready") }
            let apiStarted = events.firstIndex { $0.contains("api:0") && $0.contains("started pid") }
            #expect(dbReady != nil && apiStarted != nil && dbReady! < apiStarted!, "\(events)")

            let stop = d.ctl("stop", "db")
            #expect(stop.code == 0)
            let api = try d.instances("api").first
            #expect(api?.state == "waiting")
            #expect(api?.reason == "requires db is stopped")
            let waitingFor = try d.status().services.first { $0.name == "api" }?.waitingFor
            #expect(waitingFor == ["db"])
            #expect(d.ctl("status").stdout.contains("api:0  WAITING  no"))

            #expect(d.ctl("start", "db").code == 0)
            let back = await eventually { try d.running("api", count: 1) }
            #expect(back)
        }
    }
}
