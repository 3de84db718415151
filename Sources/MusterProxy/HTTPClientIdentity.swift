import NIOCore

/// Who the client is, written the ways instances read it. Computed once per client connection so
/// the per-request path only appends strings it already has.
struct HTTPClientIdentity {
    /// For `X-Forwarded-For`: the bare address.
    let address: String
    /// For `Forwarded` (RFC 7239): `for=192.0.2.1;proto=http`, IPv6 quoted and bracketed.
    let forwardedElement: String

    init(_ remote: SocketAddress?) {
        switch (remote, remote?.ipAddress) {
        case (.v6?, let ip?):
            address = ip
            forwardedElement = "for=\"[\(ip)]\";proto=http"
        case (_, let ip?):
            address = ip
            forwardedElement = "for=\(ip);proto=http"
        default:
            address = "unknown"
            forwardedElement = "for=unknown;proto=http"
        }
    }
}
