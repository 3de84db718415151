/// A key as `musterctl top` reads it from a terminal in raw mode.
public enum TopKey: Equatable, Sendable {
    case up, down, enter, escape, backspace
    case character(Character)
}

/// Bytes from the terminal in, keys out. Arrow keys arrive as `ESC [ A` (or `ESC O A` in
/// application mode); an ESC that ends a read is the Escape key itself.
public struct TopKeyDecoder: Sendable {
    public init() {}

    public func keys(_ bytes: [UInt8]) -> [TopKey] {
        var keys: [TopKey] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case 0x1B:
                if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "[") || bytes[index] == UInt8(ascii: "O") {
                    let final = bytes[index + 1]
                    index += 2
                    if final == UInt8(ascii: "A") { keys.append(.up) } else if final == UInt8(ascii: "B") { keys.append(.down) }
                    // Other sequences (right, left, F-keys: ESC [ 1 5 ~) are skipped to their end.
                    else if final >= 0x30 && final <= 0x3F {
                        while index < bytes.count, !(0x40...0x7E).contains(bytes[index]) { index += 1 }
                        index += 1
                    }
                } else {
                    keys.append(.escape)
                }
            case 0x0D, 0x0A: keys.append(.enter)
            case 0x7F, 0x08: keys.append(.backspace)
            case 0x20...0x7E: keys.append(.character(Character(UnicodeScalar(byte))))
            default: break
            }
        }
        return keys
    }
}
