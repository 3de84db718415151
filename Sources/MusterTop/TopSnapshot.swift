import MusterAPI

/// What one refresh of `musterctl top` read from musterd.
public struct TopSnapshot: Sendable {
    public var status: StatusResponse
    /// The last seconds of `GET /v1/history`: rates, latency and the sampler's CPU per service.
    public var history: MetricsHistoryResponse?
    /// For the events pane, oldest first.
    public var events: [EventRecord]
    /// For the logs pane: the selected service's last lines.
    public var logLines: [String]
    /// Unix time of the refresh.
    public var time: Double
    /// Why the last refresh failed (musterd unreachable); the rows are from the one before.
    public var error: String?

    public init(status: StatusResponse, history: MetricsHistoryResponse? = nil, events: [EventRecord] = [], logLines: [String] = [],
                time: Double, error: String? = nil) {
        self.status = status
        self.history = history
        self.events = events
        self.logLines = logLines
        self.time = time
        self.error = error
    }

    /// The newest sample of a service's history.
    func latestSample(_ service: String) -> HistorySample? {
        history?.services.first { $0.name == service }?.samples.last
    }
}
