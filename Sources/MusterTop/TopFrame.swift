import MusterAPI

/// One line of the screen, exactly `width` characters, and how to draw it.
public struct ScreenLine: Equatable, Sendable {
    public var text: String
    public var tone: TopTone
    public var selected: Bool

    public init(_ text: String, width: Int, tone: TopTone = .normal, selected: Bool = false) {
        let clipped = String(text.prefix(width))
        self.text = clipped + String(repeating: " ", count: max(0, width - clipped.count))
        self.tone = tone
        self.selected = selected
    }
}

/// Lays a snapshot out as a screen: title, column header, rows (scrolled to keep the cursor in
/// view), an optional logs or events pane, and the bottom line (prompt, answer, or the keys).
public enum TopFrame {
    public static let help = "↑↓/jk move  ⏎ expand  s scale  r restart  l logs  e events  / filter  q quit"

    public static func render(_ snapshot: TopSnapshot, _ state: TopState, width: Int, height: Int) -> [ScreenLine] {
        let width = max(width, 20), height = max(height, 6)
        let rows = TopRows.rows(snapshot, expanded: state.expanded, filter: state.filter)
        var lines = [title(snapshot, state, width: width), ScreenLine(tableLine(TopRows.columns.map(\.title), width: width), width: width, tone: .header)]

        let paneHeight = state.pane == .none ? 0 : max(3, (height - 3) * 2 / 5)
        let tableHeight = height - 3 - paneHeight
        let cursor = state.cursor(in: rows)
        // Scrolled so the cursor is on screen, as far up as that allows.
        let first = max(0, min((cursor ?? 0) - tableHeight + 1, rows.count - tableHeight))
        for offset in 0..<tableHeight {
            let index = first + offset
            guard index < rows.count else { lines.append(ScreenLine("", width: width)); continue }
            if offset == tableHeight - 1 && index < rows.count - 1 && index != cursor {
                lines.append(ScreenLine("  … \(rows.count - index) more (↓)", width: width, tone: .dim))
                continue
            }
            let row = rows[index]
            lines.append(ScreenLine(tableLine(row.cells, width: width), width: width, tone: row.tone, selected: index == cursor))
        }
        if rows.isEmpty, tableHeight > 0 {
            lines[2] = ScreenLine(state.filter.isEmpty ? "  no services" : "  no service matches \"\(state.filter)\"", width: width, tone: .dim)
        }
        if paneHeight > 0 { lines += pane(snapshot, state.pane, width: width, height: paneHeight) }
        lines.append(bottom(state, width: width))
        return lines
    }

    /// The frame `--once` prints: every row, no pane, no key line.
    public static func renderOnce(_ snapshot: TopSnapshot, _ state: TopState, width: Int) -> [ScreenLine] {
        let rows = TopRows.rows(snapshot, expanded: state.expanded, filter: state.filter)
        return [title(snapshot, state, width: width), ScreenLine(tableLine(TopRows.columns.map(\.title), width: width), width: width, tone: .header)]
            + rows.map { ScreenLine(tableLine($0.cells, width: width), width: width, tone: $0.tone) }
    }

    static func title(_ snapshot: TopSnapshot, _ state: TopState, width: Int) -> ScreenLine {
        let services = snapshot.status.services
        let instances = services.flatMap(\.instances)
        var text = "muster top  \(services.count) service\(services.count == 1 ? "" : "s")  \(instances.filter(\.ready).count)/\(services.map(\.desired).reduce(0, +)) ready  \(clock(snapshot.time)) UTC"
        if !state.filter.isEmpty { text += "  filter: \(state.filter)" }
        if let error = snapshot.error { return ScreenLine(text + "  " + error, width: width, tone: .bad) }
        return ScreenLine(text, width: width, tone: .header)
    }

    /// Cells padded to their columns; a cell followed by an empty one may run into it.
    static func tableLine(_ cells: [String], width: Int) -> String {
        let fixed = TopRows.columns.dropFirst().map(\.width)
        let nameWidth = max(8, width - fixed.reduce(0, +) - fixed.count)
        let widths = [nameWidth] + fixed
        var line = ""
        var index = 0
        while index < cells.count {
            var cellWidth = widths[index]
            var next = index + 1
            while next < cells.count && cells[next].isEmpty { cellWidth += 1 + widths[next]; next += 1 }
            let cell = String(cells[index].prefix(cellWidth))
            // Numbers line up on the right, names and states on the left.
            let rightAligned = index >= 3 && !cell.hasPrefix("pid ") && !cell.hasPrefix("up ")
            let padding = String(repeating: " ", count: cellWidth - cell.count)
            line += (index == 0 ? "" : " ") + (rightAligned ? padding + cell : cell + padding)
            index = next
        }
        return line
    }

    static func pane(_ snapshot: TopSnapshot, _ pane: TopState.Pane, width: Int, height: Int) -> [ScreenLine] {
        let (heading, body): (String, [String])
        switch pane {
        case .none: return []
        case .logs(let service): (heading, body) = ("logs of \(service) (l closes)", snapshot.logLines)
        case .events: (heading, body) = ("events (e closes)", snapshot.events.map(eventLine))
        }
        let bar = "── " + heading + " "
        var lines = [ScreenLine(bar + String(repeating: "─", count: max(0, width - bar.count)), width: width, tone: .dim)]
        let shown = body.suffix(height - 1)
        lines += shown.map { ScreenLine($0, width: width) }
        lines += Array(repeating: ScreenLine("", width: width), count: height - 1 - shown.count)
        return lines
    }

    static func bottom(_ state: TopState, width: Int) -> ScreenLine {
        switch state.prompt {
        case .scale(let service, let text): return ScreenLine("scale \(service) to how many instances? \(text)▏ (⏎ scales, Esc cancels)", width: width, tone: .warn)
        case .filter(let text): return ScreenLine("filter: \(text)▏ (⏎ keeps, Esc clears)", width: width, tone: .warn)
        case nil: return ScreenLine(state.message ?? help, width: width, tone: state.message == nil ? .dim : .warn)
        }
    }

    static func eventLine(_ event: EventRecord) -> String {
        "\(clock(event.time))  \(event.instance ?? event.service ?? "musterd")  \(event.kind): \(event.message)"
    }

    /// HH:MM:SS of a Unix time, UTC.
    static func clock(_ time: Double) -> String {
        let seconds = Int(time) % 86400
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(two(seconds / 3600)):\(two(seconds % 3600 / 60)):\(two(seconds % 60))"
    }
}
