/// Who may act on the web dashboard (scale, restart, stop, start): the holders of a token musterd
/// issued over the control socket (`musterctl dashboard`), so only root and the control group get
/// one. Reading the dashboard needs none. Pure: the caller brings the time and the random token.
public struct DashboardTokens: Sendable {
    /// Outstanding tokens kept at most; issuing one more forgets the one expiring first, so a
    /// caller looping on `musterctl dashboard` cannot grow the daemon.
    public static let capacity = 64
    /// How long a token is good for when the caller does not say.
    public static let defaultLifetime: Duration = .seconds(12 * 3600)
    /// The longest a caller may ask for.
    public static let maximumLifetime: Duration = .seconds(30 * 24 * 3600)

    private var grants: [(token: [UInt8], expires: Double)] = []

    public init() {}

    /// Records `token` as good until `now + lifetime`; returns that expiry (Unix seconds).
    public mutating func issue(_ token: String, now: Double, lifetime: Duration) -> Double {
        grants.removeAll { $0.expires <= now }
        if grants.count >= Self.capacity, let first = grants.indices.min(by: { grants[$0].expires < grants[$1].expires }) {
            grants.remove(at: first)
        }
        let expires = now + lifetime.seconds
        grants.append((Array(token.utf8), expires))
        return expires
    }

    /// When `token` expires, or nil when it is not one issued or has expired. Compares against
    /// every grant in full, whatever matches, so the time taken says nothing about the token.
    public func expiry(of token: String, now: Double) -> Double? {
        let candidate = Array(token.utf8)
        var found: Double?
        for grant in grants where Self.sameBytes(grant.token, candidate) && grant.expires > now { found = grant.expires }
        return found
    }

    public var count: Int { grants.count }

    static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
