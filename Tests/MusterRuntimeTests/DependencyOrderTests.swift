import Foundation
import MusterAPI
import MusterCore
import MusterRuntime
import Testing

/// `requires` and `wants` against real processes: start order by readiness, stop order in
/// reverse, dependents stopped while what they require is down and started when it is back.
@Suite("Dependency order against the kernel", .enabled(if: isRoot, "creates cgroups: needs root"))
struct DependencyOrderTests {
    /// Where the journal says each (kind, instance) first happened, to compare orders.
    private func position(_ journal: EventJournal, _ kind: String, _ instance: String) -> Int? {
        journal.recent().firstIndex { $0.kind == kind && $0.instance == instance }
    }

    @Test func aServiceStartsOnceWhatItRequiresIsReadyAndShowsWhatItWaitsFor() async throws {
        try await KernelFixture.with { f in
            // db is ready only after start_seconds (no check: running means ready).
            let db = spec("db", ["/bin/sleep", "1000"]) { $0.restart.startSeconds = 3 }
            let api = spec("api", ["/bin/sleep", "1000"]) { $0.requires = ["db"] }
            let supervisor = f.supervisor([db, api])
            await supervisor.start()
            // One status read for both: db can become ready between two on a loaded machine
            // (a full run once saw the instance waiting and, a moment later, nothing to wait for).
            let service = try await supervisor.status(["api"]).services.first
            let waiting = service?.instances.first
            #expect(waiting?.state == "waiting")
            #expect(waiting?.reason == "waiting for db to be ready")
            #expect(service?.waitingFor == ["db"])
            #expect(service?.requires == ["db"])
            let ran = try await KernelFixture.eventually { try await instance(supervisor, "api")?.state == "running" }
            #expect(ran)
            let dbRunning = try #require(position(f.journal, "running", "db:0"))
            let apiStarted = try #require(position(f.journal, "started", "api:0"))
            #expect(dbRunning < apiStarted, "api started before db was ready")
            let waitingReported = f.journal.recent().contains { $0.kind == "waiting" && $0.service == "api" }
            #expect(waitingReported)
            await supervisor.shutdown()
        }
    }

    @Test func shutdownStopsDependentsBeforeWhatTheyRequire() async throws {
        try await KernelFixture.with { f in
            let db = spec("db", ["/bin/sleep", "1000"])
            // Takes a while to stop: db must still be running until api has gone.
            let api = spec("api", ["/bin/sh", "-c", "trap 'sleep 0.5; exit 0' TERM; while true; do sleep 0.05; done"]) {
                $0.requires = ["db"]
            }
            let web = spec("web", ["/bin/sleep", "1000"]) { $0.wants = ["api"] }
            let supervisor = f.supervisor([db, api, web])
            await supervisor.start()
            let up = try await KernelFixture.eventually {
                let web = try await instance(supervisor, "web")?.state
                let db = try await instance(supervisor, "db")?.state
                return web == "running" && db == "running"
            }
            #expect(up)
            await supervisor.shutdown()
            let webStopped = try #require(position(f.journal, "stopped", "web:0"))
            let apiStopping = try #require(position(f.journal, "stopping", "api:0"))
            let apiStopped = try #require(position(f.journal, "stopped", "api:0"))
            let dbStopping = try #require(position(f.journal, "stopping", "db:0"))
            #expect(webStopped < apiStopping)
            #expect(apiStopped < dbStopping, "db was told to stop before api had stopped")
        }
    }

    @Test func stoppingARequiredServiceStopsItsDependentsFirstAndStartingItBringsThemBack() async throws {
        try await KernelFixture.with { f in
            let db = spec("db", ["/bin/sleep", "1000"])
            let api = spec("api", ["/bin/sleep", "1000"]) { $0.requires = ["db"] }
            let supervisor = f.supervisor([db, api])
            await supervisor.start()
            let up = try await KernelFixture.eventually { try await instance(supervisor, "api")?.state == "running" }
            #expect(up)
            let lines = try await supervisor.stop(["db"])
            #expect(lines == ["db:0: stopped"])
            let apiRow = try await instance(supervisor, "api")
            #expect(apiRow?.state == "waiting")
            #expect(apiRow?.reason == "requires db is stopped")
            #expect(apiRow?.pid == nil)
            let apiStopped = try #require(position(f.journal, "stopped", "api:0"))
            let dbStopping = try #require(position(f.journal, "stopping", "db:0"))
            #expect(apiStopped < dbStopping)
            let downReported = f.journal.recent().contains { $0.kind == "dependency-down" && $0.service == "api" }
            #expect(downReported)
            _ = try await supervisor.start(["db"])
            let back = try await KernelFixture.eventually { try await instance(supervisor, "api")?.state == "running" }
            #expect(back)
            await supervisor.shutdown()
        }
    }

    @Test func aRequiredServiceGoingFatalStopsItsDependentsUntilItIsBack() async throws {
        try await KernelFixture.with { f in
            let broken = f.directory + "/db-broken"
            let db = spec("db", ["/bin/sh", "-c", "[ -e \(broken) ] && exit 3; exec sleep 1000"]) {
                $0.restart.maxFailedStarts = 2
                $0.restart.backoffMin = .milliseconds(20)
                $0.restart.backoffMax = .milliseconds(50)
            }
            let api = spec("api", ["/bin/sleep", "1000"]) { $0.requires = ["db"] }
            let web = spec("web", ["/bin/sleep", "1000"]) { $0.requires = ["api"] }
            let supervisor = f.supervisor([db, api, web])
            await supervisor.start()
            let up = try await KernelFixture.eventually { try await instance(supervisor, "web")?.state == "running" }
            #expect(up)
            FileManager.default.createFile(atPath: broken, contents: nil)
            _ = try await supervisor.signal(SIGKILL, ["db"])
            let fatal = try await KernelFixture.eventually {
                let db = try await instance(supervisor, "db")?.state
                let api = try await instance(supervisor, "api")?.state
                let web = try await instance(supervisor, "web")?.state
                return db == "fatal" && api == "waiting" && web == "waiting"
            }
            #expect(fatal)
            #expect(try await instance(supervisor, "api")?.reason == "requires db is fatal")
            #expect(try await instance(supervisor, "web")?.reason == "requires api is stopped: it requires db")
            try FileManager.default.removeItem(atPath: broken)
            _ = try await supervisor.start(["db"])
            let back = try await KernelFixture.eventually { try await instance(supervisor, "web")?.state == "running" }
            #expect(back)
            await supervisor.shutdown()
        }
    }
}
