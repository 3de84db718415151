import FoundationEssentials
import MusterCore

/// Desired counts and started/stopped intent, written atomically to `state_dir/state.json` on every
/// change and read back at start, so a restarted daemon brings services back as they were.
public struct StateStore: Sendable {
    public let path: String

    public init(stateDir: String) {
        path = stateDir + "/state.json"
    }

    struct File: Codable {
        var version = 1
        var services: [String: ServiceIntent]
    }

    public func load() -> [String: ServiceIntent] {
        guard let text = FileSystem.readIfPresent(path),
              let file = try? JSONDecoder().decode(File.self, from: Data(text.utf8)) else { return [:] }
        return file.services
    }

    public func save(_ intents: [String: ServiceIntent]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(File(services: intents))
        try FileSystem.writeAtomically(Array(data), to: path)
    }
}
