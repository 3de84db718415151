/// Whether a request to one of the dashboard's actions (scale, restart, stop, start) may run.
/// Pure: decided from the request's headers and the token's expiry alone.
enum DashboardRequestCheck {
    enum Verdict: Equatable {
        case allowed
        /// 403: sent by a page of another site (or a frame of one), whatever cookie came along.
        case crossSite(String)
        /// 401: no token, or one that is wrong or expired.
        case unauthorized(String)
    }

    /// - Parameters:
    ///   - host: the request's Host header ("127.0.0.1:9090").
    ///   - origin: its Origin header: browsers send one with every POST, so a page of another
    ///     site shows itself here even when SameSite is not honoured.
    ///   - fetchSite: its Sec-Fetch-Site header ("same-origin", "same-site", "cross-site", "none").
    ///   - tokenExpiry: when the cookie's token expires; nil when there is none or it is not good.
    ///   - hasToken: whether the request carried a token at all (for the message).
    static func action(host: String?, origin: String?, fetchSite: String?, hasToken: Bool, tokenExpiry: Double?) -> Verdict {
        if let fetchSite, fetchSite != "same-origin" {
            return .crossSite("the dashboard's actions only take requests from its own page (Sec-Fetch-Site: \(fetchSite))")
        }
        if let origin {
            guard let host, origin == "http://\(host)" else {
                return .crossSite("the dashboard's actions only take requests from its own page (http://\(host ?? "?")), not from \(origin)")
            }
        }
        guard hasToken else {
            return .unauthorized("acting needs a token: run `musterctl dashboard` and open the address it prints")
        }
        guard tokenExpiry != nil else {
            return .unauthorized("the token is wrong or has expired: run `musterctl dashboard` for a new one")
        }
        return .allowed
    }
}
