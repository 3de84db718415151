import ArgumentParser
import FoundationEssentials
import Glibc

/// With no arguments: a prompt that takes the same commands, as supervisorctl does.
struct Interactive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shell", abstract: "Read commands from a prompt (the default with no arguments).")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let interactive = isatty(0) == 1
        if interactive { Output.line("musterctl: type a command (status, start web, logs web:0, help), or quit") }
        while true {
            if interactive {
                Output.raw("muster> ".utf8)
            }
            guard let line = readLine() else { break }
            var words = Self.split(line)
            guard let first = words.first else { continue }
            if ["quit", "exit"].contains(first) { break }
            if first == "help" { words = ["help"] + words.dropFirst() }
            if first == "shell" { continue }
            if let socket = connection.socket, !words.contains("--socket"), words.first != "help", words.first != "check" {
                words += ["--socket", socket]
            }
            _ = await runCommandLine(words)
        }
    }

    /// Splits like a shell would for simple input: whitespace, single and double quotes.
    static func split(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quote: Character?
        var inWord = false
        for char in line {
            if let q = quote {
                if char == q { quote = nil } else { current.append(char) }
            } else if char == "'" || char == "\"" {
                quote = char
                inWord = true
            } else if char.isWhitespace {
                if inWord { words.append(current); current = ""; inWord = false }
            } else {
                current.append(char)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
