import FoundationEssentials
import Glibc
import MusterAPI
import NIOCore
import NIOHTTP1
import NIOPosix

/// Talks to musterd over its Unix socket: HTTP/1.1 + JSON, one connection a request, through
/// SwiftNIO's HTTP/1 client codec (no TLS, no connection pool: a CLI call makes one request).
struct ControlClient {
    let socketPath: String

    enum Failure: Error {
        /// Exit 3: no daemon answered.
        case unreachable(String)
        /// Exit 1: the daemon answered with an error.
        case refused(ErrorResponse, status: Int)
    }

    func get<Response: Decodable>(_ path: String, as type: Response.Type) async throws -> Response {
        try decode(type, from: try await send(.GET, path, body: Optional<String>.none))
    }

    /// A body as the daemon sent it: text (`/v1/logs/web?lines=20`, the status table with
    /// `accept: "text/plain"`) or JSON printed as it is.
    func text(_ path: String, accept: String? = nil) async throws -> String {
        String(buffer: try await send(.GET, path, body: Optional<String>.none, accept: accept))
    }

    func post<Body: Encodable, Response: Decodable>(_ path: String, _ body: Body?, as type: Response.Type) async throws -> Response {
        try decode(type, from: try await send(.POST, path, body: body))
    }

    /// Streams a response body (logs -f, events -f) chunk by chunk until the daemon closes it.
    func stream(_ path: String, onChunk: (ByteBuffer) throws -> Void) async throws {
        try await exchange(method: .GET, path: path, body: nil) { status, chunk in
            if status < 300 { try onChunk(chunk) }
        }
    }

    private func send<Body: Encodable>(_ method: HTTPMethod, _ path: String, body: Body?, accept: String? = nil) async throws -> ByteBuffer {
        let payload = try body.map { try JSONEncoder().encode($0) }
        var collected = ByteBuffer()
        try await exchange(method: method, path: path, body: payload, accept: accept) { _, chunk in
            var chunk = chunk
            guard collected.readableBytes + chunk.readableBytes <= 64 << 20 else {
                throw Failure.unreachable("musterd's answer to \(path) is larger than 64 MiB")
            }
            collected.writeBuffer(&chunk)
        }
        return collected
    }

    /// One request; `onBody` gets the status and each body chunk. A status of 300 or more ends
    /// in `Failure.refused` with the daemon's ErrorResponse.
    ///
    /// A GET whose connection closes before any answer began is sent again on a new connection
    /// (RFC 9110 9.2.2: idempotent requests may be retried). That is what a restart under socket
    /// activation looks like from here: the old musterd accepted the connection and exited before
    /// answering, while systemd kept the socket, so the next connection waits for the new one.
    /// Nothing was delivered to `onBody` in that case, so a retry cannot repeat output.
    private func exchange(method: HTTPMethod, path: String, body: Data?, accept: String? = nil,
                          onBody: (Int, ByteBuffer) throws -> Void) async throws {
        let attempts = method == .GET ? 5 : 1
        for attempt in 1...attempts {
            do {
                return try await exchangeOnce(method: method, path: path, body: body, accept: accept, onBody: onBody)
            } catch ClosedBeforeAnswer.closed where attempt < attempts {
                try await Task.sleep(for: .milliseconds(100 * attempt))
            } catch ClosedBeforeAnswer.closed(let why) {
                throw Failure.unreachable(why)
            }
        }
    }

    /// The connection ended before a response head arrived (the only failure worth a retry).
    private enum ClosedBeforeAnswer: Error { case closed(String) }

    private func exchangeOnce(method: HTTPMethod, path: String, body: Data?, accept: String?,
                              onBody: (Int, ByteBuffer) throws -> Void) async throws {
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            let why = Self.describe(error)
            throw Failure.unreachable("cannot reach musterd at \(socketPath): \(why)"
                + (why.hasPrefix("Permission") ? " (root and members of control_group may use it)" : " (is musterd running?)"))
        }
        var status = 0
        var refusal = ByteBuffer()
        do {
            try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
                head.headers.add(name: "Host", value: "musterd")
                head.headers.add(name: "Connection", value: "close")
                if let accept { head.headers.add(name: "Accept", value: accept) }
                if let body {
                    head.headers.add(name: "Content-Type", value: "application/json")
                    head.headers.add(name: "Content-Length", value: String(body.count))
                }
                try await outbound.write(.head(head))
                if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                try await outbound.write(.end(nil))
                for try await part in inbound {
                    switch part {
                    case .head(let response):
                        status = Int(response.status.code)
                    case .body(var chunk):
                        if status >= 300 { refusal.writeBuffer(&chunk) } else { try onBody(status, chunk) }
                    case .end:
                        return
                    }
                }
            }
        } catch let error where error is IOError || error is ChannelError || error is HTTPParserError {
            let why = "musterd at \(socketPath) closed the connection: \(Self.describe(error))"
            if status == 0 { throw ClosedBeforeAnswer.closed(why) }
            throw Failure.unreachable(why)
        }
        if status == 0 { throw ClosedBeforeAnswer.closed("musterd at \(socketPath) closed the connection without answering") }
        if status >= 300 { throw self.refusal(refusal, status: status) }
    }

    private func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
    }

    private func refusal(_ buffer: ByteBuffer, status: Int) -> Failure {
        let error = (try? decode(ErrorResponse.self, from: buffer))
            ?? ErrorResponse(error: "http_\(status)", message: String(String(buffer: buffer).filter { $0 != "\n" }))
        return .refused(error, status: status)
    }

    /// strerror's words for a failed connect ("Connection refused", "Permission denied", …).
    static func describe(_ error: Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("ECONNREFUSED") { return "Connection refused" }
        if text.contains("EACCES") || text.contains("ermission") { return "Permission denied" }
        if text.contains("ENOENT") || text.contains("No such file") { return "No such file or directory" }
        return text
    }
}
