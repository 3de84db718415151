/// An INI file read by supervisord's rules (Python's `RawConfigParser` as supervisord sets it up):
/// `[section]` headers; `key = value` or `key: value`, keys lowercased; whole-line comments start
/// with `;` or `#`; inline comments start with `;` or `#` after whitespace; a line indented more
/// than its option continues that option's value (joined with a newline); `%(here)s` is the
/// folder of the file that holds it.
public struct INISection: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
        public var line: Int
    }
    public var name: String
    public var file: String
    public var line: Int
    public var entries: [Entry] = []

    public func value(_ key: String) -> String? { entries.last { $0.key == key }?.value }
    public func line(of key: String) -> Int { entries.last { $0.key == key }?.line ?? line }
    public var origin: String { "\(file):\(line)" }
}

public enum INIFile {
    public static func parse(_ text: String, file: String, here: String) throws(MigrationError) -> [INISection] {
        var sections: [INISection] = []
        var current: INISection?
        var optionIndent = 0
        var valueLines: [String]?
        var pendingKey: (String, Int)?

        func flush() {
            guard let (key, line) = pendingKey, var lines = valueLines else { return }
            while let last = lines.last, last.isEmpty { lines.removeLast() }
            let value = lines.joined(separator: "\n").replacing("%(here)s", with: here)
            current?.entries.append(.init(key: key, value: value, line: line))
            pendingKey = nil
            valueLines = nil
        }

        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (offset, rawLine) in lines.enumerated() {
            let number = offset + 1
            var line = String(rawLine)
            if line.hasSuffix("\r") { line.removeLast() }
            let stripped = line.trimmingWhitespace()
            if stripped.hasPrefix("#") || stripped.hasPrefix(";") { continue }
            let content = stripInlineComment(line)
            let indent = line.prefix { $0 == " " || $0 == "\t" }.count
            if content.trimmingWhitespace().isEmpty {
                // Blank lines may sit inside a multi-line value; trailing ones are dropped.
                if valueLines != nil { valueLines?.append("") }
                continue
            }
            if valueLines != nil, indent > optionIndent {
                valueLines?.append(content.trimmingWhitespace())
                continue
            }
            flush()
            let body = content.trimmingWhitespace()
            if body.hasPrefix("[") {
                guard let close = body.firstIndex(of: "]") else {
                    throw MigrationError("\(file):\(number): section header without ]: \(body)")
                }
                if let section = current { sections.append(section) }
                let name = String(body[body.index(after: body.startIndex)..<close])
                current = INISection(name: name, file: file, line: number)
                continue
            }
            guard current != nil else {
                throw MigrationError("\(file):\(number): \(body) comes before any [section] header")
            }
            let delimiter = body.firstIndex { $0 == "=" || $0 == ":" }
            guard let delimiter else {
                throw MigrationError("\(file):\(number): expected key = value, found \(body)")
            }
            let key = String(body[..<delimiter]).trimmingWhitespace().lowercased()
            let value = String(body[body.index(after: delimiter)...]).trimmingWhitespace()
            pendingKey = (key, number)
            valueLines = [value]
            optionIndent = indent
        }
        flush()
        if let section = current { sections.append(section) }
        return sections
    }

    /// Cuts at the first `;` or `#` that follows whitespace.
    static func stripInlineComment(_ line: String) -> String {
        var previous: Character = "x"
        var index = line.startIndex
        while index < line.endIndex {
            let char = line[index]
            if (char == ";" || char == "#"), previous == " " || previous == "\t" {
                return String(line[..<index])
            }
            previous = char
            index = line.index(after: index)
        }
        return line
    }
}
