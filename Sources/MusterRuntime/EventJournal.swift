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
        /// While above zero, file lines wait in `pending` (see `holdingWrites`).
        var holding = 0
        var pending: [UInt8] = []
    }
    private let state = Mutex(State())
    private let file: RotatingLogFile?

    public init(stateDir: String?, report: @escaping @Sendable (String) -> Void = { _ in }) {
        file = stateDir.map { RotatingLogFile(path: $0 + "/events.log", maxBytes: 10 << 20, backups: 1) { _, message in report(message) } }
    }

    public func record(_ event: EventRecord) {
        // Written by hand (EventRecordJSON.swift): JSONEncoder here was a tenth of each spawn.
        var line = file == nil ? nil : event.jsonLine()
        line?.append(UInt8(ascii: "\n"))
        let (followers, writeNow) = state.withLock { s -> ([AsyncStream<EventRecord>.Continuation], [UInt8]?) in
            s.ring.append(event)
            if s.ring.count > Self.capacity { s.ring.removeFirst() }
            if s.holding > 0, let held = line {
                s.pending += held
                line = nil
            }
            return (Array(s.followers.values), line)
        }
        for follower in followers { follower.yield(event) }
        if let file, let writeNow { file.append(writeNow) }
    }

    /// Runs `body` with the file's appends held back, then appends what it recorded with one
    /// write: a reconcile pass that starts 200 instances records 200 `started` events, and a write
    /// each was a few percent of every spawn. The ring and the followers get each event at once;
    /// only the file waits, until the outermost hold ends.
    public func holdingWrites<T>(_ body: () throws -> T) rethrows -> T {
        state.withLock { $0.holding += 1 }
        defer {
            let lines = state.withLock { s -> [UInt8] in
                s.holding -= 1
                guard s.holding == 0 else { return [] }
                defer { s.pending = [] }
                return s.pending
            }
            if let file, !lines.isEmpty { file.append(lines) }
        }
        return try body()
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
