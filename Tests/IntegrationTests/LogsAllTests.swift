import Foundation
import Testing

/// `musterctl logs` with no service: every service's lines in time order, prefixed.
@Suite("musterctl logs for every service", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct LogsAllTests {
    /// Takes turns with its partner through marker files in MARK, so the order the lines are
    /// written in is known: ping 1, pong 1, ping 2, … whatever the scheduler does.
    static func turnTaker(_ me: String, waitsFor other: String, first: Bool) -> String {
        let wait = "until [ -e \"$MARK/\(other)$i\" ]; do sleep 0.02; done; sleep 0.1"
        let script = "for i in 1 2 3; do " + (first ? "" : wait + "; ") + "echo \(me) $i; touch \"$MARK/\(me)$i\"; "
            + (first ? wait + "; " : "") + "done; exec sleep 100000"
        return """
            command = ["/bin/sh", "-c", "\(script.replacingOccurrences(of: "\"", with: "\\\""))"]
            [restart]
            start_seconds = 0.3
            [stop]
            timeout = "2s"
            """
    }

    @Test func interleavesEveryServiceInTimeOrderWithPrefixesAndFollows() async throws {
        let journal = "command = [\"/bin/sleep\", \"100000\"]\ninstances = 0\n[logs]\ntarget = \"journal\"\n"
        try await DaemonHarness.with(services: [:]) { d in
            let mark = d.directory.appendingPathComponent("marks").path
            try FileManager.default.createDirectory(atPath: mark, withIntermediateDirectories: true)
            try d.write(service: "ping", Self.turnTaker("ping", waitsFor: "pong", first: true) + "\n[environment]\nMARK = \"\(mark)\"\n")
            try d.write(service: "pong", Self.turnTaker("pong", waitsFor: "ping", first: false) + "\n[environment]\nMARK = \"\(mark)\"\n")
            try d.write(service: "quiet", journal)
            try await d.start()

            let note = "note: quiet logs to the journal ([logs] target = \"journal\"), not shown here: journalctl -t muster/quiet/0 (one -t per instance)"
            let expected = ["ping.0", "pong.0", "ping.0", "pong.0", "ping.0", "pong.0"]
            let texts = ["ping 1", "pong 1", "ping 2", "pong 2", "ping 3", "pong 3"]
            func shape(_ output: String) -> [String] {
                // "ping.0 | 2026-…Z stdout ping 1" → "ping.0 ping 1"
                output.split(separator: "\n").dropFirst().map { line in
                    let parts = line.split(separator: " ", maxSplits: 4)
                    return parts.count == 5 && parts[1] == "|" && parts[3] == "stdout" ? "\(parts[0]) \(parts[4])" : "bad line: \(line)"
                }
            }
            let wanted = zip(expected, texts).map { "\($0) \($1)" }
            let allSix = await eventually(20) { shape(d.ctl("logs").stdout) == wanted }
            let every = d.ctl("logs")
            #expect(allSix, "got:\n\(every.stdout)\(every.stderr)")
            #expect(every.stdout.hasPrefix(note + "\n"))
            #expect(!every.stdout.contains("\u{1B}["), "no colour when stdout is not a terminal")
            // On a terminal (script(1) gives it one): the prefix coloured, the same colour for
            // every line of a service.
            let onTerminal = d.run("/usr/bin/script", ["-qec", "\(DaemonHarness.binDir)/musterctl logs --socket \(d.socket)", "/dev/null"])
            // A terminal ends lines with CRLF, which Swift reads as one Character.
            let colouredPrefixes = onTerminal.stdout.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n").dropFirst().map { line in
                String(line.prefix { $0 != "|" })
            }
            #expect(colouredPrefixes.count == 6, "\(onTerminal.stdout)")
            #expect(Set(colouredPrefixes).count == 2, "one colour per service: \(colouredPrefixes)")
            let escaped = colouredPrefixes.allSatisfy { $0.hasPrefix("\u{1B}[") && ($0.contains("ping.0") || $0.contains("pong.0")) }
            #expect(escaped, "\(colouredPrefixes)")
            let stamped = every.stdout.range(of: #"\nping\.0 \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stdout ping 1\n"#, options: .regularExpression)
            #expect(stamped != nil, "\(every.stdout)")

            #expect(shape(d.ctl("logs", "--all", "-n", "2").stdout) == Array(wanted.suffix(2)))
            #expect(shape(d.ctl("logs", "--since", "10m").stdout) == wanted)
            #expect(d.ctl("logs", "--since", "0s").stdout == note + "\n", "nothing is newer than now")
            let both = d.ctl("logs", "--all", "ping")
            #expect(both.code != 0)
            #expect(both.stderr.contains("not both"))

            // Following: a restarted ping prints again (its partner's markers are all there).
            let follower = Process()
            follower.executableURL = URL(fileURLWithPath: DaemonHarness.binDir + "/musterctl")
            follower.arguments = ["logs", "-f", "-n", "0", "--socket", d.socket]
            let out = Pipe()
            follower.standardOutput = out
            follower.standardError = FileHandle.nullDevice
            let collected = Locked("")
            out.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                collected.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
            try follower.run()
            defer {
                if follower.isRunning { kill(follower.processIdentifier, SIGKILL) }
                follower.waitUntilExit()
                out.fileHandleForReading.readabilityHandler = nil
            }
            let noted = await eventually(10) { collected.value == note + "\n" }
            #expect(noted, "follow starts with the note and no old lines: \(collected.value)")
            #expect(d.ctl("restart", "ping").code == 0)
            let followed = await eventually(20) { shape(collected.value) == ["ping.0 ping 1", "ping.0 ping 2", "ping.0 ping 3"] }
            #expect(followed, "got:\n\(collected.value)")
        }
    }
}

/// A value behind a lock, for a pipe's reading thread and the test.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { withLock { $0 } }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&stored)
    }
}
