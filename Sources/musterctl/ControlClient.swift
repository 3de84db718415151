import AsyncHTTPClient
import FoundationEssentials
import Glibc
import MusterAPI
import NIOCore

/// Talks to musterd over its Unix socket: HTTP/1.1 + JSON through AsyncHTTPClient's
/// `http+unix://` scheme.
struct ControlClient {
    let socketPath: String

    enum Failure: Error {
        /// Exit 3: no daemon answered.
        case unreachable(String)
        /// Exit 1: the daemon answered with an error.
        case refused(ErrorResponse, status: Int)
    }

    private var baseURL: String {
        // The socket path is the URL's host, percent-encoded (RFC 3986 unreserved bytes stay).
        var encoded = ""
        for byte in socketPath.utf8 {
            let char = Character(UnicodeScalar(byte))
            if byte < 0x80, char.isLetter || char.isNumber || "-._~".contains(char) { encoded.append(char) }
            else { encoded += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true) }
        }
        return "http+unix://\(encoded)"
    }

    func get<Response: Decodable>(_ path: String, as type: Response.Type) async throws -> Response {
        try decode(type, from: try await send("GET", path, body: Optional<String>.none))
    }

    /// A body that is text, not JSON (`/v1/logs/web?lines=20`).
    func text(_ path: String) async throws -> String {
        String(buffer: try await send("GET", path, body: Optional<String>.none))
    }

    func post<Body: Encodable, Response: Decodable>(_ path: String, _ body: Body?, as type: Response.Type) async throws -> Response {
        try decode(type, from: try await send("POST", path, body: body))
    }

    /// Streams a response body (logs -f, events -f) chunk by chunk until the daemon closes it.
    func stream(_ path: String, onChunk: (ByteBuffer) throws -> Void) async throws {
        try await withClient { client in
            let response = try await execute(client, method: "GET", path: path, body: nil)
            guard response.status.code < 300 else {
                let body = try await response.body.collect(upTo: 1 << 20)
                throw refusal(body, status: Int(response.status.code))
            }
            for try await chunk in response.body { try onChunk(chunk) }
        }
    }

    private func send<Body: Encodable>(_ method: String, _ path: String, body: Body?) async throws -> ByteBuffer {
        let payload = try body.map { try JSONEncoder().encode($0) }
        return try await withClient { client in
            let response = try await execute(client, method: method, path: path, body: payload)
            let bytes = try await response.body.collect(upTo: 64 << 20)
            guard response.status.code < 300 else { throw refusal(bytes, status: Int(response.status.code)) }
            return bytes
        }
    }

    private func execute(_ client: HTTPClient, method: String, path: String, body: Data?) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .init(rawValue: method)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            return try await client.execute(request, timeout: .hours(24 * 365))
        } catch {
            throw Failure.unreachable(Self.describe(error, socketPath: socketPath))
        }
    }

    private func withClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        // One plain connect first: AsyncHTTPClient retries a failed connect until the request's
        // deadline, so a socket nobody listens on (a stale file: ECONNREFUSED) or one this user
        // may not open (EACCES) would hang musterctl instead of ending with exit 3 and why.
        if let failure = Self.probeConnect(socketPath) {
            throw Failure.unreachable("cannot reach musterd at \(socketPath): \(failure)" + (failure.hasPrefix("Permission") ? " (root and members of control_group may use it)" : " (is musterd running?)"))
        }
        // The shared client lives until the process exits, a few milliseconds later: shutting a
        // client down cleanly costs more than the request itself.
        return try await body(HTTPClient.shared)
    }

    /// Why a connect to the Unix socket at `path` fails (strerror), or nil when it succeeds.
    static func probeConnect(_ path: String) -> String? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return "the socket path is too long" }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0 ? nil : String(cString: strerror(errno))
    }

    private func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
    }

    private func refusal(_ buffer: ByteBuffer, status: Int) -> Failure {
        let error = (try? decode(ErrorResponse.self, from: buffer))
            ?? ErrorResponse(error: "http_\(status)", message: String(String(buffer: buffer).filter { $0 != "\n" }))
        return .refused(error, status: status)
    }

    static func describe(_ error: Error, socketPath: String) -> String {
        var text = "\(error)"
        if let io = error as? IOError { text = String(cString: strerror(io.errnoCode)) }
        else if text.contains("connectionRefused") || text.contains("ECONNREFUSED") { text = "Connection refused" }
        else if text.contains("EACCES") || text.contains("ermission") { text = "Permission denied" }
        return "cannot reach musterd at \(socketPath): \(text) (is musterd running?)"
    }
}
