import NIOCore
import NIOHTTP1

/// One request and its response as they pass through the proxy: which instance it went to, how
/// far each direction has got, and what the counters will be told when it ends.
struct HTTPExchange {
    enum RequestPhase {
        /// No instance connection yet (queued for a ready instance, or connecting); request
        /// parts wait in the client handler's inbox.
        case waitingForInstance
        /// Head sent; body parts are forwarded as they arrive.
        case streaming
        /// The request's end has been forwarded.
        case sent
    }

    let id: UInt64
    /// The request as the instance gets it (hop-by-hop headers out, forwarding headers in); kept
    /// to send again when a retry is allowed.
    let head: HTTPRequestHead
    let clientVersion: HTTPVersion
    let isHEAD: Bool
    let isUpgrade: Bool
    let isRetryable: Bool
    /// A trailer-less end of request produces no bytes, so it is not written at all.
    let requestEndIsEmpty: Bool
    /// Likewise for the response's end, known once its head has been rewritten.
    var responseEndIsEmpty = false
    /// The client connection closes once this exchange is done.
    var closeClient: Bool

    var requestPhase = RequestPhase.waitingForInstance
    /// The client's end of request has been read (and forwarded, if a connection was there).
    var requestEnded = false
    var backend: Backend?
    var connection: HTTPBackendConnection?
    /// Instances this request failed on; retries go elsewhere.
    var tried: [Backend] = []
    var attempts = 0
    /// `backend.counters.inFlight` counts this request right now.
    var isInFlight = false
    var sentAt: UInt64 = 0
    /// Any response head arrived, a 100 Continue included: the instance has answered.
    var sawResponseHead = false
    /// The final response head went to the client: from here on a failure can only close.
    var responseStarted = false
    /// A 101 went to the client; at the response's end both sides become a tunnel.
    var upgrading = false
    var instanceKeepAlive = true
    var bytesToInstance = 0
    var bytesFromInstance = 0

    init(id: UInt64, request: HTTPForwardedRequest, clientHead: HTTPRequestHead, closeClient: Bool) {
        self.id = id
        self.head = request.head
        self.clientVersion = clientHead.version
        self.isHEAD = clientHead.method == .HEAD
        self.isUpgrade = request.isUpgrade
        self.isRetryable = request.isRetryable
        self.requestEndIsEmpty = request.endIsEmpty
        self.closeClient = closeClient
    }
}
