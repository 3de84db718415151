/// One `state_dir/events.log` line, written directly. Every instance start appends one, on the
/// reconcile loop's path: Foundation's JSONEncoder took ~10% of the daemon's time per spawn there
/// (a fresh encoder, generic Codable boxing, a dictionary per record), this a few hundred bytes of
/// appends.
///
/// The bytes are JSONEncoder's for the same record (default options), member for member: the same
/// keys, absent optionals left out as `encodeIfPresent` does, strings escaped as it escapes them
/// (`\"`, `\\`, `\/`, `\b \f \n \r \t`, other control characters as lowercase `\u00xx`, the rest
/// as UTF-8), and doubles as it writes them (Swift's shortest form, without a trailing `.0`).
/// Only the member order differs: JSONEncoder's follows its hash table, so it changes from record
/// to record; this one is always the declaration order. EventRecordJSONTests compare the two.
extension EventRecord {
    /// The line without its newline, or nil where JSONEncoder would throw (a time that is not a
    /// finite number), so such a record is left out of the file as before.
    public func jsonLine() -> [UInt8]? {
        guard time.isFinite else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(96 + message.utf8.count)
        EventJSON.append("{\"time\":", to: &out)
        EventJSON.append(EventJSON.number(time), to: &out)
        EventJSON.append(",\"kind\":", to: &out)
        EventJSON.string(kind, to: &out)
        if let service {
            EventJSON.append(",\"service\":", to: &out)
            EventJSON.string(service, to: &out)
        }
        if let instance {
            EventJSON.append(",\"instance\":", to: &out)
            EventJSON.string(instance, to: &out)
        }
        EventJSON.append(",\"message\":", to: &out)
        EventJSON.string(message, to: &out)
        if let pid {
            EventJSON.append(",\"pid\":", to: &out)
            EventJSON.append(String(pid), to: &out)
        }
        if let exitCode {
            EventJSON.append(",\"exit_code\":", to: &out)
            EventJSON.append(String(exitCode), to: &out)
        }
        if let signal {
            EventJSON.append(",\"signal\":", to: &out)
            EventJSON.string(signal, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// JSONEncoder's spelling of the tokens an event holds.
enum EventJSON {
    static func append(_ text: String, to out: inout [UInt8]) {
        out.append(contentsOf: text.utf8)
    }

    /// As JSONEncoder writes a finite Double: its `description`, less a trailing ".0"
    /// (1.0 → "1", -0.0 → "-0", 1e-07 and 1e+21 as they are).
    static func number(_ value: Double) -> String {
        let text = value.description
        return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }

    private static let hex = Array("0123456789abcdef".utf8)

    static func string(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            // JSONEncoder escapes the solidus unless told `.withoutEscapingSlashes`.
            case UInt8(ascii: "/"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
