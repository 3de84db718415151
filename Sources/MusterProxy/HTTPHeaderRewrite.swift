import NIOCore
import NIOHTTP1

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

/// What the proxy learned about a request while rewriting it for an instance.
struct HTTPForwardedRequest {
    var head: HTTPRequestHead
    /// Upgrade requested (`Connection: upgrade` plus an `Upgrade` header): a 101 turns the
    /// connection into a tunnel.
    var isUpgrade: Bool
    /// Safe to send again on another connection: idempotent and without a body to replay.
    var isRetryable: Bool
    /// The request encoder writes nothing for this request's end (no chunked framing), so a
    /// trailer-less end need not be sent through the pipeline at all.
    var endIsEmpty: Bool
}

/// What the proxy learned about a response while rewriting it for the client.
struct HTTPForwardedResponse {
    /// The client connection must close after it (asked for, or a body a 1.0 client could not
    /// delimit otherwise).
    var closeClient: Bool
    /// The response encoder writes nothing for this response's end (not chunked).
    var endIsEmpty: Bool
}

/// Hop-by-hop headers out, forwarding headers in, in one pass over the header list; the common
/// request (none of these present) costs a scan and three appends.
enum HTTPHeaderRewrite {
    static func request(_ head: HTTPRequestHead, from client: HTTPClientIdentity) -> HTTPForwardedRequest {
        let scan = HeaderScan(head.headers)
        var head = head
        head.version = .http1_1
        var isUpgrade = false
        if scan.hasHopByHop {
            let options = scan.hasConnection ? ConnectionOptions(head.headers) : ConnectionOptions()
            isUpgrade = scan.hasUpgrade && options.upgrade
            removeHopByHop(&head.headers, scan: scan, options: options, keepUpgrade: isUpgrade)
            if isUpgrade { head.headers.add(name: "connection", value: "upgrade") }
        }
        append(&head.headers, "x-forwarded-for", client.address, existing: scan.hasXForwardedFor)
        if scan.hasXForwardedProto {
            head.headers.replaceOrAdd(name: "x-forwarded-proto", value: "http")
        } else {
            head.headers.add(name: "x-forwarded-proto", value: "http")
        }
        append(&head.headers, "forwarded", client.forwardedElement, existing: scan.hasForwarded)
        let bodiless = !scan.hasTransferEncoding && (!scan.hasContentLength || head.headers.first(name: "content-length") == "0")
        // Mirrors HTTPRequestEncoder's framing: chunked unless a length is given, for methods
        // that expect a body or when the client sent chunked.
        let expectsBody = head.method == .POST || head.method == .PUT || head.method == .PATCH
        let endIsEmpty = head.method == .TRACE || scan.hasContentLength || (!expectsBody && !scan.hasTransferEncoding)
        return HTTPForwardedRequest(
            head: head, isUpgrade: isUpgrade, isRetryable: bodiless && isIdempotent(head.method), endIsEmpty: endIsEmpty)
    }

    /// The instance's response as the client gets it: in the client's HTTP version, with the
    /// proxy's own connection management.
    static func response(
        _ head: inout HTTPResponseHead, clientVersion: HTTPVersion, isHEAD: Bool, closeClient: Bool
    ) -> HTTPForwardedResponse {
        let scan = HeaderScan(head.headers)
        if scan.hasHopByHop {
            let options = scan.hasConnection ? ConnectionOptions(head.headers) : ConnectionOptions()
            removeHopByHop(&head.headers, scan: scan, options: options, keepUpgrade: head.status == .switchingProtocols)
        }
        head.version = clientVersion
        let code = head.status.code
        if code == 101 {
            head.headers.add(name: "connection", value: "upgrade")
            return HTTPForwardedResponse(closeClient: false, endIsEmpty: true)
        }
        if code < 200 { return HTTPForwardedResponse(closeClient: false, endIsEmpty: true) }
        var close = closeClient
        if clientVersion.minor == 0 {
            // 1.0 clients know neither chunked encoding nor keep-alive without a length.
            if scan.hasTransferEncoding { head.headers.remove(name: "transfer-encoding") }
            let hasBody = !isHEAD && code != 204 && code != 304
            if hasBody && !scan.hasContentLength { close = true }
        }
        if close {
            head.headers.add(name: "connection", value: "close")
        } else if clientVersion.minor == 0 {
            head.headers.add(name: "connection", value: "keep-alive")
        }
        // Mirrors HTTPResponseEncoder's framing: chunked for 1.1 bodies without a length.
        let endIsEmpty = scan.hasContentLength || code == 204 || code == 304 || clientVersion.minor == 0
        return HTTPForwardedResponse(closeClient: close, endIsEmpty: endIsEmpty)
    }

