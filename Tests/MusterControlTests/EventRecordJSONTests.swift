import FoundationEssentials
import MusterAPI
import Testing

/// The journal line written by hand against JSONEncoder's for the same record. JSONEncoder's
/// member order follows its hash table, so the comparison puts both in key order (`.sortedKeys`
/// for the encoder, the members of the hand-written line re-sorted) and then wants every byte equal.
@Suite("The hand-written event journal line")
struct EventRecordJSONTests {
    static let trickyStrings: [String] = [
        "",
        "plain",
        "say \"hi\"",
        "back\\slash and \\\" both",
        "a/b/c, </script>",
        "line\nbreak\r\n\ttab",
        String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) }),
        "\u{7f} DEL, \u{80} and \u{9f} C1",
        "é ü ß ✓ 日本語",
        "😀 👩‍👩‍👧 e\u{301}",
        "\u{2028}\u{2029} separators, \u{200b} zero width, \u{feff} BOM, \u{fffe}",
        "exec \"/usr/bin/nope\": No such file or directory",
    ]

    static let times: [Double] = [
        0, -0.0, 1, 1.25, 0.1, 100, 1e-7, 1e21, 1.2345678901234568e20, 1.5e300, 5e-324,
        1_765_100_000, 1_765_100_000.123456, 1_765_100_000.5, 1_799_999_999.999999,
    ]

    static func sortedEncoding(_ event: EventRecord) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(event), as: UTF8.self)
    }

    static func handLine(_ event: EventRecord) throws -> String {
        String(decoding: try #require(event.jsonLine()), as: UTF8.self)
    }

    @Test(arguments: trickyStrings)
    func stringsAreEscapedAsJSONEncoderEscapesThem(_ text: String) throws {
        let event = EventRecord(time: 1_765_100_000.25, kind: text, service: text, instance: text + ":0", message: text,
                                pid: 1, exitCode: 2, signal: text)
        let hand = try Self.handLine(event)
        let expected = try Self.sortedEncoding(event)
        #expect(try FlatObject.sorted(hand) == expected)
    }

    @Test(arguments: times)
    func timesAreWrittenAsJSONEncoderWritesThem(_ time: Double) throws {
        let event = EventRecord(time: time, kind: "started", message: "m")
        let hand = try Self.handLine(event)
        let expected = try Self.sortedEncoding(event)
        #expect(try FlatObject.sorted(hand) == expected)
    }

    @Test(arguments: [
        EventRecord(time: 1, kind: "daemon-started", message: "musterd 1.0 up"),
        EventRecord(time: 2, kind: "scaled", service: "web", message: "web: 2 → 5"),
        EventRecord(time: 3, kind: "started", service: "web", instance: "web:0", message: "started pid 42 on port 40000", pid: 42),
        EventRecord(time: 4, kind: "exited", service: "web", instance: "web:1", message: "exited 1", pid: Int32.max, exitCode: -1),
        EventRecord(time: 5, kind: "exited", service: "w", instance: "w:2", message: "killed", pid: Int32.min, signal: "SIGKILL"),
        EventRecord(time: 6, kind: "oom-killed", service: "w", instance: "w:3", message: "m", pid: 7, exitCode: 137, signal: "SIGKILL"),
    ])
    func absentFieldsAreLeftOutAsJSONEncoderLeavesThem(_ event: EventRecord) throws {
        let hand = try Self.handLine(event)
        let expected = try Self.sortedEncoding(event)
        #expect(try FlatObject.sorted(hand) == expected)
        let decoded = try JSONDecoder().decode(EventRecord.self, from: Data(hand.utf8))
        #expect(decoded == event)
    }

    @Test func membersComeInDeclarationOrder() throws {
        let event = EventRecord(time: 1.5, kind: "k", service: "s", instance: "s:0", message: "m", pid: 1, exitCode: 2, signal: "SIGTERM")
        let keys = try FlatObject.members(try Self.handLine(event)).map(\.key)
        #expect(keys == ["\"time\"", "\"kind\"", "\"service\"", "\"instance\"", "\"message\"", "\"pid\"", "\"exit_code\"", "\"signal\""])
    }

    @Test(arguments: [Double.nan, .infinity, -.infinity])
    func aTimeJSONEncoderRefusesWritesNoLine(_ time: Double) {
        let event = EventRecord(time: time, kind: "started", message: "m")
        let encoded = try? JSONEncoder().encode(event)
        #expect(encoded == nil)
        #expect(event.jsonLine() == nil)
    }
}

/// The members of a one-level JSON object of strings and numbers, as written (keys with their
/// quotes, values as raw text): enough to put two encodings in one order without re-encoding.
enum FlatObject {
    struct Malformed: Error {}

    static func members(_ text: String) throws -> [(key: String, value: String)] {
        let bytes = Array(text.utf8)
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { throw Malformed() }
        var members: [(key: String, value: String)] = []
        var i = 1
        while i < bytes.count - 1 {
            let keyEnd = try endOfString(bytes, from: i)
            guard bytes[keyEnd] == UInt8(ascii: ":") else { throw Malformed() }
            let valueStart = keyEnd + 1
            var valueEnd = valueStart
            if bytes[valueStart] == UInt8(ascii: "\"") {
                valueEnd = try endOfString(bytes, from: valueStart)
            } else {
                while valueEnd < bytes.count - 1, bytes[valueEnd] != UInt8(ascii: ",") { valueEnd += 1 }
            }
            members.append((String(decoding: bytes[i..<keyEnd], as: UTF8.self), String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self)))
            i = valueEnd + 1   // past the comma (or onto the closing brace)
        }
        return members
    }

    /// The same object with its members in key order, as `.sortedKeys` writes it.
    static func sorted(_ text: String) throws -> String {
        let members = try members(text).sorted { $0.key < $1.key }
        return "{" + members.map { $0.key + ":" + $0.value }.joined(separator: ",") + "}"
    }

    /// The index just past the string that starts (with its quote) at `start`.
    private static func endOfString(_ bytes: [UInt8], from start: Int) throws -> Int {
        guard bytes[start] == UInt8(ascii: "\"") else { throw Malformed() }
        var i = start + 1
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\") { i += 2; continue }
            if bytes[i] == UInt8(ascii: "\"") { return i + 1 }
            i += 1
        }
        throw Malformed()
    }
}
