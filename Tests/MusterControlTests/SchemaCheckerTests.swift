import Foundation
import MusterAPI
import Testing

/// The checker the route tests rely on: it must reject what the document forbids, or the route
/// tests would pass no matter what the server sends.
@Suite("JSON schema checker")
struct SchemaCheckerTests {
    let document: OpenAPIDocument

    init() throws {
        document = try OpenAPIDocument.load()
    }

    func problems(_ json: String, _ schema: String) throws -> [String] {
        document.check(try JSONValue.parse(json), against: .object(["$ref": .string("#/components/schemas/\(schema)")]))
    }

    static let instance = """
        {"id": "web:0", "index": 0, "state": "running", "pid": 42, "port": 20000, "restarts": 0,
         "uptime_seconds": 1.5, "cgroup": null, "reason": null, "cpu_seconds": null, "cpu_percent": null,
         "memory_bytes": null, "user": "root", "ready": true, "health": null, "connections": null, "rps": null,
         "ejected_until": null, "container": null}
        """

    @Test("accepts a conforming document")
    func accepts() throws {
        #expect(try problems(Self.instance, "InstanceStatus") == [])
        #expect(try problems(#"{"services": [{"name": "web", "desired": 1, "started": true, "source": "/x.toml", "proxy": null, "autoscale": null, "requires": ["db"], "wants": [], "waiting_for": ["db"], "instances": [\#(Self.instance)]}]}"#, "StatusResponse") == [])
        let proxy = #"{"listen": ["127.0.0.1:8080"], "protocol": "http", "open_connections": 3, "queued": 0, "requests_total": 12, "rps": 1.5, "error": null, "balance": "least-request", "ejected": 1}"#
        #expect(try problems(#"{"services": [{"name": "web", "desired": 1, "started": true, "source": "/x.toml", "proxy": \#(proxy), "autoscale": null, "requires": [], "wants": [], "waiting_for": [], "instances": []}]}"#, "StatusResponse") == [])
        #expect(try problems(#"{"error": "not_found", "message": "no"}"#, "ErrorResponse") == [])
        #expect(try problems(#"{"error": "invalid_manifest", "message": "no", "details": ["a", "b"]}"#, "ErrorResponse") == [])
    }

    @Test("accepts what the API types encode", arguments: [true, false])
    func acceptsEncodedTypes(withOptionals: Bool) throws {
        let encoder = JSONEncoder()
        func check<T: Encodable>(_ value: T, _ schema: String) throws {
            let text = String(decoding: try encoder.encode(value), as: UTF8.self)
            #expect(try problems(text, schema) == [], "\(schema): \(text)")
        }
        let some = withOptionals
        try check(InstanceStatus(id: "web:0", index: 0, state: "backoff", pid: some ? 1 : nil, port: some ? 2 : nil, restarts: 3,
                                 uptimeSeconds: some ? 1 : nil, cgroup: some ? "/c" : nil, reason: some ? "r" : nil,
                                 cpuSeconds: some ? 0.5 : nil, cpuPercent: some ? 12.5 : nil, memoryBytes: some ? 1 << 40 : nil,
                                 user: "root"), "InstanceStatus")
        var ejected = InstanceStatus(id: "web:1", index: 1, state: "running", pid: 9, port: 3, restarts: 0, uptimeSeconds: 2, cgroup: nil,
                                     reason: nil, cpuSeconds: nil, cpuPercent: nil, memoryBytes: nil, user: "root")
        ejected.ready = true
        ejected.connections = 0
        ejected.rps = 0
        ejected.ejectedUntil = some ? 1_800_000_000.5 : nil
        try check(ejected, "InstanceStatus")
        var proxy = ProxyStatus(listen: ["127.0.0.1:8080"], protocol: "http", openConnections: 0, queued: 0, requestsTotal: 5, rps: 0,
                                error: some ? "e" : nil)
        proxy.balance = some ? "least-request" : "round-robin"
        proxy.ejected = some ? 1 : 0
        // The server writes status by hand (ServiceStatus's Codable leaves nil keys out).
        let status = StatusResponse(services: [ServiceStatus(name: "web", desired: 1, started: true, instances: [ejected], source: "/x.toml",
                                                             proxy: proxy)])
        let written = String(decoding: status.jsonBytes(), as: UTF8.self)
        #expect(try problems(written, "StatusResponse") == [], "\(written)")
        try check(VersionResponse(version: "1", pid: 7, cgroupMode: "hybrid", cgroupRoot: some ? "/sys/fs/cgroup/x" : nil), "VersionResponse")
        try check(EventRecord(time: 1.25, kind: "exited", service: some ? "web" : nil, instance: some ? "web:0" : nil, message: "m",
                              pid: some ? 4 : nil, exitCode: some ? 1 : nil, signal: some ? "SIGKILL" : nil), "EventRecord")
        try check(ErrorResponse(error: "bad_request", message: "m", details: some ? ["d"] : nil), "ErrorResponse")
        try check(ReloadResponse(applied: some, added: ["a"], removed: [], changed: [], rescaled: [.init(name: "w", from: 1, to: 2)],
                                 unchanged: [], warnings: []), "ReloadResponse")
        try check(ActionResponse(results: some ? ["x"] : []), "ActionResponse")
    }

