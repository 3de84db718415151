import MusterCore
import MusterRuntime
import Synchronization

/// The dashboard's tokens, shared by the control API (which issues them to callers it let in)
/// and the dashboard's listener (which checks them on every action).
public final class DashboardAccess: Sendable {
    /// The page's address as a browser on this host reaches it ("http://127.0.0.1:9090").
    public let baseURL: String
    private let tokens = Mutex(DashboardTokens())
    private let clock: @Sendable () -> Double

    public init(listen: ListenAddress, clock: @escaping @Sendable () -> Double = { WallClock.now() }) {
        // A wildcard listener is reached on this host through loopback.
        let host = switch listen.host {
        case "0.0.0.0", "": "127.0.0.1"
        case "::": "[::1]"
        case let name where name.contains(":"): "[\(name)]"
        case let name: name
        }
        baseURL = "http://\(host):\(listen.port)"
        self.clock = clock
    }

    /// A new token: 32 bytes from the kernel's random source, as hex.
    public func issue(lifetime: Duration) -> (token: String, expiresAt: Double) {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
        }.joined()
        let expires = tokens.withLock { $0.issue(token, now: clock(), lifetime: lifetime) }
        return (token, expires)
    }

    /// When `token` stops being good; nil for a wrong or expired one.
    public func expiry(of token: String?) -> Double? {
        guard let token, !token.isEmpty else { return nil }
        return tokens.withLock { $0.expiry(of: token, now: clock()) }
    }
}
