/// A refusal the control API turns into `{"error": code, "message": …}` with `status`.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var details: [String]?

    public init(status: Int, code: String, message: String, details: [String]? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { message }

    public static func notFound(_ message: String) -> ControlError { .init(status: 404, code: "not_found", message: message) }
    public static func badRequest(_ message: String) -> ControlError { .init(status: 400, code: "bad_request", message: message) }
    public static func shuttingDown() -> ControlError {
        .init(status: 503, code: "shutting_down", message: "musterd is shutting down")
    }
}

/// Why an instance's output cannot go to journald.
public struct JournalUnavailable: Error, Sendable {
    public var message: String
    public init(message: String) { self.message = message }
}
