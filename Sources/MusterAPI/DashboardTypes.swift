/// `POST /v1/dashboard/login`: asks musterd for a token that lets the web dashboard act (scale,
/// restart, stop, start). Only callers the control socket lets in get one.
public struct DashboardLoginRequest: Codable, Sendable, Equatable {
    /// How long the token is good for, as a duration ("12h", "30m"); the default is 12 hours.
    public var validFor: String?

    enum CodingKeys: String, CodingKey {
        case validFor = "valid_for"
    }

    public init(validFor: String? = nil) { self.validFor = validFor }
}

public struct DashboardLoginResponse: Codable, Sendable, Equatable {
    /// The page's address with the token: opening it stores the token in an HttpOnly,
    /// SameSite=Strict cookie and goes on to the page.
    public var url: String
    public var token: String
    /// Unix time, seconds.
    public var expiresAt: Double

    enum CodingKeys: String, CodingKey {
        case url, token
        case expiresAt = "expires_at"
    }

    public init(url: String, token: String, expiresAt: Double) {
        self.url = url
        self.token = token
        self.expiresAt = expiresAt
    }
}

/// What the dashboard's live feed (`GET /live`, Server-Sent Events) sends: first a `snapshot`
/// (everything, for drawing the page), then a `tick` a second (what changed) and an `event` for
/// each event as it happens.
public struct DashboardSnapshot: Codable, Sendable, Equatable {
    public var status: StatusResponse
    public var history: MetricsHistoryResponse
    public var events: [EventRecord]
    /// The cookie this connection came with holds a good token: the page shows its actions.
    public var signedIn: Bool
    public var signedInUntil: Double?

    enum CodingKeys: String, CodingKey {
        case status, history, events
        case signedIn = "signed_in"
        case signedInUntil = "signed_in_until"
    }

    public init(status: StatusResponse, history: MetricsHistoryResponse, events: [EventRecord], signedIn: Bool, signedInUntil: Double?) {
        self.status = status
        self.history = history
        self.events = events
        self.signedIn = signedIn
        self.signedInUntil = signedInUntil
    }
}
