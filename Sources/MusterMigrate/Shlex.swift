/// Python's `shlex`, the two ways supervisord uses it.
public enum Shlex {
    /// `shlex.split(text)` (POSIX mode, no comments), as supervisord splits `command`: whitespace
    /// separates words; `'…'` is literal; in `"…"` a backslash escapes only `"` and `\`; outside
    /// quotes a backslash escapes any character; quoted parts join the word around them.
    public static func split(_ text: String) throws(MigrationError) -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var chars = Array(text)
        chars.append(" ")
        var index = 0
        while index < chars.count {
            let char = chars[index]
            switch char {
            case " ", "\t", "\n", "\r":
                if inWord { words.append(word); word = ""; inWord = false }
            case "'":
                inWord = true
                index += 1
                while index < chars.count - 1, chars[index] != "'" { word.append(chars[index]); index += 1 }
                if index >= chars.count - 1 { throw MigrationError("no closing quotation (') in \(text)") }
            case "\"":
                inWord = true
                index += 1
                while index < chars.count - 1, chars[index] != "\"" {
                    if chars[index] == "\\", index + 1 < chars.count - 1, chars[index + 1] == "\"" || chars[index + 1] == "\\" {
                        index += 1
                    }
                    word.append(chars[index])
                    index += 1
                }
                if index >= chars.count - 1 { throw MigrationError("no closing quotation (\") in \(text)") }
            case "\\":
                inWord = true
                if index + 1 >= chars.count - 1 { throw MigrationError("no escaped character after the final \\ in \(text)") }
                index += 1
                if chars[index] != "\n" { word.append(chars[index]) }
            default:
                inWord = true
                word.append(char)
            }
            index += 1
        }
        return words
    }

    /// supervisord's `dict_of_key_value_pairs`: `KEY="val",KEY2=val2`, tokenized by a non-POSIX
    /// `shlex` whose word characters add `/.+-():`; quotes around a value are removed, `#` starts
    /// a comment. Anything that is not `KEY = VALUE` triples separated by commas is an error
    /// (supervisord refuses it too, or worse, drops words).
    public static func keyValuePairs(_ text: String) throws(MigrationError) -> [(String, String)] {
        var tokens: [String] = []
        let chars = Array(text)
        var index = 0
        func isWordChar(_ char: Character) -> Bool {
            if char.isASCII { return char.isLetter || char.isNumber || "_/.+-():".contains(char) }
            return char.isLetter
        }
        while index < chars.count {
            let char = chars[index]
            if char.isWhitespace { index += 1; continue }
            if char == "#" {
                while index < chars.count, chars[index] != "\n" { index += 1 }
                continue
            }
            if char == "\"" || char == "'" {
                var token = String(char)
                index += 1
                while index < chars.count, chars[index] != char { token.append(chars[index]); index += 1 }
                if index >= chars.count { throw MigrationError("no closing quotation (\(char)) in environment=\(text)") }
                token.append(char)
                index += 1
                tokens.append(token)
                continue
            }
            if isWordChar(char) {
                var token = ""
                while index < chars.count, isWordChar(chars[index]) { token.append(chars[index]); index += 1 }
                tokens.append(token)
                continue
            }
            tokens.append(String(char))
            index += 1
        }
        var pairs: [(String, String)] = []
        var position = 0
        while position < tokens.count {
            guard position + 2 < tokens.count, tokens[position + 1] == "=" else {
                throw MigrationError("environment=\(text) is not KEY=value pairs separated by commas near \"\(tokens[position...].prefix(3).joined(separator: " "))\"; quote values holding other characters (KEY=\"a b\")")
            }
            var value = tokens[position + 2]
            if value.count >= 2, value.first == "\"" || value.first == "'" { value = String(value.dropFirst().dropLast()) }
            pairs.append((tokens[position], value))
            if position + 3 < tokens.count, tokens[position + 3] != "," {
                throw MigrationError("environment=\(text): expected a comma after \(tokens[position])=\(tokens[position + 2]), found \"\(tokens[position + 3])\"; quote values holding spaces or other characters")
            }
            position += 4
        }
        return pairs
    }
}
