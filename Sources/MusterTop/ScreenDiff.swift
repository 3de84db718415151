/// What to write to a terminal to go from one frame to the next: only the lines that changed,
/// each by cursor position, so a refresh does not flicker (no clear, no full redraw) and an
/// idle screen costs a few bytes a second.
public enum ScreenDiff {
    public static func update(from previous: [ScreenLine]?, to next: [ScreenLine], colour: Bool) -> String {
        var out = ""
        let full = previous == nil || previous!.count != next.count || previous!.first?.text.count != next.first?.text.count
        if full { out += "\u{1B}[H\u{1B}[2J" }
        for (index, line) in next.enumerated() where full || previous![index] != line {
            out += "\u{1B}[\(index + 1);1H" + style(line, colour: colour) + line.text + "\u{1B}[0m"
        }
        return out
    }

    /// SGR for a line: reverse video for the cursor (without colour too), a colour per tone.
    public static func style(_ line: ScreenLine, colour: Bool) -> String {
        var codes: [String] = []
        if line.selected { codes.append("7") }
        if colour {
            switch line.tone {
            case .normal: break
            case .good: codes.append("32")
            case .warn: codes.append("33")
            case .bad: codes.append("31")
            case .dim: codes.append("2")
            case .header: codes.append("1")
            }
        } else if line.tone == .header {
            codes.append("1")
        }
        return codes.isEmpty ? "" : "\u{1B}[" + codes.joined(separator: ";") + "m"
    }
}