    private static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS, .TRACE: return true
        default: return false
        }
    }

    private static func append(_ headers: inout HTTPHeaders, _ name: String, _ value: String, existing: Bool) {
        guard existing else {
            headers.add(name: name, value: value)
            return
        }
        let joined = headers[name].joined(separator: ", ")
        headers.replaceOrAdd(name: name, value: joined.isEmpty ? value : "\(joined), \(value)")
    }

    /// RFC 9110 §7.6.1: `Connection` and the headers it names are for this hop only. Only the
    /// headers the scan saw are removed: each removal is a pass over the list.
    private static func removeHopByHop(_ headers: inout HTTPHeaders, scan: HeaderScan, options: ConnectionOptions, keepUpgrade: Bool) {
        for name in options.named { headers.remove(name: name) }
        if scan.hasConnection { headers.remove(name: "connection") }
        if scan.hasKeepAlive { headers.remove(name: "keep-alive") }
        if scan.hasProxyConnection { headers.remove(name: "proxy-connection") }
        if scan.hasTE { headers.remove(name: "te") }
        if scan.hasUpgrade && !keepUpgrade { headers.remove(name: "upgrade") }
    }
}

/// The tokens of the `Connection` headers: whether one is `upgrade`, and the header names the
/// others list. The usual lone `keep-alive` or `close` costs no allocation.
private struct ConnectionOptions {
    var upgrade = false
    var named: [String] = []

    init() {}

    init(_ headers: HTTPHeaders) {
        for (name, value) in headers where name.equalsIgnoringASCIICase("connection") {
            if value.equalsIgnoringASCIICase("keep-alive") || value.equalsIgnoringASCIICase("close") { continue }
            if value.equalsIgnoringASCIICase("upgrade") {
                upgrade = true
                continue
            }
            for token in value.split(separator: ",") {
                let token = token.trimmingSpaces().lowercased()
                switch token {
                case "keep-alive", "close", "": break
                case "upgrade": upgrade = true
                default: named.append(token)
                }
            }
        }
    }
}

/// One pass over header names, matched by length first so most names cost one comparison.
private struct HeaderScan {
    var hasConnection = false
    var hasHopByHop = false
    var hasKeepAlive = false
    var hasProxyConnection = false
    var hasTE = false
    var hasUpgrade = false
    var hasTransferEncoding = false
    var hasContentLength = false
    var hasXForwardedFor = false
    var hasXForwardedProto = false
    var hasForwarded = false

    init(_ headers: HTTPHeaders) {
        for (name, _) in headers {
            switch name.utf8.count {
            case 2:
                if name.equalsIgnoringASCIICase("te") { hasTE = true; hasHopByHop = true }
            case 7:
                if name.equalsIgnoringASCIICase("upgrade") { hasUpgrade = true; hasHopByHop = true }
            case 9:
                if name.equalsIgnoringASCIICase("forwarded") { hasForwarded = true }
            case 10:
                if name.equalsIgnoringASCIICase("connection") {
                    hasConnection = true
                    hasHopByHop = true
                } else if name.equalsIgnoringASCIICase("keep-alive") {
                    hasKeepAlive = true
                    hasHopByHop = true
                }
            case 14:
                if name.equalsIgnoringASCIICase("content-length") { hasContentLength = true }
            case 15:
                if name.equalsIgnoringASCIICase("x-forwarded-for") { hasXForwardedFor = true }
            case 16:
                if name.equalsIgnoringASCIICase("proxy-connection") { hasProxyConnection = true; hasHopByHop = true }
            case 17:
                if name.equalsIgnoringASCIICase("transfer-encoding") {
                    hasTransferEncoding = true
                } else if name.equalsIgnoringASCIICase("x-forwarded-proto") {
                    hasXForwardedProto = true
                }
            default:
                break
            }
        }
    }
}

extension String {
    /// ASCII case-insensitive equality against a lowercase literal, without allocating.
    fileprivate func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        let other = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        guard utf8.count == other.count else { return false }
        for (byte, expected) in zip(utf8, other) {
            let folded = (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
            if folded != expected { return false }
        }
        return true
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return slice
    }
}
