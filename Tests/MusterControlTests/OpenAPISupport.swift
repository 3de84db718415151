import Foundation

/// A parsed JSON value. Integers and other numbers are kept apart so that `"type": "integer"`
/// can be checked, and booleans are never confused with numbers.
indirect enum JSONValue: Decodable, Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }

    var numberValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .number(let value): value
        default: nil
        }
    }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let flag): String(flag)
        case .integer(let value): String(value)
        case .number(let value): String(value)
        case .string(let text): "\"\(text)\""
        case .array(let items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .object(let members):
            "{" + members.keys.sorted().map { "\"\($0)\": \(members[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}

/// docs/api/openapi.json, and a small JSON-schema checker for the subset of OpenAPI 3.0 schema
/// objects the document uses. Anything outside that subset is reported as an error rather than
/// silently accepted, so a schema the checker cannot judge never passes by default.
struct OpenAPIDocument: Sendable {
    let root: JSONValue

    static let httpMethods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
    static let supportedKeywords: Set<String> = [
        "type", "properties", "required", "additionalProperties", "items", "enum", "nullable", "$ref",
        "description", "example", "format", "minimum", "maximum", "minItems", "default",
    ]

    /// The package root, found from this file's path: Tests/MusterControlTests/<file> → ../../
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var path: String { packageRoot.appendingPathComponent("docs/api/openapi.json").path }

    /// The document, parsed once for the whole test run: every route test checks against it,
    /// and parsing it for each (a quarter second in a debug build) kept the two cooperative
    /// threads busy long enough for the kernel tests' waits to run out.
    static func load() throws -> OpenAPIDocument {
        try parsed.get()
    }

    private static let parsed = Result { () throws -> OpenAPIDocument in
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return OpenAPIDocument(root: try JSONValue.parse(text))
    }

    /// "METHOD /path" for every operation in `paths`, path templates as written ({name}).
    var routes: Set<String> {
        var result: Set<String> = []
        for (path, item) in root["paths"]?.objectValue ?? [:] {
            for method in Self.httpMethods where item[method] != nil {
                result.insert("\(method.uppercased()) \(path)")
            }
        }
        return result
    }

    func operation(_ method: String, _ path: String) -> JSONValue? {
        root["paths"]?[path]?[method.lowercased()]
    }

    func schema(named name: String) -> JSONValue? {
        root["components"]?["schemas"]?[name]
    }

    /// Every problem of `value` against `schema`; empty when it conforms.
    func check(_ value: JSONValue, against schema: JSONValue, at path: String = "$") -> [String] {
        guard let keywords = schema.objectValue else { return ["\(path): the schema is not an object: \(schema)"] }
        if let reference = keywords["$ref"] {
            let prefix = "#/components/schemas/"
            guard let text = reference.stringValue, text.hasPrefix(prefix),
                  let target = self.schema(named: String(text.dropFirst(prefix.count))) else {
                return ["\(path): $ref \(reference) does not name a schema in components/schemas"]
            }
            return check(value, against: target, at: path)
        }
        var problems: [String] = []
        for keyword in keywords.keys where !Self.supportedKeywords.contains(keyword) {
            problems.append("\(path): the schema uses \"\(keyword)\", which this checker does not understand")
        }
        if value == .null {
            if keywords["nullable"]?.boolValue != true { problems.append("\(path): null where the schema does not allow it") }
            return problems
        }
        guard let type = keywords["type"]?.stringValue else {
            return problems + ["\(path): the schema has no type"]
        }
        switch (type, value) {
        case ("object", .object(let members)):
            let properties = keywords["properties"]?.objectValue ?? [:]
            for key in keywords["required"]?.arrayValue ?? [] {
                guard let name = key.stringValue else { problems.append("\(path): required holds \(key)"); continue }
                if members[name] == nil { problems.append("\(path): missing required key \"\(name)\"") }
            }
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                if let property = properties[key] {
                    problems += check(member, against: property, at: "\(path).\(key)")
                } else if let additional = keywords["additionalProperties"] {
                    if additional == .bool(false) {
                        problems.append("\(path): key \"\(key)\" is not in the schema (additionalProperties is false)")
                    } else if additional.objectValue != nil {
                        problems += check(member, against: additional, at: "\(path).\(key)")
                    }
                }
            }
        case ("array", .array(let items)):
            if let minimum = keywords["minItems"]?.numberValue, Double(items.count) < minimum {
                problems.append("\(path): \(items.count) item(s), fewer than minItems \(Int(minimum))")
            }
            if let itemSchema = keywords["items"] {
                for (index, item) in items.enumerated() {
                    problems += check(item, against: itemSchema, at: "\(path)[\(index)]")
                }
            } else {
                problems.append("\(path): an array schema without items")
            }
        case ("string", .string), ("boolean", .bool), ("number", .integer), ("number", .number), ("integer", .integer):
            break
        case ("integer", .number(let number)) where number == number.rounded():
            break
        default:
            problems.append("\(path): expected \(type), got \(value)")
            return problems
        }
        if let allowed = keywords["enum"]?.arrayValue, !allowed.contains(value) {
            problems.append("\(path): \(value) is not one of \(allowed)")
        }
        if let number = value.numberValue {
            if let minimum = keywords["minimum"]?.numberValue, number < minimum { problems.append("\(path): \(value) is below the minimum \(minimum)") }
            if let maximum = keywords["maximum"]?.numberValue, number > maximum { problems.append("\(path): \(value) is above the maximum \(maximum)") }
        }
        return problems
    }
}

/// "POST /v1/services/:name/scale" and "POST /v1/services/{name}/scale" alike become the latter.
func canonicalRoute(_ route: String) -> String {
    let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
    guard parts.count == 2 else { return route }
    let segments = parts[1].split(separator: "/", omittingEmptySubsequences: false).map { segment in
        segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
    }
    return parts[0].uppercased() + " " + segments.joined(separator: "/")
}
