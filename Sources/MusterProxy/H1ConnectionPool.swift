import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The fast path's idle keep-alive connections to instances, one pool per event loop. A client connection only
/// ever borrows connections living on its own loop, so taking and returning one is a dictionary
/// lookup with no lock and no thread hop.
final class H1ConnectionPool {
    let eventLoop: any EventLoop
    /// Idle connections per instance, most recently used last (reused first, so the others age
    /// out when load drops).
    private var idle: [ObjectIdentifier: [H1BackendConnection]] = [:]
    private var idleCount = 0
    private var sweep: Scheduled<Void>?
    /// How often idle connections are checked for age and retirement.
    private static let sweepInterval: TimeAmount = .seconds(1)

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Pools by event loop. Entries keep their loop alive, so an identifier is never reused for
    /// another loop while it is in this table.
    private static let pools = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<H1ConnectionPool>]>([:])

    /// The pool of the loop the caller runs on; looked up once per client connection.
    static func forCurrentLoop(_ eventLoop: any EventLoop) -> H1ConnectionPool {
        let key = ObjectIdentifier(eventLoop)
        let bound = pools.withLockedValue { pools in
            if let existing = pools[key] { return existing }
            let created = NIOLoopBound(H1ConnectionPool(eventLoop: eventLoop), eventLoop: eventLoop)
            pools[key] = created
            return created
        }
        return bound.value
    }

    /// An idle connection to `backend`, or nil. A retired instance gets no reuse: its idle
    /// connections are closed instead.
    func take(for backend: Backend) -> H1BackendConnection? {
        let key = ObjectIdentifier(backend)
        guard idle[key]?.isEmpty == false else { return nil }
        if backend.retired.load(ordering: .relaxed) {
            close(idle.removeValue(forKey: key) ?? [])
            return nil
        }
        while let connection = idle[key]?.popLast() {
            idleCount -= 1
            connection.isPooled = false
            if connection.isAlive { return connection }
        }
        return nil
    }

    /// Takes a connection back after a finished exchange, unless its instance is retired.
    func park(_ connection: H1BackendConnection, now: NIODeadline) {
        guard connection.isAlive, !connection.backend.retired.load(ordering: .relaxed) else {
            connection.close()
            return
        }
        connection.idleSince = now
        connection.isPooled = true
        connection.resumeReads()
        idle[ObjectIdentifier(connection.backend), default: []].append(connection)
        idleCount += 1
        if sweep == nil { scheduleSweep() }
    }

    /// The connection closed while idle.
    func remove(_ connection: H1BackendConnection) {
        let key = ObjectIdentifier(connection.backend)
        guard let index = idle[key]?.firstIndex(where: { $0 === connection }) else { return }
        idle[key]?.remove(at: index)
        idleCount -= 1
        connection.isPooled = false
        if idle[key]?.isEmpty == true { idle.removeValue(forKey: key) }
    }

    /// Opens a new connection to `backend` on this loop; `completion` runs on this loop.
    func connect(
        to backend: Backend, connectTimeout: TimeAmount, idleTimeout: TimeAmount,
        completion: @escaping (Result<H1BackendConnection, any Error>) -> Void
    ) {
        let connection = H1BackendConnection(backend: backend, pool: self, idleTimeout: idleTimeout)
        guard let bootstrap = ClientBootstrap(validatingGroup: eventLoop) else {
            completion(.failure(ChannelError.operationUnsupported))
            return
        }
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        bootstrap
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try bound.value.install(in: channel.pipeline.syncOperations) }
            }
            .connect(to: backend.address)
            .assumeIsolated()
            .whenComplete { result in
                completion(result.map { _ in connection })
            }
    }

    private func scheduleSweep() {
        sweep = eventLoop.assumeIsolated().scheduleTask(in: Self.sweepInterval) { [self] in
            sweep = nil
            closeExpired(now: .now())
            if idleCount > 0 { scheduleSweep() }
        }
    }

    /// Closes connections idle longer than their `idle_timeout`, and any to retired instances.
    private func closeExpired(now: NIODeadline) {
        var expired: [H1BackendConnection] = []
        for key in Array(idle.keys) {
            idle[key]?.removeAll { connection in
                let done = !connection.isAlive || connection.backend.retired.load(ordering: .relaxed)
                    || now - connection.idleSince >= connection.idleTimeout
                if done { expired.append(connection) }
                return done
            }
            if idle[key]?.isEmpty == true { idle.removeValue(forKey: key) }
        }
        close(expired)
    }

    /// Closing fires channelInactive, which calls `remove`; clear the flag first so that finds
    /// nothing to do, and never mutate `idle` while iterating it.
    private func close(_ connections: [H1BackendConnection]) {
        idleCount -= connections.count
        for connection in connections {
            connection.isPooled = false
            connection.close()
        }
    }
}
