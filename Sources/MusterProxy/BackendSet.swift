import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// The ready instances of one service, and the round-robin cursor over them.
///
/// The supervisor replaces the whole list when readiness changes (`setReady`); the data plane only
/// reads it (`next`). Requests that find nothing ready wait here (`waitForReady`) until an instance
/// becomes ready or their `queue_timeout` ends; their number is load for the autoscaler.
public final class BackendSet: Sendable {
    private struct Waiter {
        let promise: EventLoopPromise<Backend>
        let timeout: Scheduled<Void>
    }

    private struct State {
        var ready: [Backend] = []
        /// A canary's instances beside `ready`, sent `canaryWeight` of the requests.
        var canary: [Backend] = []
        var canaryWeight: Double = 0
        var waiters: [Int: Waiter] = [:]
        var nextWaiterID = 0
        var activator: (@Sendable () -> Void)?
    }

    private let state = NIOLockedValueBox(State())
    private let cursor = ManagedAtomic<Int>(0)
    private let canaryCursor = ManagedAtomic<Int>(0)
    /// Counts picks; pick n goes to the canary when ⌊(n+1)·w⌋ > ⌊n·w⌋, so exactly a share w of any
    /// run of picks does, spread evenly (a credit counter, not a coin).
    private let picks = ManagedAtomic<Int>(0)
    /// Requests (http) or connections (tcp) waiting for a ready instance right now.
    public let queued = ManagedAtomic<Int>(0)

    public init() {}

    /// `hook` runs each time a request starts waiting because no instance is ready: the
    /// autoscaler's activator, which starts instances for a service scaled to zero at once rather
    /// than at its next tick. It runs on the event loop, so it only hands the news on.
    public func onWaiting(_ hook: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.activator = hook }
    }

    /// The instances in rotation, in index order, then the canary's.
    public var ready: [Backend] { state.withLockedValue { $0.ready + $0.canary } }

    /// Replaces the rotation. Waiting requests are handed out over the new list.
    /// - Parameters:
    ///   - backends: the service's own instances.
    ///   - canary: a canary's instances, sent `canaryWeight` (0…1) of the requests while the
    ///     service has instances of its own; all of them when it has none.
    public func setReady(_ backends: [Backend], canary: [Backend] = [], canaryWeight: Double = 0) {
        let released: [Waiter] = state.withLockedValue { state in
            state.ready = backends.sorted { $0.index < $1.index }
            state.canary = canary.sorted { $0.index < $1.index }
            state.canaryWeight = min(max(canaryWeight, 0), 1)
            guard !backends.isEmpty || !canary.isEmpty else { return [] }
            let waiters = Array(state.waiters.values)
            state.waiters.removeAll()
            return waiters
        }
        for waiter in released {
            waiter.timeout.cancel()
            queued.wrappingDecrement(ordering: .relaxed)
            if let backend = next() { waiter.promise.succeed(backend) }
            else { waiter.promise.fail(ProxyError.noReadyInstance) }
        }
    }

    /// The next ready instance in round-robin order, skipping `excluded` (instances this request
    /// already failed on); nil when none is left.
    public func next(excluding excluded: [Backend] = []) -> Backend? {
        let (ready, canary, weight) = state.withLockedValue { ($0.ready, $0.canary, $0.canaryWeight) }
        guard !canary.isEmpty else { return Self.roundRobin(ready, cursor, excluding: excluded) }
        let n = picks.loadThenWrappingIncrement(ordering: .relaxed) & Int(Int32.max)
        let toCanary = ready.isEmpty || Self.isCanaryPick(n, weight: weight)
        // A request that already failed on one side tries the other rather than failing.
        if toCanary {
            return Self.roundRobin(canary, canaryCursor, excluding: excluded) ?? Self.roundRobin(ready, cursor, excluding: excluded)
        }
        return Self.roundRobin(ready, cursor, excluding: excluded) ?? Self.roundRobin(canary, canaryCursor, excluding: excluded)
    }

    /// Whether pick `n` (0, 1, 2, …) belongs to a share `weight` of picks, evenly spread.
    public static func isCanaryPick(_ n: Int, weight: Double) -> Bool {
        (Double(n + 1) * weight).rounded(.down) > (Double(n) * weight).rounded(.down)
    }

    private static func roundRobin(_ list: [Backend], _ cursor: ManagedAtomic<Int>, excluding excluded: [Backend]) -> Backend? {
        guard !list.isEmpty else { return nil }
        let start = cursor.loadThenWrappingIncrement(ordering: .relaxed) & Int(Int32.max)
        for offset in 0..<list.count {
            let candidate = list[(start &+ offset) % list.count]
            if !excluded.contains(where: { $0 === candidate }) { return candidate }
        }
        return nil
    }

    /// A ready instance now, or the first to become ready within `timeout`; fails with
    /// `ProxyError.queueTimeout` after that.
    public func waitForReady(on eventLoop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<Backend> {
        if let backend = next() { return eventLoop.makeSucceededFuture(backend) }
        let promise = eventLoop.makePromise(of: Backend.self)
        let (registered, activator): (Bool, (@Sendable () -> Void)?) = state.withLockedValue { state in
            guard state.ready.isEmpty && state.canary.isEmpty else { return (false, nil) }
            let id = state.nextWaiterID
            state.nextWaiterID += 1
            let timeoutTask = eventLoop.scheduleTask(in: timeout) { [weak self] in
                guard let self else { return }
                let expired = self.state.withLockedValue { $0.waiters.removeValue(forKey: id) }
                if let expired {
                    self.queued.wrappingDecrement(ordering: .relaxed)
                    expired.promise.fail(ProxyError.queueTimeout)
                }
            }
            state.waiters[id] = Waiter(promise: promise, timeout: timeoutTask)
            return (true, state.activator)
        }
        if registered {
            queued.wrappingIncrement(ordering: .relaxed)
            activator?()
            return promise.futureResult
        }
        // An instance became ready between the first look and taking the lock.
        if let backend = next() { promise.succeed(backend) } else { promise.fail(ProxyError.noReadyInstance) }
        return promise.futureResult
    }

    /// Fails every waiting request (the proxy is closing).
    public func failWaiters(_ error: ProxyError) {
        let waiters = state.withLockedValue { state in
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters {
            waiter.timeout.cancel()
            queued.wrappingDecrement(ordering: .relaxed)
            waiter.promise.fail(error)
        }
    }
}

public enum ProxyError: Error, Sendable, Equatable {
    /// No instance became ready within `queue_timeout`.
    case queueTimeout
    /// The rotation emptied again before a waiting request was handed an instance.
    case noReadyInstance
    /// The proxy is shutting down.
    case closing
}
