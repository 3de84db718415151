import DequeModule
import MusterAPI
import Synchronization

/// What happened, newest last: a bounded ring in memory for `musterctl events`, each record also
/// appended as a JSON line to `state_dir/events.log` (rotated at 10 MiB), and handed to whoever
/// follows the stream.
public final class EventJournal: Sendable {
    public static let capacity = 1000

    private struct State {
        var ring = Deque<EventRecord>()
        var followers: [Int: AsyncStream<EventRecord>.Continuation] = [:]
        var nextFollower = 0
    }
    private let state = Mutex(State())
    private let file: RotatingLogFile?

    public init(stateDir: String?, report: @escaping @Sendable (String) -> Void = { _ in }) {
        file = stateDir.map { RotatingLogFile(path: $0 + "/events.log", maxBytes: 10 << 20, backups: 1) { _, message in report(message) } }
    }

    public func record(_ event: EventRecord) {
        let followers = state.withLock { s in
            s.ring.append(event)
            if s.ring.count > Self.capacity { s.ring.removeFirst() }
            return Array(s.followers.values)
        }
        for follower in followers { follower.yield(event) }
        // Written by hand (EventRecordJSON.swift): JSONEncoder here was a tenth of each spawn.
        if let file, var line = event.jsonLine() {
            line.append(UInt8(ascii: "\n"))
            file.append(line)
        }
    }

    public func recent(limit: Int = capacity) -> [EventRecord] {
        state.withLock { Array($0.ring.suffix(limit)) }
    }

    /// Every event from now on, until the stream is dropped.
    public func follow() -> AsyncStream<EventRecord> {
        let (stream, continuation) = AsyncStream<EventRecord>.makeStream(bufferingPolicy: .bufferingNewest(1000))
        let id = state.withLock { s in
            let id = s.nextFollower
            s.nextFollower += 1
            s.followers[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.followers.removeValue(forKey: id) }
        }
        return stream
    }

    public func finishFollowers() {
        let followers = state.withLock { s in
            defer { s.followers = [:] }
            return Array(s.followers.values)
        }
        for follower in followers { follower.finish() }
    }
}
