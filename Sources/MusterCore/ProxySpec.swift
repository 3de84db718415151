/// A service's `[proxy]` table: the listener musterd opens in front of its instances.
public struct ProxySpec: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Equatable, CaseIterable, Codable {
        case http, tcp
    }

    /// How a request (http) or connection (tcp) picks its instance.
    public enum Balance: String, Sendable, Equatable, CaseIterable, Codable {
        /// Each ready instance in turn.
        case roundRobin = "round-robin"
        /// Power of two choices on requests (connections) in flight.
        case leastRequest = "least-request"
    }

    /// Addresses as written ("127.0.0.1:8080", "[::1]:8080"); parsed by `ListenAddress`.
    public var listen: [ListenAddress]
    public var mode: Mode = .http
    public var maxConnections: Int = 10_000
    public var connectTimeout: Duration = .seconds(1)
    public var idleTimeout: Duration = .seconds(60)
    public var retries: Int = 2
    public var drainTimeout: Duration = .seconds(30)
    public var queueTimeout: Duration = .seconds(10)
    public var balance: Balance = .roundRobin
    /// Failed connects (and, in http mode, 5xx answers) in a row that take an instance out of the
    /// rotation; 0 = never.
    public var ejectAfter: Int = 5
    /// How long the first ejection lasts; each further one in a row lasts twice as long.
    public var ejectFor: Duration = .seconds(10)

    public init(listen: [ListenAddress], mode: Mode = .http) {
        self.listen = listen
        self.mode = mode
    }
}

/// One `host:port` a proxy listens on. IPv6 hosts are written in brackets: `[::1]:8080`.
public struct ListenAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80"; nil when it is not one of those shapes.
    public static func parse(_ text: String) -> ListenAddress? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, let port = Int(portText), (1...65_535).contains(port) else { return nil }
        return ListenAddress(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A service's `[health]` table: how an instance proves it is ready for traffic.
public struct HealthSpec: Sendable, Equatable, Codable {
    public enum Check: String, Sendable, Equatable, CaseIterable, Codable {
        case none, tcp, http, exec, notify
    }

    public var check: Check = .none
    public var path: String = "/"
    public var command: [String] = []
    public var interval: Duration = .seconds(1)
    public var timeout: Duration = .seconds(1)
    /// Successes in a row to become ready.
    public var rise: Int = 2
    /// Failures in a row to leave the rotation.
    public var fall: Int = 3
    public var restartUnhealthy: Bool = true

    public init(check: Check = .none) {
        self.check = check
    }
}
