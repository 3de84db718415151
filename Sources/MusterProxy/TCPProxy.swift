import Logging
import NIOCore
import NIOPosix

/// tcp mode: one instance per client connection, bytes both ways with backpressure and half-close.
enum TCPProxy {
    static func configure(_ channel: any Channel, context: ProxyContext, settings: ProxySettings) -> EventLoopFuture<Void> {
        let session = TCPSession(proxy: context, settings: settings, eventLoop: channel.eventLoop)
        let client = GlueHandler(side: .client, session: session)
        session.client = client
        do {
            // Called on the channel's event loop, before it is registered: nothing is read until
            // an instance is connected (the client handler holds reads back until then).
            try channel.pipeline.syncOperations.addHandler(client)
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }
}

/// One proxied connection: picks the instance (round robin, queueing while none is ready),
/// connects with retries, pairs the two `GlueHandler`s, keeps the books and the idle timer.
/// Lives on the client channel's event loop, as does the instance's channel. The two handlers
/// own the session (the pipelines own the handlers); it only points back at them weakly.
final class TCPSession {
    let proxy: ProxyContext
    let settings: ProxySettings
    let eventLoop: any EventLoop
    weak var client: GlueHandler?
    private weak var instance: GlueHandler?
    /// The instance this connection was handed to, once connected.
    private var backend: Backend?
    private var connectStarted = NIODeadline.uptimeNanoseconds(0)
    /// Instances this connection failed to connect to, in order.
    private var failed: [Backend] = []
    private var clientOpen = true
    private var instanceOpen = false
    private var queueDeadline: NIODeadline?
    /// Set by either side after each read burst; the idle timer clears it.
    var sawTraffic = false
    private var silentTicks = 0
    private var idleTimer: Scheduled<Void>?

    init(proxy: ProxyContext, settings: ProxySettings, eventLoop: any EventLoop) {
        self.proxy = proxy
        self.settings = settings
        self.eventLoop = eventLoop
    }

    // MARK: Events from the two sides

    func sideBecameActive(_ side: GlueHandler) {
        switch side.side {
        case .client:
            pickInstance()
        case .instance:
            instanceConnected(side)
        }
    }

    func sideBecameInactive(_ side: GlueHandler) {
        switch side.side {
        case .client:
            clientOpen = false
        case .instance:
            instanceOpen = false
            if let backend {
                backend.counters.countResponse(status: 200)
                backend.counters.inFlight.wrappingDecrement(ordering: .relaxed)
            }
        }
        if !clientOpen && !instanceOpen {
            idleTimer?.cancel()
            idleTimer = nil
        }
    }

    func sideFailed(_ side: GlueHandler, error: any Error) {
        proxy.logger.debug(
            "tcp connection failed",
            metadata: ["side": "\(side.side)", "instance": "\(backend.map { "\($0)" } ?? "-")", "error": "\(error)"])
        client?.abort()
        instance?.abort()
    }

    // MARK: Choosing and connecting

    private func pickInstance() {
        if let backend = proxy.backends.next() {
            connect(to: backend)
        } else {
            waitForInstance()
        }
    }

    /// No instance is ready: hold the client (nothing is read from it) until one is, or until
    /// `queue_timeout`.
    private func waitForInstance() {
        let deadline = queueDeadline ?? .now() + settings.queueTimeout
        queueDeadline = deadline
        proxy.backends.waitForReady(on: eventLoop, timeout: deadline - .now())
            .assumeIsolated()
            .whenComplete { [self] result in
                guard clientOpen else { return }
                switch result {
                case .success(let backend):
                    connect(to: backend)
                case .failure(ProxyError.noReadyInstance) where NIODeadline.now() < deadline:
                    // The rotation emptied again before this connection's turn: keep waiting.
                    waitForInstance()
                case .failure(let error):
                    if error as? ProxyError != .closing {
                        proxy.counters.queueTimeouts.wrappingIncrement(ordering: .relaxed)
                    }
                    proxy.logger.debug("tcp connection: no instance became ready", metadata: ["error": "\(error)"])
                    client?.abort()
                }
            }
    }

    private func connect(to backend: Backend) {
        let started = NIODeadline.now()
        let session = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                let session = session.value
                let handler = GlueHandler(side: .instance, session: session)
                session.instance = handler
                session.backend = backend
                session.connectStarted = started
                do {
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(to: backend.address)
            .assumeIsolated()
            .whenFailure { [self] error in
                connectFailed(backend, error: error)
            }
    }

    private func connectFailed(_ backend: Backend, error: any Error) {
        backend.counters.connectFailures.wrappingIncrement(ordering: .relaxed)
        instance = nil
        self.backend = nil
        failed.append(backend)
        proxy.logger.debug("tcp connect failed", metadata: ["instance": "\(backend)", "error": "\(error)"])
        guard clientOpen else { return }
        if failed.count <= settings.retries, let next = proxy.backends.next(excluding: failed) {
            connect(to: next)
            return
        }
        backend.counters.countResponse(status: 0)
        proxy.counters.failedRequests.wrappingIncrement(ordering: .relaxed)
        client?.abort()
    }

    private func instanceConnected(_ handler: GlueHandler) {
        guard let backend else { return }
        instanceOpen = true
        backend.counters.inFlight.wrappingIncrement(ordering: .relaxed)
        backend.counters.latency.record(nanoseconds: (NIODeadline.now() - connectStarted).nanoseconds)
        guard clientOpen, let client else {
            // The client left while we were connecting.
            handler.abort()
            return
        }
        GlueHandler.pair(client: client, instance: handler, backend: backend)
        startIdleTimer()
    }

    // MARK: Idle timeout

    /// Ticks every quarter idle timeout, at most every 5 s (which also bounds how stale the byte
    /// counters get). Enough silent ticks in a row to cover the idle timeout close both sides: a
    /// connection goes between one idle timeout and one tick more after its last byte. Reads
    /// only set a flag; no clock is read on the data path.
    private func startIdleTimer() {
        let idle = max(settings.idleTimeout.nanoseconds, 1_000_000)
        let tick = min(idle / 4, TimeAmount.seconds(5).nanoseconds)
        let silentTicksToClose = Int((idle + tick - 1) / tick)
        idleTimer = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(tick)) { [self] in
            idleTimer = nil
            guard clientOpen || instanceOpen else { return }
            client?.reportBytes()
            instance?.reportBytes()
            if sawTraffic {
                sawTraffic = false
                silentTicks = 0
            } else {
                silentTicks += 1
                if silentTicks >= silentTicksToClose {
                    proxy.logger.debug("tcp connection idle: closing", metadata: ["instance": "\(backend.map { "\($0)" } ?? "-")"])
                    client?.abort()
                    instance?.abort()
                    return
                }
            }
            startIdleTimer()
        }
    }
}
