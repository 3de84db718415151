/// What the viewer has done: where the cursor is, what is expanded, filtered, open or being typed.
/// Keys change it here, without a terminal or a daemon; what must reach musterd comes back as a
/// `TopAction`.
public struct TopState: Equatable, Sendable {
    public enum Pane: Equatable, Sendable {
        case none
        /// The service's log, followed.
        case logs(String)
        case events
    }

    public enum Prompt: Equatable, Sendable {
        case scale(service: String, text: String)
        case filter(text: String)
    }

    /// The selected row's subject, so a row keeps the cursor when rows above it come and go.
    public var selected: TopRow.Subject?
    public var expanded: Set<String> = []
    public var filter = ""
    public var pane: Pane = .none
    public var prompt: Prompt?
    /// The answer to the last action, shown on the bottom line until the next key.
    public var message: String?

    public init() {}

    /// The row the cursor is on: the selected subject if it is still shown, else the first row.
    public func cursor(in rows: [TopRow]) -> Int? {
        guard !rows.isEmpty else { return nil }
        if let selected, let index = rows.firstIndex(where: { $0.subject == selected }) { return index }
        // An instance that went away leaves the cursor on its service.
        if let selected, let index = rows.firstIndex(where: { $0.subject == .service(selected.service) }) { return index }
        return 0
    }

    /// Applies a key to the rows on screen; what musterd must do, if anything.
    public mutating func handle(_ key: TopKey, rows: [TopRow]) -> TopAction? {
        if prompt != nil { return handlePrompt(key) }
        message = nil
        let index = cursor(in: rows)
        let row = index.map { rows[$0] }
        switch key {
        case .up, .character("k"):
            if let index, index > 0 { selected = rows[index - 1].subject }
        case .down, .character("j"):
            if let index, index + 1 < rows.count { selected = rows[index + 1].subject }
        case .enter:
            guard let row else { break }
            let service = row.subject.service
            if expanded.contains(service) { expanded.remove(service); selected = .service(service) } else { expanded.insert(service) }
        case .character("s"):
            if let row { prompt = .scale(service: row.subject.service, text: "") }
        case .character("r"):
            if let row { return .restart(row.subject.target) }
        case .character("l"):
            guard let row else { break }
            pane = pane == .logs(row.subject.service) ? .none : .logs(row.subject.service)
        case .character("e"):
            pane = pane == .events ? .none : .events
        case .character("/"):
            prompt = .filter(text: filter)
        case .escape:
            pane = .none
        case .character("q"):
            return .quit
        default:
            break
        }
        return nil
    }

    private mutating func handlePrompt(_ key: TopKey) -> TopAction? {
        guard let current = prompt else { return nil }
        switch (current, key) {
        case (.scale, .escape):
            prompt = nil
        case (.filter, .escape):
            prompt = nil
            filter = ""
        case (.scale(let service, let text), .enter):
            prompt = nil
            guard let count = Int(text), count >= 0 else {
                message = "scale \(service): \"\(text)\" is not a count of instances"
                return nil
            }
            return .scale(service: service, instances: count)
        case (.filter, .enter):
            prompt = nil
        case (.scale(let service, let text), .backspace):
            prompt = .scale(service: service, text: String(text.dropLast()))
        case (.filter(let text), .backspace):
            filter = String(text.dropLast())
            prompt = .filter(text: filter)
        case (.scale(let service, let text), .character(let char)) where char.isNumber && text.count < 6:
            prompt = .scale(service: service, text: text + String(char))
        case (.filter(let text), .character(let char)) where text.count < 40:
            filter = text + String(char)
            prompt = .filter(text: filter)
        default:
            break
        }
        return nil
    }
}

/// What a key asks of musterd.
public enum TopAction: Equatable, Sendable {
    case quit
    case scale(service: String, instances: Int)
    /// A service (rolling behind its proxy) or one instance.
    case restart(String)
}
