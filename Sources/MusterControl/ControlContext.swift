import Hummingbird
import NIOCore

/// The request context of the control API: Hummingbird's core storage plus the connection's
/// channel, from which the peer's credentials are read.
public struct ControlContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
