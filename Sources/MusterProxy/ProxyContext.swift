import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What every connection of one service's proxy shares: the rotation, the counters, the current
/// settings. Handed to each accepted connection (`RelayConnection`, `HTTPRelayConnection`).
public final class ProxyContext: Sendable {
    public let service: String
    public let backends: BackendSet
    public let counters = ServiceCounters()
    public let eventLoopGroup: any EventLoopGroup
    public let logger: Logger
    private let currentSettings: NIOLockedValueBox<ProxySettings>

    init(service: String, settings: ProxySettings, backends: BackendSet, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.service = service
        self.backends = backends
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.currentSettings = NIOLockedValueBox(settings)
    }

    /// Read once per accepted connection; a connection keeps the settings it started with.
    public var settings: ProxySettings {
        get { currentSettings.withLockedValue { $0 } }
        set { currentSettings.withLockedValue { $0 = newValue } }
    }
}
