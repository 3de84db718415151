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

    /// A body that is text, not JSON (`/v1/logs/web?lines=20`).
    func text(_ path: String) async throws -> String {
        String(buffer: try await send(.GET, path, body: Optional<String>.none))
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

    private func send<Body: Encodable>(_ method: HTTPMethod, _ path: String, body: Body?) async throws -> ByteBuffer {
        let payload = try body.map { try JSONEncoder().encode($0) }
        var collected = ByteBuffer()
        try await exchange(method: method, path: path, body: payload) { _, chunk in
            var chunk = chunk
            guard collected.readableBytes + chunk.readableBytes <= 64 << 20 else {
                throw Failure.unreachable("musterd's answer to \(path) is larger than 64 MiB")
            }
            collected.writeBuffer(&chunk)
        }
        return collected
    }

    /// One request on a fresh connection; `onBody` gets the status and each body chunk. A
    /// status of 300 or more ends in `Failure.refused` with the daemon's ErrorResponse.
    private func exchange(method: HTTPMethod, path: String, body: Data?,
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
            throw Failure.unreachable("musterd at \(socketPath) closed the connection: \(Self.describe(error))")
        }
        if status == 0 { throw Failure.unreachable("musterd at \(socketPath) closed the connection without answering") }
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
