/// A parsed TOML document as plain values, so validation can report types the way a person reads them.
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
    /// Parses TOML text into ordered key/value pairs (keys in byte order, as toml++ kept them).
    ///
    /// This does not go through TOMLKit: TOMLKit 0.6.0 never frees its C++ `toml::table`s nor the
    /// buffers its accessors return, and musterd parses every manifest on each reload. See `TOMLParser`.
    /// - Throws: `TOMLSyntaxError` with line and column.
    public static func parse(_ text: String) throws(TOMLSyntaxError) -> [(key: String, value: TOMLNode)] {
        var parser = TOMLParser(text)
        return try parser.parseDocument()
    }
}
