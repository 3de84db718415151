/// Reads one TOML table key by key, collecting every problem instead of stopping at the first,
/// and reporting the keys it was never asked about as unknown (with the nearest known key).
struct TableReader {
    let file: String
    let table: String?
    private let entries: [(key: String, value: TOMLNode)]
    private(set) var issues: [ManifestIssue] = []
    private var asked: [String] = []

    init(file: String, table: String?, entries: [(key: String, value: TOMLNode)]) {
        self.file = file
        self.table = table
        self.entries = entries
    }

    mutating func value(_ key: String) -> TOMLNode? {
        asked.append(key)
        return entries.first { $0.key == key }?.value
    }

    mutating func fail(_ key: String, _ value: TOMLNode?, _ message: String) {
        issues.append(ManifestIssue(file: file, table: table, key: key, value: value?.rendered, message: message))
    }

    /// Issues a nested reader found, as this table's.
    mutating func absorb(_ more: [ManifestIssue]) { issues += more }

    mutating func string(_ key: String, example: String) -> String? {
        guard let node = value(key) else { return nil }
        guard case .string(let text) = node else {
            fail(key, node, "expected a string, got \(node.kindName) (try \(key) = \(example))")
            return nil
        }
        return text
    }

    mutating func integer(_ key: String, example: String, range: ClosedRange<Int>) -> Int? {
        guard let node = value(key) else { return nil }
        guard case .integer(let number) = node else {
            fail(key, node, "expected an integer, got \(node.kindName) (try \(key) = \(example))")
            return nil
        }
        guard range.contains(number) else {
            fail(key, node, "must be between \(range.lowerBound) and \(range.upperBound) (try \(key) = \(example))")
            return nil
        }
        return number
    }

    mutating func number(_ key: String, example: String, minimum: Double) -> Double? {
        guard let node = value(key) else { return nil }
        let number: Double
        switch node {
        case .integer(let value): number = Double(value)
        case .float(let value): number = value
        default:
            fail(key, node, "expected a number, got \(node.kindName) (try \(key) = \(example))")
            return nil
        }
        guard number.isFinite, number >= minimum else {
            fail(key, node, "must be at least \(minimum == minimum.rounded() ? String(Int(minimum)) : String(minimum)) (try \(key) = \(example))")
            return nil
        }
        // Numbers become durations and rates; past this they would overflow them.
        guard number <= DurationText.maxSeconds else {
            fail(key, node, "must be at most 1e12 (try \(key) = \(example))")
            return nil
        }
        return number
    }

    mutating func boolean(_ key: String) -> Bool? {
        guard let node = value(key) else { return nil }
        guard case .boolean(let flag) = node else {
            fail(key, node, "expected true or false, got \(node.kindName)")
            return nil
        }
        return flag
    }

    mutating func stringArray(_ key: String, example: String) -> [String]? {
        guard let node = value(key) else { return nil }
        guard case .array(let items) = node else {
            fail(key, node, "expected an array of strings, got \(node.kindName) (try \(key) = \(example))")
            return nil
        }
        var strings: [String] = []
        for item in items {
            guard case .string(let text) = item else {
                fail(key, node, "expected an array of strings, but it holds \(item.kindName) (try \(key) = \(example))")
                return nil
            }
            strings.append(text)
        }
        return strings
    }

    mutating func duration(_ key: String, example: String) -> Duration? {
        guard let node = value(key) else { return nil }
        switch node {
        case .string(let text):
            if let duration = DurationText.parse(text) { return duration }
        case .integer(let seconds) where seconds >= 0 && Double(seconds) <= DurationText.maxSeconds:
            return .seconds(seconds)
        case .float(let seconds) where seconds >= 0 && seconds <= DurationText.maxSeconds:
            return .seconds(seconds)
        default:
            break
        }
        fail(key, node, "not a duration (try \(example), or 500ms, 1.5s, 2m)")
        return nil
    }

    mutating func size(_ key: String, example: String) -> UInt64? {
        guard let node = value(key) else { return nil }
        switch node {
        case .string(let text):
            if let bytes = ByteSize.parse(text) { return bytes }
        case .integer(let bytes) where bytes >= 0:
            return UInt64(bytes)
        default:
            break
        }
        fail(key, node, "not a size (try \(example))")
        return nil
    }

    mutating func subtable(_ key: String) -> [(key: String, value: TOMLNode)]? {
        guard let node = value(key) else { return nil }
        guard case .table(let entries) = node else {
            fail(key, node, "expected a table ([\(key)]), got \(node.kindName)")
            return nil
        }
        return entries
    }

    /// Reports every key that was present but never asked for.
    mutating func finish() {
        for entry in entries where !asked.contains(entry.key) {
            var message = "unknown key \"\(entry.key)\""
            if let near = Suggestions.nearest(to: entry.key, in: asked) { message += " (did you mean \"\(near)\"?)" }
            issues.append(ManifestIssue(file: file, table: table, key: nil, value: nil, message: message))
        }
    }
}

/// One problem in a manifest or the daemon config, phrased for the person who wrote the file:
/// `web.toml: [resources] memory_max = "12Q": not a size (try 256M or 1G)`.
public struct ManifestIssue: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var table: String?
    public var key: String?
    public var value: String?
    public var line: Int?
    public var column: Int?
    public var message: String

    public init(file: String, table: String? = nil, key: String? = nil, value: String? = nil,
                line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.table = table
        self.key = key
        self.value = value
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        text += ": "
        if let table { text += "[\(table)] " }
        if let key {
            text += key
            if let value { text += " = \(value)" }
            text += ": "
        }
        return text + message
    }
}

/// Every problem found in a set of files; nothing is applied while any exists.
public struct ManifestErrors: Error, Sendable, CustomStringConvertible {
    public var issues: [ManifestIssue]
    public init(_ issues: [ManifestIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
