/// What a CLI verb acts on: `web`, `web:1`, or `all`.
public enum Target: Sendable, Equatable, Hashable, CustomStringConvertible {
    case all
    case service(String)
    case instance(String, Int)

    public init?(_ text: String) {
        if text == "all" { self = .all; return }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1, ServiceName.isValid(text) { self = .service(text); return }
        if parts.count == 2, ServiceName.isValid(String(parts[0])), let index = Int(parts[1]), index >= 0 {
            self = .instance(String(parts[0]), index)
            return
        }
        return nil
    }

    public var description: String {
        switch self {
        case .all: "all"
        case .service(let name): name
        case .instance(let name, let index): "\(name):\(index)"
        }
    }

    public var serviceName: String? {
        switch self {
        case .all: nil
        case .service(let name), .instance(let name, _): name
        }
    }
}