    @Test("rejects a missing required key")
    func missingKey() throws {
        let text = Self.instance.replacingOccurrences(of: #""reason": null, "#, with: "")
        #expect(try problems(text, "InstanceStatus") == [#"$: missing required key "reason""#])
    }

    @Test("rejects a key the schema does not list")
    func extraKey() throws {
        let found = try problems(#"{"results": [], "extra": 1}"#, "ActionResponse")
        #expect(found.count == 1 && found[0].contains("\"extra\""))
    }

    @Test("rejects null where the schema is not nullable")
    func nullNotAllowed() throws {
        let found = try problems(Self.instance.replacingOccurrences(of: #""user": "root""#, with: #""user": null"#), "InstanceStatus")
        #expect(found == ["$.user: null where the schema does not allow it"])
        #expect(try problems(#"{"error": "x", "message": "m", "details": null}"#, "ErrorResponse").count == 2)
    }

    @Test("rejects wrong types, enum values and bounds")
    func wrongValues() throws {
        #expect(try problems(Self.instance.replacingOccurrences(of: #""index": 0"#, with: #""index": "0""#), "InstanceStatus").count == 1)
        #expect(try problems(Self.instance.replacingOccurrences(of: #""index": 0"#, with: #""index": 0.5"#), "InstanceStatus").count == 1)
        #expect(try problems(Self.instance.replacingOccurrences(of: #""index": 0"#, with: #""index": -1"#), "InstanceStatus").count == 1)
        #expect(try problems(Self.instance.replacingOccurrences(of: #""state": "running""#, with: #""state": "sleeping""#), "InstanceStatus").count == 1)
        #expect(try problems(#"{"applied": 1, "added": [], "removed": [], "changed": [], "rescaled": [], "unchanged": [], "warnings": []}"#, "ReloadResponse").count == 1)
        #expect(try problems(#"{"events": [{"time": 1, "kind": "k"}]}"#, "EventsResponse") == [#"$.events[0]: missing required key "message""#])
        #expect(try problems(#"[]"#, "EventsResponse").count == 1)
    }

    @Test("reports references and keywords it cannot follow")
    func unknownSchemaParts() {
        #expect(document.check(.string("x"), against: .object(["$ref": .string("#/components/schemas/Nope")])).count == 1)
        #expect(document.check(.string("x"), against: .object(["type": .string("string"), "pattern": .string("^x$")])).count == 1)
        #expect(document.check(.string("x"), against: .object([:])).count == 1)
    }

    @Test("turns router paths into OpenAPI templates")
    func routeTemplates() {
        #expect(canonicalRoute("post /v1/services/:name/scale") == "POST /v1/services/{name}/scale")
        #expect(canonicalRoute("GET /v1/logs/{target}") == "GET /v1/logs/{target}")
    }
}
