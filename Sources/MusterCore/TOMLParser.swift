/// A TOML 1.0 reader that builds `TOMLNode`s directly.
///
/// musterd used TOMLKit 0.6.0 (a wrapper around the C++ toml++) until it showed that TOMLKit frees
/// nothing it allocates: `TOMLTable` has no `deinit`, so every `TOMLTable(string:)` leaks the whole
/// `new toml::table` tree, and its accessors leak the `malloc`/`strdup` buffers they return (`keys`,
/// `values`, `string`, `int`, ...). A daemon that re-reads every manifest on each `reload` grew by
/// about 20 KiB per reload. This reader owns only Swift values, so nothing outlives a parse.
///
/// It follows toml++ 3.4 (TOML 1.0, no unreleased features) wherever behaviour could differ, so
/// that files that loaded before still load and files that were refused are still refused:
/// the same rules for redefining tables (implicit tables made by `[a.b.c]` headers may be declared
/// once later, tables made by dotted keys may not; dotted keys may extend only tables made
/// implicitly or by dotted keys; inline tables are closed), keys kept in byte order, 64-bit
/// integers, seconds 0...59. Nesting is bounded (arrays, inline tables, dotted parts of a key) so
/// no input can exhaust the stack.
struct TOMLParser {
    /// Arrays and inline tables nested deeper than this are refused (toml++ stops at 256; a
    /// smaller limit keeps the recursion well inside a secondary thread's stack).
    static let maxDepth = 128

    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// Parses the whole text; the top-level keys come back in byte order.
    mutating func parseDocument() throws(TOMLSyntaxError) -> [(key: String, value: TOMLNode)] {
        let root = Table(.root)
        var current = root
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        while let byte = peek() {
            switch byte {
            case .space, .tab: index += 1
            case .lineFeed, .carriageReturn: try lineBreak()
            case .hash: try comment()
            case .openBracket:
                current = try tableHeader(root: root)
                try endOfLine()
            default:
                guard Self.startsKey(byte) else {
                    throw failure("expected a key, a [table] header or a comment, saw \(describe(index))")
                }
                try keyValue(into: current)
                try endOfLine()
            }
        }
        return root.entryNodes()
    }

    // MARK: - The tree under construction

    /// A table that may still grow. Inline tables become a plain `TOMLNode` once closed.
    private final class Table {
        enum Origin {
            case root
            /// Declared by a `[header]` or `[[header]]`.
            case explicit
            /// Made on the way to a deeper header (`[a.b.c]` makes `a` and `a.b`); may be declared once later.
            case implicit
            /// Made by a dotted key (`a.b = 1` makes `a`).
            case dotted
            /// An inline table still being read.
            case inline
        }

        var origin: Origin
        var entries: [[UInt8]: Entry] = [:]

        init(_ origin: Origin) {
            self.origin = origin
        }

        func entryNodes() -> [(key: String, value: TOMLNode)] {
            // toml++ keeps a std::map<std::string, ...>: byte order.
            entries.sorted { $0.key.lexicographicallyPrecedes($1.key) }
                .map { (key: String(decoding: $0.key, as: UTF8.self), value: $0.value.node) }
        }
    }

    private final class TableArray {
        var tables: [Table] = []
    }

    private enum Entry {
        /// Scalars, arrays and closed inline tables.
        case value(TOMLNode)
        case table(Table)
        case tables(TableArray)

        var node: TOMLNode {
            switch self {
            case .value(let node): node
            case .table(let table): .table(table.entryNodes())
            case .tables(let array): .array(array.tables.map { .table($0.entryNodes()) })
            }
        }

        /// What toml++ accepts among the children of an implicit table that a header declares.
        var isTableLike: Bool {
            switch self {
            case .table, .tables, .value(.table): true
            case .value(.array(let items)): !items.isEmpty && items.allSatisfy { if case .table = $0 { true } else { false } }
            case .value: false
            }
        }

