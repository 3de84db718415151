import FoundationEssentials
import MusterCore

/// Each service's revisions, one JSON file per service under `state_dir/revisions/`, written
/// atomically on every change, read back at start.
public struct RevisionStore: Sendable {
    public let directory: String

    public init(stateDir: String) {
        directory = stateDir + "/revisions"
    }

    func path(_ service: String) -> String { "\(directory)/\(service).json" }

    public func load(_ service: String) -> RevisionHistory {
        guard let text = FileSystem.readIfPresent(path(service)),
              let history = try? JSONDecoder().decode(RevisionHistory.self, from: Data(text.utf8)) else { return RevisionHistory() }
        return history
    }

    public func save(_ history: RevisionHistory, for service: String) throws {
        if !FileSystem.isDirectory(directory) { try FileSystem.makeDirectories(directory, mode: 0o700) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try FileSystem.writeAtomically(Array(try encoder.encode(history)), to: path(service))
    }
}
