/// `env_file`'s format, the common ground of systemd's `EnvironmentFile=` and docker's
/// `--env-file`: `KEY=value` a line, an optional `export ` before it, `#` comment lines and blank
/// lines. Values in single quotes are literal; in double quotes `\"`, `\\`, `\n` and `\$` are
/// escapes; both may span lines. An unquoted value is trimmed and ends at ` #`. CRLF is read as LF.
public enum EnvFile {
    /// A line that is not `KEY=value`, by its 1-based line number.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public init(line: Int, message: String) {
            self.line = line
            self.message = message
        }
        public var description: String { "\(line): \(message)" }
    }

    /// The variables in the order they are written; a key written twice appears twice (the later
    /// wins when they are merged).
    /// - Throws: the first malformed line.
    public static func parse(_ text: String) throws(Problem) -> [(key: String, value: String)] {
        var scanner = Scanner(Array(text.replacing("\r\n", with: "\n").unicodeScalars))
        var entries: [(key: String, value: String)] = []
        while !scanner.atEnd {
            let lineNumber = scanner.line
            scanner.skip { $0 == " " || $0 == "\t" }
            if scanner.atEnd { break }
            if scanner.peek == "\n" { scanner.advance(); continue }
            if scanner.peek == "#" { scanner.skipLine(); continue }
            let lineText = scanner.restOfLine
            var head = String(String.UnicodeScalarView(scanner.take { $0 != "=" && $0 != "\n" }))
            guard scanner.peek == "=" else {
                throw Problem(line: lineNumber, message: "\"\(lineText.trimmed)\" is not KEY=value")
            }
            scanner.advance()
            if head.hasPrefix("export ") || head.hasPrefix("export\t") { head = String(head.dropFirst(7)) }
            let key = head.trimmed
            guard isVariableName(key) else {
                throw Problem(line: lineNumber, message: "\"\(key)\" is not a variable name (letters, digits and _, not starting with a digit)")
            }
            let valueStart = scanner.index
            scanner.skip { $0 == " " || $0 == "\t" }
            let blankBeforeValue = scanner.index > valueStart
            let value: String
            switch scanner.peek {
            case "'":
                scanner.advance()
                let body = scanner.take { $0 != "'" }
                guard scanner.peek == "'" else { throw Problem(line: lineNumber, message: "\(key): the ' opened here is never closed") }
                scanner.advance()
                value = String(String.UnicodeScalarView(body))
            case "\"":
                scanner.advance()
                var body = String.UnicodeScalarView()
                var closed = false
                while let scalar = scanner.peek {
                    scanner.advance()
                    if scalar == "\"" { closed = true; break }
                    guard scalar == "\\", let next = scanner.peek else { body.append(scalar); continue }
                    switch next {
                    case "\"", "\\", "$": body.append(next); scanner.advance()
                    case "n": body.append("\n"); scanner.advance()
                    // Anything else keeps its backslash, as a shell would.
                    default: body.append(scalar)
                    }
                }
                guard closed else { throw Problem(line: lineNumber, message: "\(key): the \" opened here is never closed") }
                value = String(body)
            default:
                let raw = String(String.UnicodeScalarView(scanner.take { $0 != "\n" }))
                // `KEY= # note` is empty; `KEY=#1` is "#1".
                value = raw.droppingComment(startsAfterBlank: blankBeforeValue).trimmed
                scanner.skipLine()
                entries.append((key, value))
                continue
            }
            // After a closing quote: only blanks or a comment.
            let rest = String(String.UnicodeScalarView(scanner.take { $0 != "\n" })).trimmed
            if !rest.isEmpty && !rest.hasPrefix("#") {
                throw Problem(line: scanner.line, message: "\(key): unexpected \"\(rest)\" after the closing quote (quote the whole value)")
            }
            scanner.skipLine()
            entries.append((key, value))
        }
        return entries
    }

    /// A name a shell accepts: letters, digits and `_`, not starting with a digit.
    public static func isVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// Merges parsed files in order: a later file (and a later line) wins.
    public static func merge(_ files: [[(key: String, value: String)]]) -> [String: String] {
        var merged: [String: String] = [:]
        for entries in files {
            for (key, value) in entries { merged[key] = value }
        }
        return merged
    }

    private struct Scanner {
        let scalars: [Unicode.Scalar]
        var index = 0
        var line = 1
        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { index >= scalars.count }
        var peek: Unicode.Scalar? { atEnd ? nil : scalars[index] }
        var restOfLine: String {
            var end = index
            while end < scalars.count && scalars[end] != "\n" { end += 1 }
            return String(String.UnicodeScalarView(scalars[index..<end]))
        }

        mutating func advance() {
            if scalars[index] == "\n" { line += 1 }
            index += 1
        }

        mutating func take(while keep: (Unicode.Scalar) -> Bool) -> [Unicode.Scalar] {
            let start = index
            while let scalar = peek, keep(scalar) { advance() }
            return Array(scalars[start..<index])
        }

        mutating func skip(while keep: (Unicode.Scalar) -> Bool) { _ = take(while: keep) }

        /// Past the end of this line (its newline included).
        mutating func skipLine() {
            skip { $0 != "\n" }
            if !atEnd { advance() }
        }
    }
}

extension String {
    fileprivate var trimmed: String {
        let blanks: Set<Character> = [" ", "\t"]
        return String(drop { blanks.contains($0) }.reversed().drop { blanks.contains($0) }.reversed())
    }

    /// An unquoted value ends where ` #` (or a tab and `#`) starts a comment; `a#b` stays whole.
    fileprivate func droppingComment(startsAfterBlank: Bool) -> String {
        var previous: Character = startsAfterBlank ? " " : "="
        for (offset, character) in enumerated() {
            if character == "#" && (previous == " " || previous == "\t") { return String(prefix(offset)) }
            previous = character
        }
        return self
    }
}
