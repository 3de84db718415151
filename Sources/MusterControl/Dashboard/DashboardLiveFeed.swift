import FoundationEssentials
import Hummingbird
import MusterAPI
import MusterRuntime

/// `GET /live`: the dashboard's Server-Sent Events. First a `snapshot` (status, the whole
/// history, recent events), then a `tick` each second (status and the history samples newer than
/// the last ones sent) and an `event` for each event as the journal records it, followed by a
/// tick. A browser's
/// EventSource reconnects by itself and gets a fresh snapshot, so nothing is resent by id.
enum DashboardLiveFeed {
    static let tickInterval: Duration = .seconds(1)
    static let recentEvents = 100
    static let eagerTickSpacing: Duration = .milliseconds(200)

    private enum Frame: Sendable {
        case tick
        case event(EventRecord)
    }

    /// - Parameter isOver: checked before every frame; the feed ends when it says so (daemon
    ///   shutdown), so an open page never holds up a graceful shutdown.
    static func response(supervisor: Supervisor, journal: EventJournal, signedInUntil: Double?,
                         isOver: @escaping @Sendable () async -> Bool) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            // Subscribed before the snapshot is read, so no event falls between the two.
            let events = journal.follow()
            let snapshot = DashboardSnapshot(
                status: try await supervisor.status(), history: try await supervisor.metricsHistory(services: []),
                events: journal.recent(limit: recentEvents), signedIn: signedInUntil != nil, signedInUntil: signedInUntil)
            try await writer.write(frame("snapshot", snapshot))
            var newest = newestSampleTime(snapshot.history)

            let (frames, continuation) = AsyncStream<Frame>.makeStream(bufferingPolicy: .bufferingNewest(1000))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in events { continuation.yield(.event(event)) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: tickInterval)
                        continuation.yield(.tick)
                    }
                }
                // A write to a page that went away throws, which ends the group and both tasks.
                // An event also brings a tick at once (at most one per 200 ms), so a scale or a
                // crash shows in the table now rather than at the next second.
                var lastTick = ContinuousClock.now
                for await next in frames {
                    if await isOver() { break }
                    if case .event(let event) = next {
                        try await writer.write(frame("event", event))
                        guard ContinuousClock.now - lastTick > eagerTickSpacing else { continue }
                    }
                    lastTick = ContinuousClock.now
                    let history = try await supervisor.metricsHistory(services: [], since: newest)
                    if let time = newestSampleTime(history) { newest = max(newest ?? time, time) }
                    try await writer.write(tickFrame(status: try await supervisor.status(), history: history))
                }
                group.cancelAll()
                continuation.finish()
            }
            try await writer.finish(nil)
        })
    }

    /// The time of the oldest of the services' newest samples: asking for what is newer than it
    /// may send a sample twice (the page keeps one per time) but never skips one.
    static func newestSampleTime(_ history: MetricsHistoryResponse) -> Double? {
        history.services.compactMap { $0.samples.last?.time }.min()
    }

    /// `{"status": StatusResponse, "history": MetricsHistoryResponse}`, the status written by its hand-made encoder (a third of the
    /// cost of JSONEncoder's, and this runs every second for every open page).
    private static func tickFrame(status: StatusResponse, history: MetricsHistoryResponse) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("event: tick\ndata: {\"status\":")
        // Its trailing newline would end the event's data line.
        var statusBytes = status.jsonBytes()
        while statusBytes.last == UInt8(ascii: "\n") { statusBytes.removeLast() }
        buffer.writeBytes(statusBytes)
        buffer.writeString(",\"history\":")
        buffer.writeBytes((try? JSONBody.encoder.encode(history)) ?? Data("null".utf8))
        buffer.writeString("}\n\n")
        return buffer
    }

    private static func frame<Value: Encodable>(_ name: String, _ value: Value) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("event: \(name)\ndata: ")
        buffer.writeBytes((try? JSONBody.encoder.encode(value)) ?? Data("{}".utf8))
        buffer.writeString("\n\n")
        return buffer
    }
}
