import Foundation
import Glibc
import Hummingbird
import HummingbirdTesting
import Logging
import MusterAPI
import MusterControl
import MusterCore
import MusterRuntime
import NIOCore
import Synchronization
import Testing

/// A real Supervisor running real processes, the control API's router in front of it, and the
/// knobs a test turns: what the next reload reads, what a shutdown request does.
final class RouteHarness: @unchecked Sendable {
    let supervisor: Supervisor
    let journal: EventJournal
    let router: Router<ControlContext>
    let directory: String
    let document: OpenAPIDocument
    /// The dashboard's tokens, on a clock a test can move forward (`passTime`).
    let dashboard: DashboardAccess
    private let clockShift = Locked(0.0)
    private let manifests: Locked<Result<[ServiceSpec], ManifestErrors>>
    private let shutdownRequestCount = Locked(0)
    /// Every pid a status response showed, to prove none outlives the test.
    private let seenPids = Locked<Set<Int32>>([])

    static let reloadWarning = "test warning: idle will run as root"

    init(specs: [ServiceSpec], authorizer: PeerAuthorizer, shutDownOnRequest: Bool, dashboard dashboardOn: Bool = true) throws {
        document = try OpenAPIDocument.load()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("muster-control-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let manifests = Locked<Result<[ServiceSpec], ManifestErrors>>(.success(specs))
        self.manifests = manifests
        var logger = Logger(label: "muster-control-tests")
        logger.logLevel = .critical
        journal = EventJournal(stateDir: nil)
        let supervisor = Supervisor(specs: specs, dependencies: .init(
            cgroups: Cgroups.unavailable("tests"), reaper: Reaper.shared, logs: LogPump { _ in }, journal: journal, store: nil,
            logDir: directory + "/log", ports: 41000...41999, daemonEnvironment: ["PATH": "/usr/bin:/bin", "SECRET": "daemon-only"],
            logger: logger,
            loadManifests: { () throws(ManifestErrors) -> [ServiceSpec] in try manifests.withLock { $0 }.get() },
            portIsFree: { _ in true }))
        self.supervisor = supervisor
        let shift = clockShift
        let dashboard = DashboardAccess(listen: ListenAddress(host: "127.0.0.1", port: 9090)) { WallClock.now() + shift.withLock { $0 } }
        self.dashboard = dashboard
        let counter = shutdownRequestCount
        router = ControlAPI.router(supervisor: supervisor, journal: journal, settings: .init(
            authorizer: authorizer, cgroupMode: "unavailable", cgroupRoot: nil,
            requestShutdown: {
                counter.withLock { $0 += 1 }
                if shutDownOnRequest { Task { await supervisor.shutdown() } }
            },
            reloadWarnings: { [Self.reloadWarning] }, dashboard: dashboardOn ? dashboard : nil))
    }

    /// Moves the dashboard's clock forward, so tokens expire without waiting.
    func passTime(_ seconds: Double) {
        clockShift.withLock { $0 += seconds }
    }

    var shutdownRequests: Int { shutdownRequestCount.withLock { $0 } }

    func setManifests(_ next: Result<[ServiceSpec], ManifestErrors>) {
        manifests.withLock { $0 = next }
    }

    func saw(_ pids: [Int32]) {
        seenPids.withLock { $0.formUnion(pids) }
    }

    var pids: Set<Int32> { seenPids.withLock { $0 } }

    /// Starts the supervisor, runs `body` against the router in-process, and always shuts the
    /// supervisor down afterwards (stopping every process), whether `body` passed or threw.
    static func run(specs: [ServiceSpec], authorizer: PeerAuthorizer = PeerAuthorizer(controlGroup: "muster", allowWithoutCredentials: true),
                    shutDownOnRequest: Bool = false, dashboard: Bool = true, _ body: @escaping @Sendable (RouteHarness, APIClient) async throws -> Void) async throws {
        let harness = try RouteHarness(specs: specs, authorizer: authorizer, shutDownOnRequest: shutDownOnRequest, dashboard: dashboard)
        await harness.supervisor.start()
        var failure: (any Error)?
        do {
            let app = Application(router: harness.router)
            try await app.test(.router) { client in
                try await body(harness, APIClient(client: client, document: harness.document))
            }
        } catch {
            failure = error
        }
        await harness.supervisor.shutdown()
        // Nothing the test started may be left running.
        for pid in harness.pids.sorted() {
            let gone = kill(pid, 0) == -1 && errno == ESRCH
            #expect(gone, "pid \(pid) is still alive after shutdown")
        }
        try? FileManager.default.removeItem(atPath: harness.directory)
        if let failure { throw failure }
    }

    /// A service running `command` (by default a long sleep) with a short start time.
    static func spec(_ name: String, instances: Int = 1, command: [String] = ["/bin/sleep", "1000"]) -> ServiceSpec {
        var spec = ServiceSpec(name: name, command: command, directory: "/", instances: instances, sourcePath: "/etc/muster/services.d/\(name).toml")
        spec.restart.startSeconds = 0.2
        spec.stop.timeout = .seconds(3)
        return spec
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` pass; a throw counts as false.
    static func eventually(within seconds: Double = 10, _ condition: () async throws -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (try? await condition()) == true
    }
}

/// A value behind a lock, shareable by reference (closures cannot capture a Mutex itself).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// One checked response.
struct APIResponse: Sendable {
    var status: Int
    var contentType: String
    var text: String
    var json: JSONValue?

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    var errorCode: String? { json?["error"]?.stringValue }
    var message: String { json?["message"]?.stringValue ?? "" }
}

/// Sends requests through the router and checks each response against docs/api/openapi.json:
/// the status must be documented for the route and method, the content type must be one the
/// document gives for that status, and a JSON body must conform to its schema.
struct APIClient: Sendable {
    let client: any TestClientProtocol
    let document: OpenAPIDocument

    /// - Parameters:
    ///   - route: the document's path template ("/v1/logs/{target}"); nil for a path that is no
    ///     route, whose answer must then be an ErrorResponse.
    ///   - status: the status the test expects.
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, route: String?, body: String? = nil, accept: String? = nil,
              expect status: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws -> APIResponse {
        var headers: HTTPFields = [:]
        if body != nil { headers[.contentType] = "application/json" }
        if let accept { headers[.accept] = accept }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        let text = String(buffer: response.body)
        let contentType = response.headers[.contentType] ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        #expect(Int(response.status.code) == status, "\(method) \(uri): status \(response.status.code), body \(text)", sourceLocation: sourceLocation)

        let schema: JSONValue?
        if let route {
            let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            let operation = try #require(document.operation(method.rawValue, route), "\(method) \(route) is not in openapi.json", sourceLocation: sourceLocation)
            let declared = Set((operation["parameters"]?.arrayValue ?? []).filter { $0["in"] == .string("query") }.compactMap { $0["name"]?.stringValue })
            for pair in query.split(separator: "&") where !pair.isEmpty {
                let name = String(pair.split(separator: "=", maxSplits: 1)[0])
                #expect(declared.contains(name), "\(method) \(route): query parameter \(name) is not documented", sourceLocation: sourceLocation)
            }
            let documented = try #require(operation["responses"]?[String(response.status.code)],
                                          "\(method) \(route) answered \(response.status.code), which openapi.json does not list", sourceLocation: sourceLocation)
            let content = try #require(documented["content"]?[mediaType],
                                       "\(method) \(route) \(response.status.code): content type \"\(contentType)\" is not documented", sourceLocation: sourceLocation)
            schema = content["schema"]
        } else {
            #expect(mediaType == "application/json", "\(method) \(uri): content type \(contentType)", sourceLocation: sourceLocation)
            schema = .object(["$ref": .string("#/components/schemas/ErrorResponse")])
        }

        var json: JSONValue?
        switch mediaType {
        case "application/json":
            json = try #require(try? JSONValue.parse(text), "\(method) \(uri): not JSON: \(text)", sourceLocation: sourceLocation)
            let problems = document.check(json!, against: try #require(schema, sourceLocation: sourceLocation))
            #expect(problems.isEmpty, "\(method) \(uri) \(response.status.code): \(problems) in \(text)", sourceLocation: sourceLocation)
        case "application/x-ndjson":
            for line in text.split(separator: "\n") {
                let value = try #require(try? JSONValue.parse(String(line)), "\(method) \(uri): not a JSON line: \(line)", sourceLocation: sourceLocation)
                let problems = document.check(value, against: try #require(schema, sourceLocation: sourceLocation))
                #expect(problems.isEmpty, "\(method) \(uri): \(problems) in \(line)", sourceLocation: sourceLocation)
            }
        case "text/plain":
            #expect(schema?["type"] == .string("string"), sourceLocation: sourceLocation)
        default:
            Issue.record("\(method) \(uri): unexpected content type \"\(contentType)\"", sourceLocation: sourceLocation)
        }
        return APIResponse(status: Int(response.status.code), contentType: contentType, text: text, json: json)
    }

    func status(_ query: String = "", sourceLocation: SourceLocation = #_sourceLocation) async throws -> StatusResponse {
        try await call(.get, "/v1/status" + query, route: "/v1/status", expect: 200, sourceLocation: sourceLocation).decode(StatusResponse.self)
    }
}