        var kindName: String {
            switch self {
            case .value(let node): node.kindName
            case .table: "a table"
            case .tables: "an array of tables"
            }
        }
    }

    private struct KeySegment {
        var bytes: [UInt8]
        /// Where the segment starts and ends in the text, quotes included.
        var offset: Int
        var end: Int
    }

    // MARK: - Lines, comments, headers, key/value pairs

    private mutating func lineBreak() throws(TOMLSyntaxError) {
        if peek() == .lineFeed {
            index += 1
        } else if peek() == .carriageReturn, peek(1) == .lineFeed {
            index += 2
        } else {
            throw failure("a carriage return must be followed by a line feed")
        }
    }

    /// From `#` to the end of the line, not including the line break.
    private mutating func comment() throws(TOMLSyntaxError) {
        index += 1
        while let byte = peek(), byte != .lineFeed {
            if byte == .carriageReturn, peek(1) == .lineFeed { return }
            if Self.isControl(byte) {
                throw failure("control characters other than tab are not allowed in comments")
            }
            index += 1
        }
    }

    /// After a header or a key/value pair: only spaces, then a comment, a line break or the end.
    private mutating func endOfLine() throws(TOMLSyntaxError) {
        skipSpaces()
        if peek() == .hash { try comment() }
        guard peek() != nil else { return }
        guard peek() == .lineFeed || peek() == .carriageReturn else {
            throw failure("expected the end of the line or a comment, saw \(describe(index))")
        }
        try lineBreak()
    }

