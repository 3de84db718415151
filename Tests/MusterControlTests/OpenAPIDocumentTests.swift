import MusterControl
import Testing

/// docs/api/openapi.json against the code: the same routes, and schemas strict enough to catch drift.
@Suite("OpenAPI document")
struct OpenAPIDocumentTests {
    let document: OpenAPIDocument

    init() throws {
        document = try OpenAPIDocument.load()
    }

    @Test("is OpenAPI 3.0.3")
    func version() {
        #expect(document.root["openapi"] == .string("3.0.3"))
        #expect(document.root["info"]?["title"]?.stringValue != nil)
    }

    @Test("describes exactly the routes the server answers")
    func sameRoutes() {
        let code = Set(ControlAPI.routes.map(canonicalRoute))
        #expect(code.count == ControlAPI.routes.count, "ControlAPI.routes lists a route twice")
        let documented = document.routes
        #expect(documented.subtracting(code).isEmpty, "documented but not served: \(documented.subtracting(code).sorted())")
        #expect(code.subtracting(documented).isEmpty, "served but not documented: \(code.subtracting(documented).sorted())")
    }

    @Test("has every body schema", arguments: [
        "StatusResponse", "ServiceStatus", "InstanceStatus", "TargetsRequest", "SignalRequest", "ScaleRequest",
        "ActionResponse", "ReloadResponse", "ErrorResponse", "VersionResponse", "EventRecord", "EventsResponse", "MetricsHistoryResponse",
        "DashboardLoginRequest", "DashboardLoginResponse",
    ])
    func schemaExists(name: String) throws {
        let schema = try #require(document.schema(named: name), "components/schemas/\(name) is missing")
        #expect(schema["type"] == .string("object"))
        #expect(schema["properties"]?.objectValue?.isEmpty == false)
    }

    @Test("closes every response object (additionalProperties false)")
    func responsesAreClosed() throws {
        let requests: Set = ["TargetsRequest", "SignalRequest", "ScaleRequest", "DashboardLoginRequest"]
        let schemas = try #require(document.root["components"]?["schemas"]?.objectValue)
        for (name, schema) in schemas where !requests.contains(name) && schema["type"] == .string("object") {
            #expect(schema["additionalProperties"] == .bool(false), "\(name) does not set additionalProperties: false")
        }
    }

    @Test("declares path parameters, bodies and responses for every operation")
    func operationsAreComplete() throws {
        let bodies: [String: String] = [
            "POST /v1/start": "TargetsRequest", "POST /v1/stop": "TargetsRequest", "POST /v1/restart": "TargetsRequest",
            "POST /v1/signal": "SignalRequest", "POST /v1/services/{name}/scale": "ScaleRequest",
            "POST /v1/services/{name}/rollback": "RollbackRequest", "POST /v1/dashboard/login": "DashboardLoginRequest",
        ]
        for route in ControlAPI.routes.map(canonicalRoute) {
            let parts = route.split(separator: " ").map(String.init)
            let operation = try #require(document.operation(parts[0], parts[1]), "\(route) is not in the document")
            let pathParameters = parts[1].split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) }
            let declared = (operation["parameters"]?.arrayValue ?? []).filter { $0["in"] == .string("path") }
            let declaredNames = Set(declared.compactMap { $0["name"]?.stringValue })
            #expect(declaredNames == Set(pathParameters), "\(route): path parameters")
            for parameter in declared { #expect(parameter["required"] == .bool(true), "\(route): path parameters are required") }

            let body = operation["requestBody"]?["content"]?["application/json"]?["schema"]?["$ref"]?.stringValue
            let expectedBody = bodies[route].map { "#/components/schemas/\($0)" }
            #expect(body == expectedBody, "\(route): request body")

            let responses = try #require(operation["responses"]?.objectValue, "\(route) has no responses")
            #expect(responses["403"] != nil, "\(route): every route can answer 403 forbidden")
            let hasSuccess = responses.keys.contains { $0.hasPrefix("2") }
            #expect(hasSuccess, "\(route): no success response")
            for (status, response) in responses where status != "200" || !route.hasPrefix("GET /v1/logs") {
                for (mediaType, content) in response["content"]?.objectValue ?? [:] where mediaType.hasPrefix("application/") {
                    let schema = try #require(content["schema"], "\(route) \(status) \(mediaType) has no schema")
                    // Resolving every $ref: checking a value of the wrong kind reports only type
                    // problems, never a dangling reference.
                    let problems = document.check(.string("probe"), against: schema)
                    let unresolved = problems.contains { $0.contains("$ref") || $0.contains("does not understand") }
                    #expect(!unresolved, "\(route) \(status): \(problems)")
                }
                if status.first != "2" {
                    let ref = response["content"]?["application/json"]?["schema"]?["$ref"]
                    #expect(ref == .string("#/components/schemas/ErrorResponse"), "\(route) \(status) is not an ErrorResponse")
                }
            }
        }
    }

    @Test("lists the query parameters the server reads")
    func queryParameters() throws {
        let expected: [String: Set<String>] = [
            "GET /v1/status": ["service"], "GET /v1/history": ["service", "since"], "POST /v1/reload": ["dry_run"],
            "GET /v1/logs": ["lines", "follow", "since"], "GET /v1/logs/{target}": ["lines", "follow", "since"], "GET /v1/events": ["limit", "follow"],
        ]
        for route in ControlAPI.routes.map(canonicalRoute) {
            let parts = route.split(separator: " ").map(String.init)
            let operation = try #require(document.operation(parts[0], parts[1]))
            let query = (operation["parameters"]?.arrayValue ?? []).filter { $0["in"] == .string("query") }
            let queryNames = Set(query.compactMap { $0["name"]?.stringValue })
            #expect(queryNames == expected[route, default: []], "\(route)")
        }
        let service = try #require(document.operation("GET", "/v1/status")?["parameters"]?.arrayValue?.first)
        #expect(service["schema"]?["type"] == .string("array"), "service is repeatable")
        #expect(service["explode"] == .bool(true))
    }

    @Test("marks InstanceStatus's optional fields nullable and every key required")
    func instanceStatusNulls() throws {
        let schema = try #require(document.schema(named: "InstanceStatus"))
        let properties = try #require(schema["properties"]?.objectValue)
        let required = Set(schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        #expect(required == Set(properties.keys))
        let nullable = Set(properties.filter { $0.value["nullable"] == .bool(true) }.map(\.key))
        #expect(nullable == ["pid", "port", "uptime_seconds", "cgroup", "reason", "cpu_seconds", "cpu_percent", "memory_bytes",
                             "health", "connections", "rps", "ejected_until", "container"])
    }
}
