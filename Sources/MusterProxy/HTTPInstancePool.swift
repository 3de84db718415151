/// A relay worker's idle http-mode connections to instances. A client connection only borrows
/// connections of its own worker, so taking and returning one is a dictionary lookup with no lock
/// and no thread hop. Each pooled connection keeps its own slot in the worker: the worker's sweep
/// closes it once it has been idle for its `idle_timeout` or its instance retired.
///
/// A burst leaves as many idle connections as it had requests in flight, each a descriptor here
/// and a connection the instance keeps open. So, as HAProxy's `pool-purge-delay` does, every
/// 5 s half of those idle for 5 s or more are closed: the pool follows the load down in seconds
/// instead of holding a burst's thousands for a whole `idle_timeout`.
final class HTTPInstancePool {
    static let purgeDelay: Int64 = 5_000_000_000

    private unowned let worker: RelayWorker
    /// Idle connections per instance, most recently used last (reused first, so the others age
    /// out when load drops): the front is the longest idle.
    private var idle: [ObjectIdentifier: [HTTPInstanceConnection]] = [:]
    private var nextPurge: Int64 = .max

    init(worker: RelayWorker) {
        self.worker = worker
    }

    /// An idle connection to `backend`, or nil. A retired instance gets no reuse: its idle
    /// connections are closed instead.
    func take(for backend: Backend) -> HTTPInstanceConnection? {
        let key = ObjectIdentifier(backend)
        guard idle[key]?.isEmpty == false else { return nil }
        if backend.retired.load(ordering: .relaxed) {
            for connection in idle.removeValue(forKey: key) ?? [] {
                connection.isPooled = false
                connection.close()
            }
            return nil
        }
        while let connection = idle[key]?.popLast() {
            connection.isPooled = false
            if connection.isOpen { return connection }
        }
        return nil
    }

    /// Takes a connection back after a finished exchange, unless its instance is retired.
    func park(_ connection: HTTPInstanceConnection) {
        connection.owner = nil
        connection.readPaused = false
        guard connection.isOpen, connection.isConnected, !connection.hasQueuedBytes,
            !connection.backend.retired.load(ordering: .relaxed)
        else {
            connection.close()
            return
        }
        connection.idleSince = worker.now
        connection.isPooled = true
        connection.updateInterest()
        idle[ObjectIdentifier(connection.backend), default: []].append(connection)
        if let interval = connection.sweepInterval { worker.scheduleSweep(in: interval) }
        if nextPurge == .max {
            nextPurge = worker.now + Self.purgeDelay
            worker.scheduleSweep(in: Self.purgeDelay)
        }
    }

    /// From the worker's sweep: closes half (rounded up) of each instance's connections idle for
    /// `purgeDelay` or more, the longest idle first.
    func purge(now: Int64) {
        guard now >= nextPurge else { return }
        nextPurge = .max
        for (key, connections) in idle {
            let stale = connections.prefix { now - $0.idleSince >= Self.purgeDelay }.count
            let closing = (stale + 1) / 2
            guard closing > 0 else { continue }
            let victims = connections.prefix(closing)
            idle[key] = Array(connections.dropFirst(closing))
            if idle[key]?.isEmpty == true { idle.removeValue(forKey: key) }
            for victim in victims {
                victim.isPooled = false   // already out of `idle`
                victim.close()
            }
        }
        if !idle.isEmpty {
            nextPurge = now + Self.purgeDelay
            worker.scheduleSweep(in: Self.purgeDelay)
        }
    }

    /// The connection closed while idle.
    func remove(_ connection: HTTPInstanceConnection) {
        let key = ObjectIdentifier(connection.backend)
        connection.isPooled = false
        guard let index = idle[key]?.firstIndex(where: { $0 === connection }) else { return }
        idle[key]?.remove(at: index)
        if idle[key]?.isEmpty == true { idle.removeValue(forKey: key) }
    }
}
