import TOMLKit

/// A parsed TOML document as plain values, so validation never touches TOMLKit's classes and can
/// report types the way a person reads them.
public indirect enum TOMLNode: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLNode])
    case table([(key: String, value: TOMLNode)])
    case other(String)

    public static func == (lhs: TOMLNode, rhs: TOMLNode) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.integer(a), .integer(b)): a == b
        case let (.float(a), .float(b)): a == b
        case let (.boolean(a), .boolean(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.table(a), .table(b)): a.map(\.key) == b.map(\.key) && a.map(\.value) == b.map(\.value)
        case let (.other(a), .other(b)): a == b
        default: false
        }
    }

    /// What a person calls this kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .boolean: "a boolean"
        case .array: "an array"
        case .table: "a table"
        case .other(let name): name
        }
    }

    /// The value as TOML would spell it, for quoting in messages.
    public var rendered: String {
        switch self {
        case .string(let text): "\"\(text)\""
        case .integer(let value): String(value)
        case .float(let value): String(value)
        case .boolean(let value): String(value)
        case .array(let items): "[" + items.map(\.rendered).joined(separator: ", ") + "]"
        case .table(let entries): "{ " + entries.map { "\($0.key) = \($0.value.rendered)" }.joined(separator: ", ") + " }"
        case .other(let name): name
        }
    }
}

/// A TOML syntax error with its position.
public struct TOMLSyntaxError: Error, Sendable, Equatable {
    public var line: Int
    public var column: Int
    public var message: String
}

public enum TOMLDocument {
    /// Parses TOML text into ordered key/value pairs.
    /// - Throws: `TOMLSyntaxError` with line and column.
    public static func parse(_ text: String) throws(TOMLSyntaxError) -> [(key: String, value: TOMLNode)] {
        do {
            let table = try TOMLTable(string: text)
            guard case .table(let entries) = node(table.tomlValue) else { return [] }
            return entries
        } catch let error as TOMLParseError {
            throw TOMLSyntaxError(line: error.source.begin.line, column: error.source.begin.column, message: error.description)
        } catch {
            throw TOMLSyntaxError(line: 0, column: 0, message: "\(error)")
        }
    }

    private static func node(_ value: TOMLValue) -> TOMLNode {
        switch value.type {
        case .string: return .string(value.string ?? "")
        case .int: return .integer(value.int ?? 0)
        case .double: return .float(value.double ?? 0)
        case .bool: return .boolean(value.bool ?? false)
        case .array: return .array((value.array ?? TOMLArray()).map { node($0.tomlValue) })
        case .table:
            guard let table = value.table else { return .table([]) }
            // toml++ keeps keys sorted; that is fine for validation order.
            return .table(zip(table.keys, table.values).map { (key: $0.0, value: node($0.1)) })
        case .date: return .other("a date")
        case .time: return .other("a time")
        case .dateTime: return .other("a date-time")
        }
    }
}
