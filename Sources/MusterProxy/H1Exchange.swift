import NIOCore

/// One request and its response in http mode. A class: the connection reads and writes its
/// fields many times per request, and a struct in an optional stored property would be copied
/// whole (every reference in it retained and released) on each of those accesses.
final class H1Exchange {
    enum RequestPhase {
        /// No instance connection yet; the request's body waits in the client connection's buffer.
        case waitingForInstance
        /// Head sent; body bytes are forwarded as they arrive.
        case streaming
        /// The request's end has been forwarded.
        case sent
    }

    let id: UInt64
    /// The head as the instance gets it, kept to send again on a retry.
    let head: ByteBuffer
    let clientMinor: Int
    let isHEAD: Bool
    let isUpgrade: Bool
    let isRetryable: Bool
    var closeClient: Bool
    /// Where the request body ends.
    var requestBody: H1BodyFramer
    /// Where the response body ends; nil until the final response head arrived.
    var responseBody: H1BodyFramer?
    /// The response body goes out without chunk framing (an HTTP/1.0 client).
    var dechunk = false

    var requestPhase = RequestPhase.waitingForInstance
    var requestEnded = false
    var backend: Backend?
    var connection: HTTPInstanceConnection?
    var tried: [Backend] = []
    var attempts = 0
    var isInFlight = false
    var sentAt: UInt64 = 0
    var sawResponseHead = false
    var responseStarted = false
    /// A 101 went to the client: both sides become a tunnel.
    var upgrading = false
    var instanceKeepAlive = true
    var bytesToInstance = 0
    var bytesFromInstance = 0

    init(
        id: UInt64, head: ByteBuffer, clientMinor: Int, isHEAD: Bool, isUpgrade: Bool, isRetryable: Bool, closeClient: Bool,
        requestBody: H1BodyFramer
    ) {
        self.id = id
        self.head = head
        self.clientMinor = clientMinor
        self.isHEAD = isHEAD
        self.isUpgrade = isUpgrade
        self.isRetryable = isRetryable
        self.closeClient = closeClient
        self.requestBody = requestBody
    }
}
