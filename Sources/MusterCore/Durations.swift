/// Human-written durations and sizes, as manifests spell them ("200ms", "1.5s", "256M").
public enum DurationText {
    /// The longest duration accepted (about 31,700 years): Swift's Duration traps on a value past
    /// ~1.7e20 s, and "1e25s" in a manifest or a request must be an error, not a crash.
    public static let maxSeconds = 1e12

    /// Parses "200ms", "1.5s", "5m", "1h", "750us" or a bare number of seconds.
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingWhitespace()
        let units: [(suffix: String, seconds: Double)] = [
            ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600),
        ]
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            let number = trimmed.dropLast(unit.suffix.count)
            guard let value = Double(number), value >= 0, value * unit.seconds <= maxSeconds else { return nil }
            return .seconds(value * unit.seconds)
        }
        guard let seconds = Double(trimmed), seconds >= 0, seconds <= maxSeconds else { return nil }
        return .seconds(seconds)
    }

    /// Digits, an optional fraction and an optional unit (ms, us, ns, s, m, h), nothing else: the
    /// shape the OpenAPI document gives durations in request bodies (no spaces, no "µs").
    public static func isPlain(_ text: String) -> Bool {
        var rest = Substring(text)
        for unit in ["ms", "us", "ns", "s", "m", "h"] where rest.hasSuffix(unit) {
            rest = rest.dropLast(unit.count)
            break
        }
        let parts = rest.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        return !parts.isEmpty && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }

    /// The shortest exact spelling: 0.2 s → "200ms", 30 s → "30s", 90 s → "90s".
    public static func format(_ duration: Duration) -> String {
        let seconds = duration.seconds
        if seconds == 0 { return "0s" }
        if seconds < 1 { return "\(trimmed(seconds * 1000))ms" }
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
        if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
        return "\(trimmed(seconds))s"
    }

    /// At most three decimals: a computed 1.695 s (1.6949999999999998 in binary) reads "1.695".
    private static func trimmed(_ value: Double) -> String {
        let thousandths = Int((value * 1000).rounded())
        guard thousandths % 1000 != 0 else { return String(thousandths / 1000) }
        var fraction = String(thousandths % 1000)
        fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(thousandths / 1000).\(fraction)"
    }
}

public enum ByteSize {
    /// Parses "256M", "1G", "512K", "10MiB", "1.5G" or a bare byte count. Units are binary
    /// (K = 1024), as systemd and cgroups read them.
    public static func parse(_ text: String) -> UInt64? {
        var body = text.trimmingWhitespace().uppercased()
        for suffix in ["IB", "B"] where body.hasSuffix(suffix) && body.count > suffix.count {
            body.removeLast(suffix.count)
            break
        }
        let multipliers: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        var multiplier = 1.0
        if let last = body.last, let unit = multipliers[last] {
            multiplier = unit
            body.removeLast()
        }
        guard let value = Double(body), value >= 0, value.isFinite else { return nil }
        let bytes = (value * multiplier).rounded()
        guard bytes < 1.8e19 else { return nil }
        return UInt64(bytes)
    }

    public static func format(_ bytes: UInt64) -> String {
        let units: [(String, UInt64)] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
        for (name, size) in units where bytes >= size {
            let value = Double(bytes) / Double(size)
            return value == value.rounded() ? "\(Int(value))\(name)" : String(format1(value)) + name
        }
        return "\(bytes)B"
    }

    private static func format1(_ value: Double) -> String {
        let tenths = (value * 10).rounded() / 10
        return tenths == tenths.rounded() ? String(Int(tenths)) : String(tenths)
    }
}

extension Duration {
    /// The duration as floating-point seconds.
    public var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}

extension StringProtocol {
    /// Without leading and trailing whitespace (Foundation-free).
    public func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
