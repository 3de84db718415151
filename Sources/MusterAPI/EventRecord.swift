/// One thing that happened: started, exited, oom-killed, backoff, fatal, scaled, reloaded, …
/// Kept in a bounded ring in musterd and appended as a JSON line to `state_dir/events.log`.
public struct EventRecord: Codable, Sendable, Equatable {
    /// Seconds since the Unix epoch.
    public var time: Double
    public var kind: String
    public var service: String?
    public var instance: String?
    public var message: String
    public var pid: Int32?
    public var exitCode: Int32?
    public var signal: String?

    enum CodingKeys: String, CodingKey {
        case time, kind, service, instance, message, pid, signal
        case exitCode = "exit_code"
    }

    public init(time: Double, kind: String, service: String? = nil, instance: String? = nil, message: String,
                pid: Int32? = nil, exitCode: Int32? = nil, signal: String? = nil) {
        self.time = time
        self.kind = kind
        self.service = service
        self.instance = instance
        self.message = message
        self.pid = pid
        self.exitCode = exitCode
        self.signal = signal
    }
}

public struct EventsResponse: Codable, Sendable, Equatable {
    public var events: [EventRecord]
    public init(events: [EventRecord]) { self.events = events }
}
