import FoundationEssentials
import Hummingbird
import MusterAPI
import MusterRuntime

enum JSONBody {
    /// Keys in declaration order: sorting them costs a third of a 200-instance status response.
    static let encoder = JSONEncoder()

    static func response<Value: Encodable>(_ value: Value, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    static func error(_ error: ControlError) -> Response {
        response(ErrorResponse(error: error.code, message: error.message, details: error.details),
                 status: HTTPResponse.Status(code: error.status))
    }
}

/// Turns every failure into the API's error shape, `{"error": code, "message": sentence}`, and
/// checks the caller's credentials before anything else runs.
struct ControlMiddleware: RouterMiddleware {
    typealias Context = ControlContext
    let authorizer: PeerAuthorizer

    func handle(_ request: Request, context: ControlContext, next: (Request, ControlContext) async throws -> Response) async throws -> Response {
        if case .refused(let why) = await authorizer.decide(channel: context.channel) {
            return JSONBody.error(ControlError(status: 403, code: "forbidden", message: "permission denied: \(why)"))
        }
        do {
            return try await next(request, context)
        } catch {
            return Self.errorResponse(error, request: request, allowedMethods: { ControlAPI.methods(allowedOn: $0) })
        }
    }

    /// Every failure in the API's error shape; shared with the dashboard's listener.
    /// - Parameter allowedMethods: the methods served on a path, for a 405 instead of a 404.
    static func errorResponse(_ error: any Error, request: Request, allowedMethods: (String) -> [String]) -> Response {
        switch error {
        case let error as ControlError:
            return JSONBody.error(error)
        case let error as DecodingError:
            return JSONBody.error(.badRequest("the request body is not what this endpoint takes: \(Self.describe(error))"))
        case let error as HTTPResponseError where error.status == .notFound && !allowedMethods(request.uri.path).isEmpty:
            // The path exists, the method does not: 405 and the methods it takes, as RFC 9110 asks.
            let allowed = allowedMethods(request.uri.path)
            var response = JSONBody.error(ControlError(status: 405, code: "method_not_allowed",
                                                       message: "\(request.uri.path) takes \(allowed.joined(separator: " or ")), not \(request.method)"))
            response.headers[.allow] = allowed.joined(separator: ", ")
            return response
        case let error as HTTPResponseError:
            let status = error.status
            let code = status == .notFound ? "not_found" : status.code < 500 ? "bad_request" : "internal"
            var message = status == .notFound ? "no such endpoint: \(request.method) \(request.uri.path)" : "\(status.reasonPhrase)"
            if let httpError = error as? HTTPError, let text = httpError.body { message = text }
            return JSONBody.error(ControlError(status: status.code, code: code, message: message))
        default:
            return JSONBody.error(ControlError(status: 500, code: "internal", message: "\(error)"))
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "missing field \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            "wrong type at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\""
        case .dataCorrupted(let context): context.debugDescription
        @unknown default: "\(error)"
        }
    }
}