    private mutating func tableHeader(root: Table) throws(TOMLSyntaxError) -> Table {
        let start = index
        index += 1
        let isArray = peek() == .openBracket
        if isArray { index += 1 }
        skipSpaces()
        guard let first = peek(), Self.startsKey(first) else {
            throw failure(peek() == .closeBracket ? "a table header needs a name" : "expected a table name, saw \(describe(index))")
        }
        let nameStart = index
        let path = try key()
        let nameEnd = index
        var name: String { text(nameStart..<nameEnd).trimmingSpaces }
        guard peek() == .closeBracket, !isArray || peek(1) == .closeBracket else {
            throw failure("expected '\(isArray ? "]]" : "]")' after the table name, saw \(describe(index))")
        }
        index += isArray ? 2 : 1

        var parent = root
        for segment in path.dropLast() {
            switch parent.entries[segment.bytes] {
            case nil:
                let table = Table(.implicit)
                parent.entries[segment.bytes] = .table(table)
                parent = table
            case .table(let table):
                parent = table
            case .tables(let array):
                parent = array.tables[array.tables.count - 1]
            case .value(.table):
                throw failure("cannot add '\(name)' to an inline table; inline tables are complete as written", at: segment.offset)
            case .value(let node):
                throw failure("cannot use \(node.kindName) as a table in '\(name)'", at: segment.offset)
            }
        }
        let last = path[path.count - 1]
        switch parent.entries[last.bytes] {
        case nil:
            let table = Table(.explicit)
            if isArray {
                let array = TableArray()
                array.tables.append(table)
                parent.entries[last.bytes] = .tables(array)
            } else {
                parent.entries[last.bytes] = .table(table)
            }
            return table
        case .tables(let array) where isArray:
            let table = Table(.explicit)
            array.tables.append(table)
            return table
        case .table(let table) where !isArray && table.origin == .implicit && table.entries.values.allSatisfy(\.isTableLike):
            table.origin = .explicit
            return table
        case .table, .value(.table):
            throw failure(isArray ? "cannot redefine the table '\(name)' as an array of tables" : "the table '\(name)' is defined more than once", at: start)
        case let existing?:
            throw failure("cannot redefine \(existing.kindName) '\(name)' as \(isArray ? "an array of tables" : "a table")", at: start)
        }
    }

    private mutating func keyValue(into table: Table) throws(TOMLSyntaxError) {
        let keyStart = index
        let path = try key()
        let keyEnd = index
        var name: String { text(keyStart..<keyEnd).trimmingSpaces }
        guard peek() == .equals else {
            throw failure("expected '=' after the key '\(name)', saw \(describe(index))")
        }
        index += 1
        skipSpaces()
        guard let first = peek(), !Self.endsValue(first) else {
            throw failure("expected a value after '\(name) =', saw \(describe(index))")
        }
        var target = table
        for segment in path.dropLast() {
            switch target.entries[segment.bytes] {
            case nil:
                let child = Table(.dotted)
                target.entries[segment.bytes] = .table(child)
                target = child
            case .table(let child) where child.origin == .dotted || child.origin == .implicit:
                target = child
            case let existing?:
                let prefix = text(keyStart..<segment.end)
                let kind = switch existing {
                case .table: "a table declared with a [header]"
                case .value(.table): "an inline table"
                default: existing.kindName
                }
                throw failure("'\(prefix)' is already \(kind); the dotted key '\(name)' cannot add to it", at: segment.offset)
            }
        }
        let last = path[path.count - 1]
        if target.entries[last.bytes] != nil {
            throw failure("the key '\(name)' is defined more than once", at: keyStart)
        }
        target.entries[last.bytes] = .value(try value())
    }

    /// A bare, quoted or dotted key; stops after the spaces that follow it.
    private mutating func key() throws(TOMLSyntaxError) -> [KeySegment] {
        var segments: [KeySegment] = []
        while true {
            let offset = index
            guard let byte = peek() else { throw failure("expected a key, saw \(describe(index))") }
            let segment: [UInt8]
            if Self.isBareKey(byte) {
                while let next = peek(), Self.isBareKey(next) { index += 1 }
                segment = Array(bytes[offset..<index])
            } else if byte == .quote || byte == .apostrophe {
                if peek(1) == byte, peek(2) == byte {
                    throw failure("multi-line strings cannot be keys")
                }
                segment = byte == .quote ? try basicString() : try literalString()
            } else {
                throw failure("expected a key, saw \(describe(index))")
            }
            segments.append(KeySegment(bytes: segment, offset: offset, end: index))
            guard segments.count <= Self.maxDepth else {
                throw failure("a key has more than \(Self.maxDepth) dotted parts", at: offset)
            }
            skipSpaces()
            guard peek() == .dot else { return segments }
            index += 1
            skipSpaces()
        }
    }

    // MARK: - Values

    private mutating func value() throws(TOMLSyntaxError) -> TOMLNode {
        guard let byte = peek() else { throw failure("expected a value, saw the end of the file") }
        switch byte {
        case .quote:
            if peek(1) == .quote, peek(2) == .quote { return .string(String(decoding: try multiLineBasicString(), as: UTF8.self)) }
            return .string(String(decoding: try basicString(), as: UTF8.self))
        case .apostrophe:
            if peek(1) == .apostrophe, peek(2) == .apostrophe { return .string(String(decoding: try multiLineLiteralString(), as: UTF8.self)) }
            return .string(String(decoding: try literalString(), as: UTF8.self))
        case .openBracket:
            return try nested { (parser: inout TOMLParser) throws(TOMLSyntaxError) in try parser.array() }
        case .openBrace:
            return try nested { (parser: inout TOMLParser) throws(TOMLSyntaxError) in try parser.inlineTable() }
        default:
            if Self.isControl(byte) { throw failure("expected a value, saw \(describe(index))") }
            return try bareValue()
        }
    }

    private mutating func nested(_ body: (inout TOMLParser) throws(TOMLSyntaxError) -> TOMLNode) throws(TOMLSyntaxError) -> TOMLNode {
        guard depth < Self.maxDepth else {
            throw failure("arrays and inline tables are nested more than \(Self.maxDepth) deep")
        }
        depth += 1
        defer { depth -= 1 }
        return try body(&self)
    }

    /// Skips spaces, line breaks and comments between the items of an array.
    private mutating func skipArraySpace() throws(TOMLSyntaxError) {
        while let byte = peek() {
            switch byte {
            case .space, .tab: index += 1
            case .lineFeed, .carriageReturn: try lineBreak()
            case .hash: try comment()
            default: return
            }
        }
    }

    private mutating func array() throws(TOMLSyntaxError) -> TOMLNode {
        let start = index
        index += 1
        var items: [TOMLNode] = []
        while true {
            try skipArraySpace()
            guard let byte = peek() else { throw failure("this array has no closing ']'", at: start) }
            if byte == .closeBracket { index += 1; return .array(items) }
            if byte == .comma { throw failure("expected a value in the array, saw ','") }
            items.append(try value())
            try skipArraySpace()
            switch peek() {
            case .comma?: index += 1
            case .closeBracket?: index += 1; return .array(items)
            case nil: throw failure("this array has no closing ']'", at: start)
            default: throw failure("expected ',' or ']' in the array, saw \(describe(index))")
            }
        }
    }

    /// `{ a = 1, b.c = 2 }` on one line, no trailing comma (TOML 1.0).
    private mutating func inlineTable() throws(TOMLSyntaxError) -> TOMLNode {
        index += 1
        let table = Table(.inline)
        skipSpaces()
        if peek() == .closeBrace {
            index += 1
            return .table([])
        }
        while true {
            skipSpaces()
            guard let byte = peek(), Self.startsKey(byte) else {
                throw failure("expected a key in the inline table, saw \(describe(index))")
            }
            try keyValue(into: table)
            skipSpaces()
            switch peek() {
            case .comma?: index += 1
            case .closeBrace?:
                index += 1
                return .table(table.entryNodes())
            default:
                throw failure("expected ',' or '}' in the inline table (inline tables stay on one line), saw \(describe(index))")
            }
        }
    }

    // MARK: Strings

    /// `"..."`; returns the UTF-8 of the content.
    private mutating func basicString() throws(TOMLSyntaxError) -> [UInt8] {
        let start = index
        index += 1
        var out: [UInt8] = []
        while true {
            guard let byte = peek(), byte != .lineFeed, byte != .carriageReturn else {
                throw failure("this string is not closed on its line", at: start)
            }
            switch byte {
            case .quote:
                index += 1
                return out
            case .backslash:
                try escape(into: &out)
            default:
                if Self.isControl(byte) { throw failure("control characters other than tab are not allowed in strings; write them as escapes") }
                let run = index
                index += 1
                while let next = peek(), next != .quote, next != .backslash, !Self.isControl(next) { index += 1 }
                out.append(contentsOf: bytes[run..<index])
            }
        }
    }

    /// `"""..."""`: a line break right after the opening quotes is dropped; a backslash at the end of
    /// a line drops it and the whitespace that follows.
    private mutating func multiLineBasicString() throws(TOMLSyntaxError) -> [UInt8] {
        let start = index
        index += 3
        try skipFirstLineBreak()
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else { throw failure("this multi-line string is not closed", at: start) }
            switch byte {
            case .quote:
                if try closeMultiLine(.quote, into: &out) { return out }
            case .backslash:
                var ahead = index + 1
                while ahead < bytes.count, bytes[ahead] == .space || bytes[ahead] == .tab { ahead += 1 }
                if ahead < bytes.count, bytes[ahead] == .lineFeed || bytes[ahead] == .carriageReturn {
                    index = ahead
                    // toml++ also drops the Unicode spaces it knows (U+00A0, U+3000, ...) here.
                    while let next = peek() {
                        if next == .space || next == .tab {
                            index += 1
                        } else if next == .lineFeed || next == .carriageReturn {
                            try lineBreak()
                        } else if let length = unicodeSpaceLength() {
                            index += length
                        } else {
                            break
                        }
                    }
                } else {
                    try escape(into: &out)
                }
            case .lineFeed, .carriageReturn:
                // toml++ stores every line break as "\n".
                try lineBreak()
                out.append(.lineFeed)
            default:
                if Self.isControl(byte) { throw failure("control characters other than tab are not allowed in strings; write them as escapes") }
                out.append(byte)
                index += 1
            }
        }
    }

    /// `'...'`: no escapes.
    private mutating func literalString() throws(TOMLSyntaxError) -> [UInt8] {
        let start = index
        index += 1
        let contentStart = index
        while true {
            guard let byte = peek(), byte != .lineFeed, byte != .carriageReturn else {
                throw failure("this string is not closed on its line", at: start)
            }
            if byte == .apostrophe {
                index += 1
                return Array(bytes[contentStart..<(index - 1)])
            }
            if Self.isControl(byte) { throw failure("control characters other than tab are not allowed in literal strings") }
            index += 1
        }
    }

    private mutating func multiLineLiteralString() throws(TOMLSyntaxError) -> [UInt8] {
        let start = index
        index += 3
        try skipFirstLineBreak()
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else { throw failure("this multi-line string is not closed", at: start) }
            switch byte {
            case .apostrophe:
                if try closeMultiLine(.apostrophe, into: &out) { return out }
            case .lineFeed, .carriageReturn:
                // toml++ stores every line break as "\n".
                try lineBreak()
                out.append(.lineFeed)
            default:
                if Self.isControl(byte) { throw failure("control characters other than tab are not allowed in literal strings") }
                out.append(byte)
                index += 1
            }
        }
    }

    private mutating func skipFirstLineBreak() throws(TOMLSyntaxError) {
        if peek() == .lineFeed || peek() == .carriageReturn { try lineBreak() }
    }

    /// At a run of `quote`s inside a multi-line string: fewer than three are content; three to
    /// five close the string, the extra one or two being content; more is an error.
    private mutating func closeMultiLine(_ quote: UInt8, into out: inout [UInt8]) throws(TOMLSyntaxError) -> Bool {
        var run = 0
        while peek(run) == quote { run += 1 }
        if run < 3 {
            out.append(contentsOf: repeatElement(quote, count: run))
            index += run
            return false
        }
        if run > 5 { throw failure("too many quotes at the end of a multi-line string", at: index + 5) }
        out.append(contentsOf: repeatElement(quote, count: run - 3))
        index += run
        return true
    }

    private mutating func escape(into out: inout [UInt8]) throws(TOMLSyntaxError) {
        let start = index
        index += 1
        guard let byte = peek() else { throw failure("unterminated string") }
        index += 1
        switch byte {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case .quote: out.append(.quote)
        case .backslash: out.append(.backslash)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = byte == UInt8(ascii: "u") ? 4 : 8
            var code: UInt32 = 0
            for _ in 0..<count {
                guard let digit = peek().flatMap(Self.hexValue) else {
                    throw failure("\\\(Character(Unicode.Scalar(byte))) needs \(count) hexadecimal digits", at: start)
                }
                code = code << 4 | UInt32(digit)
                index += 1
            }
            guard let scalar = Unicode.Scalar(code) else {
                throw failure("\(text(start..<index)) is not a Unicode scalar value", at: start)
            }
            UTF8.encode(scalar) { out.append($0) }
        default:
            throw failure("unknown escape \(text(start..<index)) (use \\\\ for a backslash)", at: start)
        }
    }

    // MARK: Booleans, numbers, dates and times

    /// Anything that is not a string, array or inline table: read up to the next terminator, then
    /// decide what it is.
    private mutating func bareValue() throws(TOMLSyntaxError) -> TOMLNode {
        let start = index
        while let byte = peek(), !Self.endsValue(byte) { index += 1 }
        // A date and a time may be separated by one space: "1979-05-27 07:32:00".
        if index - start == 10, Self.isDate(bytes[start..<index]), peek() == .space,
           let next = peek(1), Self.isDigit(next) {
            index += 1
            while let byte = peek(), !Self.endsValue(byte) { index += 1 }
        }
        let token = bytes[start..<index]
        var written: String { text(start..<index) }
        func invalid(_ why: String) -> TOMLSyntaxError {
            failure("'\(written)' is not a valid value: \(why)", at: start)
        }
        if let first = token.first, !Self.isDigit(first) {
            for (word, node) in Self.words where token.elementsEqual(word.utf8) { return node }
        }
        if token.count >= 10, Self.isDate(token.prefix(10)) {
            guard let kind = Self.dateKind(token) else { throw invalid("not a date or date-time (write 1979-05-27 or 1979-05-27T07:32:00Z)") }
            return .other(kind)
        }
        if token.count >= 5, token.dropFirst(2).first == .colon {
            guard Self.timeLength(token[...]) == token.count else { throw invalid("not a time (write 07:32:00)") }
            return .other("a time")
        }
        if let number = Self.number(token) { return number }
        let first = bytes[start]
        if Self.isDigit(first) || first == .plus || first == .minus || first == .dot {
            throw invalid("not a number TOML can read (write 42, -7, 0x2A, 1.5, 1e6 or inf)")
        }
        if Self.isBareKey(first) {
            throw failure("'\(written)' is not a value; strings need quotes (try \"\(written)\")", at: start)
        }
        throw failure("expected a value, saw \(describe(start))", at: start)
    }

    private static let words: [(String, TOMLNode)] = [
        ("true", .boolean(true)), ("false", .boolean(false)), ("inf", .float(.infinity)), ("+inf", .float(.infinity)),
        ("-inf", .float(-.infinity)), ("nan", .float(.nan)), ("+nan", .float(.nan)), ("-nan", .float(-.nan)),
    ]

    /// An integer (decimal, 0x, 0o, 0b) or a float, or nil.
    private static func number(_ token: ArraySlice<UInt8>) -> TOMLNode? {
        var body = token
        var negative = false
        if let sign = body.first, sign == .plus || sign == .minus {
            negative = sign == .minus
            body = body.dropFirst()
        }
        if body.count > 2, body.first == UInt8(ascii: "0") {
            let radix: Int? = switch body[body.startIndex + 1] {
            case UInt8(ascii: "x"): 16
            case UInt8(ascii: "o"): 8
            case UInt8(ascii: "b"): 2
            default: nil
            }
            if let radix {
                // No sign before a prefixed integer.
                guard body.count == token.count, let digits = digitsWithUnderscores(body.dropFirst(2), radix: radix) else { return nil }
                return Int(String(decoding: digits, as: UTF8.self), radix: radix).map(TOMLNode.integer)
            }
        }
        // Decimal: integer part, optional fraction, optional exponent.
        let exponentAt = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        let dotAt = body.firstIndex(of: .dot)
        let integerEnd = dotAt ?? exponentAt ?? body.endIndex
        guard let integerDigits = digitsWithUnderscores(body[body.startIndex..<integerEnd], radix: 10) else { return nil }
        if integerDigits.count > 1, integerDigits.first == UInt8(ascii: "0") { return nil }
        var cleaned: [UInt8] = negative ? [.minus] : []
        cleaned += integerDigits
        if dotAt == nil, exponentAt == nil {
            return Int(String(decoding: cleaned, as: UTF8.self)).map(TOMLNode.integer)
        }
        if let dotAt {
            if let exponentAt, exponentAt < dotAt { return nil }
            guard let fraction = digitsWithUnderscores(body[(dotAt + 1)..<(exponentAt ?? body.endIndex)], radix: 10) else { return nil }
            cleaned += [.dot] + fraction
        }
        if let exponentAt {
            var exponent = body[(exponentAt + 1)...]
            cleaned.append(UInt8(ascii: "e"))
            if let sign = exponent.first, sign == .plus || sign == .minus {
                cleaned.append(sign)
                exponent = exponent.dropFirst()
            }
            guard let digits = digitsWithUnderscores(exponent, radix: 10) else { return nil }
            cleaned += digits
        }
        guard let value = Double(String(decoding: cleaned, as: UTF8.self)), value.isFinite else { return nil }
        return .float(value)
    }

    /// The digits with the underscores removed, if every underscore sits between two digits.
    private static func digitsWithUnderscores(_ text: ArraySlice<UInt8>, radix: Int) -> [UInt8]? {
        var digits: [UInt8] = []
        var previousWasDigit = false
        for byte in text {
            if byte == .underscore {
                guard previousWasDigit else { return nil }
                previousWasDigit = false
            } else {
                guard let value = hexValue(byte), value < radix, radix == 16 || isDigit(byte) else { return nil }
                digits.append(byte)
                previousWasDigit = true
            }
        }
        return previousWasDigit ? digits : nil
    }

    /// "a date" for `YYYY-MM-DD`, "a date-time" for a date, `T`/`t`/space, a time and an optional
    /// offset (`Z`, `z` or `+HH:MM`), nil otherwise.
    private static func dateKind(_ token: ArraySlice<UInt8>) -> String? {
        let start = token.startIndex
        guard validDate(token.prefix(10)) else { return nil }
        if token.count == 10 { return "a date" }
        let separator = token[start + 10]
        guard separator == UInt8(ascii: "T") || separator == UInt8(ascii: "t") || separator == .space,
              let timeLength = timeLength(token[(start + 11)...]) else { return nil }
        let offset = token[(start + 11 + timeLength)...]
        if offset.isEmpty || offset.elementsEqual([UInt8(ascii: "Z")]) || offset.elementsEqual([UInt8(ascii: "z")]) { return "a date-time" }
        guard offset.count == 6, offset.first == .plus || offset.first == .minus,
              let hours = twoDigits(offset, at: offset.startIndex + 1), hours <= 23, offset[offset.startIndex + 3] == .colon,
              let minutes = twoDigits(offset, at: offset.startIndex + 4), minutes <= 59 else { return nil }
        return "a date-time"
    }

    /// `DDDD-DD-DD` by shape only.
    private static func isDate(_ text: ArraySlice<UInt8>) -> Bool {
        guard text.count == 10 else { return false }
        for (offset, byte) in text.enumerated() where !(offset == 4 || offset == 7 ? byte == .minus : isDigit(byte)) {
            return false
        }
        return true
    }

    private static func validDate(_ text: ArraySlice<UInt8>) -> Bool {
        let start = text.startIndex
        guard isDate(text), let high = twoDigits(text, at: start), let low = twoDigits(text, at: start + 2),
              let month = twoDigits(text, at: start + 5), let day = twoDigits(text, at: start + 8) else { return false }
        let year = high * 100 + low
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = switch month {
        case 2: leap ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
        return (1...12).contains(month) && (1...days).contains(day)
    }

    /// The length of the `HH:MM:SS[.fraction]` at the start of `text`, or nil.
    private static func timeLength(_ text: ArraySlice<UInt8>) -> Int? {
        let start = text.startIndex
        guard text.count >= 8, let hour = twoDigits(text, at: start), hour <= 23, text[start + 2] == .colon,
              let minute = twoDigits(text, at: start + 3), minute <= 59, text[start + 5] == .colon,
              let second = twoDigits(text, at: start + 6), second <= 59 else { return nil }
        guard text.count > 8, text[start + 8] == .dot else { return 8 }
        var end = start + 9
        while end < text.endIndex, isDigit(text[end]) { end += 1 }
        // toml++ reads at most 64 fractional digits.
        guard end > start + 9, end - (start + 9) <= 64 else { return nil }
        return end - start
    }

    private static func twoDigits(_ text: ArraySlice<UInt8>, at position: Int) -> Int? {
        guard position + 1 < text.endIndex, isDigit(text[position]), isDigit(text[position + 1]) else { return nil }
        return Int(text[position] - UInt8(ascii: "0")) * 10 + Int(text[position + 1] - UInt8(ascii: "0"))
    }

    // MARK: - Characters

    private func peek(_ ahead: Int = 0) -> UInt8? {
        index + ahead < bytes.count ? bytes[index + ahead] : nil
    }

    /// The UTF-8 length of the non-ASCII horizontal space at `index` (toml++'s list), or nil.
    private func unicodeSpaceLength() -> Int? {
        guard let lead = peek(), lead >= 0xC2 else { return nil }
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
        guard index + length <= bytes.count else { return nil }
        var value = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for offset in 1..<length { value = value << 6 | UInt32(bytes[index + offset] & 0x3F) }
        switch value {
        case 0xA0, 0x1680, 0x180E, 0x2000...0x200B, 0x202F, 0x205F...0x2060, 0x3000, 0xFEFF: return length
        default: return nil
        }
    }

    private mutating func skipSpaces() {
        while let byte = peek(), byte == .space || byte == .tab { index += 1 }
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A")) + 10
        default: nil
        }
    }

    private static func isBareKey(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), .minus, .underscore: true
        default: false
        }
    }

    private static func startsKey(_ byte: UInt8) -> Bool {
        isBareKey(byte) || byte == .quote || byte == .apostrophe
    }

    /// Control characters TOML refuses in strings and comments (tab is allowed).
    private static func isControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != .tab) || byte == 0x7F
    }

    /// What ends a bare value: whitespace, a line break, `,`, `]`, `}` or `#`.
    private static func endsValue(_ byte: UInt8) -> Bool {
        switch byte {
        case .space, .tab, .lineFeed, .carriageReturn, .comma, .closeBracket, .closeBrace, .hash: true
        default: false
        }
    }

    // MARK: - Errors

    private func text(_ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    /// Line and column (counted in characters), both from 1, of a byte offset.
    private func position(_ offset: Int) -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        for i in 0..<min(offset, bytes.count) where bytes[i] == .lineFeed {
            line += 1
            lineStart = i + 1
        }
        var column = 1
        for i in lineStart..<min(offset, bytes.count) where bytes[i] & 0xC0 != 0x80 { column += 1 }
        return (line, column)
    }

    private func describe(_ offset: Int) -> String {
        guard offset < bytes.count else { return "the end of the file" }
        switch bytes[offset] {
        case .lineFeed, .carriageReturn: return "the end of the line"
        case let byte where byte < 0x20 || byte == 0x7F: return "a control character"
        default:
            var end = offset + 1
            while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
            return "'\(text(offset..<end))'"
        }
    }

    private func failure(_ message: String, at offset: Int? = nil) -> TOMLSyntaxError {
        let where_ = position(offset ?? index)
        return TOMLSyntaxError(line: where_.line, column: where_.column, message: message)
    }
}

private extension String {
    var trimmingSpaces: String {
        var text = Substring(self)
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}

private extension UInt8 {
    static let tab = UInt8(ascii: "\t")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let hash = UInt8(ascii: "#")
    static let apostrophe = UInt8(ascii: "'")
    static let plus = UInt8(ascii: "+")
    static let comma = UInt8(ascii: ",")
    static let minus = UInt8(ascii: "-")
    static let dot = UInt8(ascii: ".")
    static let colon = UInt8(ascii: ":")
    static let equals = UInt8(ascii: "=")
    static let openBracket = UInt8(ascii: "[")
    static let backslash = UInt8(ascii: "\\")
    static let closeBracket = UInt8(ascii: "]")
    static let underscore = UInt8(ascii: "_")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
}
