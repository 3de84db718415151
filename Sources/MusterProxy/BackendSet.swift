import Atomics
import NIOConcurrencyHelpers
import MusterCore
import NIOCore

/// The ready instances of one service, and the cursor over them.
///
/// The supervisor replaces the whole list when readiness changes (`setReady`); the data plane only
/// reads it (`next`), and reports each connect and answer (`reportSuccess`, `reportFailure`):
/// instances failing `eject_after` times in a row are left out of `next` for a while (passive
/// outlier ejection, `OutlierDetector`). Requests that find nothing ready wait here
/// (`waitForReady`) until an instance becomes ready or their `queue_timeout` ends; their number
/// is load for the autoscaler.
public final class BackendSet: Sendable {
    public typealias Ejection = OutlierDetector<ObjectIdentifier>.Ejection

    /// What ended an instance's run of successes, for the operator.
    public enum Failure: Sendable, Equatable, CustomStringConvertible {
        case connect
        case status(Int)

        public var description: String {
            switch self {
            case .connect: "connect failed"
            case .status(let code): "HTTP \(code)"
            }
        }
    }

    /// Reported through `onEjection`, off the lock.
    public enum EjectionChange: Sendable {
        /// `backend` left the rotation after `failures` failures in a row, the last one `last`.
        case ejected(Backend, Ejection, failures: Int, last: Failure)
        /// `backend` is back: its time was up, the rotation shrank under the half cap, or
        /// ejection was turned off.
        case returned(Backend)
    }

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
        var balance: ProxySpec.Balance = .roundRobin
        var detector = OutlierDetector<ObjectIdentifier>(policy: .init(ejectAfter: 0, ejectFor: .seconds(10)))
        /// The instances `detector` holds out now: what `next` skips. Usually empty.
        var ejected: [Backend] = []
        var nextExpiry: ContinuousClock.Instant?
        var expiryTimer: Scheduled<Void>?
        var ejectionHook: (@Sendable (EjectionChange) -> Void)?
    }

    private let state = NIOLockedValueBox(State())
    private let now: @Sendable () -> ContinuousClock.Instant
    /// Where the timer runs that brings ejected instances back on time (and says so); without
    /// one they come back at the first pick after their time.
    private let timers: (any EventLoopGroup)?
    /// Different for each set, so two services' least-request draws do not run in step.
    private let seed = UInt64.random(in: 0...UInt64.max)
    private let cursor = ManagedAtomic<Int>(0)
    private let canaryCursor = ManagedAtomic<Int>(0)
    /// Counts picks; pick n goes to the canary when ⌊(n+1)·w⌋ > ⌊n·w⌋, so exactly a share w of any
    /// run of picks does, spread evenly (a credit counter, not a coin).
    private let picks = ManagedAtomic<Int>(0)
    /// Requests (http) or connections (tcp) waiting for a ready instance right now.
    public let queued = ManagedAtomic<Int>(0)

    /// - Parameters:
    ///   - timers: runs the timer that ends ejections.
    ///   - now: the clock ejections are timed by (tests pass their own).
    public init(timers: (any EventLoopGroup)? = nil, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.timers = timers
        self.now = now
    }

    /// Applies `[proxy] balance`, `eject_after` and `eject_for`. Ejections in force run their
    /// course (they end at once when ejection is turned off).
    public func configure(balance: ProxySpec.Balance, ejectAfter: Int, ejectFor: Duration) {
        let returned: [Backend] = state.withLockedValue { state in
            state.balance = balance
            let ids = state.detector.update(.init(ejectAfter: ejectAfter, ejectFor: ejectFor), now: now())
            return takeReturned(ids, &state)
        }
        announceReturns(returned)
    }

    /// `hook` hears of every ejection and return (on whichever thread caused it: it only hands
    /// the news on).
    public func onEjection(_ hook: @escaping @Sendable (EjectionChange) -> Void) {
        state.withLockedValue { $0.ejectionHook = hook }
    }

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
        let (released, returned): ([Waiter], [Backend]) = state.withLockedValue { state in
            state.ready = backends.sorted { $0.index < $1.index }
            state.canary = canary.sorted { $0.index < $1.index }
            state.canaryWeight = min(max(canaryWeight, 0), 1)
            let members = Set(backends.map(ObjectIdentifier.init))
            let returned = takeReturned(state.detector.retain(members, now: now()), &state)
            state.ejected.removeAll { !members.contains(ObjectIdentifier($0)) }
            state.nextExpiry = state.detector.nextExpiry
            guard !backends.isEmpty || !canary.isEmpty else { return ([], returned) }
            let waiters = Array(state.waiters.values)
            state.waiters.removeAll()
            return (waiters, returned)
        }
        announceReturns(returned)
        for waiter in released {
            waiter.timeout.cancel()
            queued.wrappingDecrement(ordering: .relaxed)
            if let backend = next() { waiter.promise.succeed(backend) }
            else { waiter.promise.fail(ProxyError.noReadyInstance) }
        }
    }

    /// The next ready instance by the `balance` policy, skipping ejected instances (never a
    /// canary's: see `reportFailure`) and `excluded` (instances this request already failed
    /// on); nil when none is left.
    public func next(excluding excluded: [Backend] = []) -> Backend? {
        let (inRotation, canary, weight, balance, ejected, returned) = state.withLockedValue { state in
            var returned: [Backend] = []
            if let expiry = state.nextExpiry, now() >= expiry { returned = expireLocked(&state) }
            return (state.ready, state.canary, state.canaryWeight, state.balance, state.ejected, returned)
        }
        if !returned.isEmpty { announceReturns(returned) }
        var ready = inRotation
        if !ejected.isEmpty {
            // Out of the list, not merely skipped: round robin stays even over the rest (a skip
            // would hand the ejected instance's turns to its neighbour).
            ready.removeAll { candidate in ejected.contains { $0 === candidate } }
        }
        let isEligible: (Backend) -> Bool = excluded.isEmpty ? { _ in true } : { candidate in !excluded.contains { $0 === candidate } }
        let chosen: Backend?
        if canary.isEmpty {
            chosen = pick(ready, cursor, balance, isEligible)
        } else {
            let n = picks.loadThenWrappingIncrement(ordering: .relaxed) & Int(Int32.max)
            let toCanary = ready.isEmpty || Self.isCanaryPick(n, weight: weight)
            // A request that already failed on one side tries the other rather than failing.
            chosen = toCanary
                ? pick(canary, canaryCursor, balance, isEligible) ?? pick(ready, cursor, balance, isEligible)
                : pick(ready, cursor, balance, isEligible) ?? pick(canary, canaryCursor, balance, isEligible)
        }
        if chosen == nil, !excluded.isEmpty, !ejected.isEmpty {
            // A retry that has failed on everything in rotation tries an ejected instance rather
            // than answer 502: under overload an instance is ejected for refused connects (a full
            // backlog), and the rest then refuse too (chaos case 6 lost 135 of 1,000 requests so).
            let held = inRotation.filter { candidate in ejected.contains { $0 === candidate } }
            return pick(held, cursor, balance, isEligible)
        }
        return chosen
    }

    /// Whether pick `n` (0, 1, 2, …) belongs to a share `weight` of picks, evenly spread.
    public static func isCanaryPick(_ n: Int, weight: Double) -> Bool {
        (Double(n + 1) * weight).rounded(.down) > (Double(n) * weight).rounded(.down)
    }

    private func pick(_ list: [Backend], _ cursor: ManagedAtomic<Int>, _ balance: ProxySpec.Balance,
                      _ isEligible: (Backend) -> Bool) -> Backend? {
        guard !list.isEmpty else { return nil }
        let start = cursor.loadThenWrappingIncrement(ordering: .relaxed)
        switch balance {
        case .roundRobin:
            return Balancer.roundRobin(list, start: start, isEligible: isEligible)
        case .leastRequest:
            return Balancer.leastRequest(list, start: start, random: Balancer.mix(UInt64(truncatingIfNeeded: start) ^ seed),
                                         isEligible: isEligible, load: { $0.counters.inFlight.load(ordering: .relaxed) })
        }
    }

    // MARK: Outlier ejection

    /// A connect to `backend` succeeded or it answered below 500: its run of failures ends. One
    /// relaxed load when it had none (every request of a healthy instance comes here).
    public func reportSuccess(_ backend: Backend) {
        guard backend.outlierTracked.load(ordering: .relaxed) else { return }
        state.withLockedValue { state in
            state.detector.recordSuccess(of: ObjectIdentifier(backend), now: now())
            if !state.detector.isTracking(ObjectIdentifier(backend)) {
                backend.outlierTracked.store(false, ordering: .relaxed)
            }
        }
    }

    /// A connect to `backend` failed, or (http) it answered 5xx.
    public func reportFailure(_ backend: Backend, _ failure: Failure) {
        let change: EjectionChange? = state.withLockedValue { state in
            guard state.detector.policy.isEnabled else { return nil }
            // Only the service's own instances in the rotation count: one that just left it is not
            // judged, and a canary's are judged by the canary judge (which rolls a failing canary
            // back; resting it would starve the judge of requests and promote it on health alone).
            let memberCount = state.ready.count
            guard state.ready.contains(where: { $0 === backend }) else { return nil }
            let time = now()
            let outcome = state.detector.recordFailure(of: ObjectIdentifier(backend), memberCount: memberCount, now: time)
            backend.outlierTracked.store(true, ordering: .relaxed)
            guard case .ejected(let ejection) = outcome else { return nil }
            state.ejected.append(backend)
            state.nextExpiry = state.detector.nextExpiry
            scheduleExpiry(&state, now: time)
            backend.counters.ejections.wrappingIncrement(ordering: .relaxed)
            return .ejected(backend, ejection, failures: state.detector.policy.ejectAfter, last: failure)
        }
        if let change { announce(change) }
    }

    /// `backend`'s ejection while it lasts.
    public func ejection(of backend: Backend) -> Ejection? {
        state.withLockedValue { $0.detector.ejection(of: ObjectIdentifier(backend), now: now()) }
    }

    /// Instances out of the rotation now.
    public var ejectedCount: Int {
        state.withLockedValue { state in state.ejected.filter { state.detector.ejection(of: ObjectIdentifier($0), now: now()) != nil }.count }
    }

    public var balance: ProxySpec.Balance { state.withLockedValue { $0.balance } }

    /// Ends the ejections whose time is up (the timer's work).
    func expireEjections() {
        let returned = state.withLockedValue { state in
            state.expiryTimer = nil
            return expireLocked(&state)
        }
        announceReturns(returned)
    }

    private func expireLocked(_ state: inout State) -> [Backend] {
        let time = now()
        let returned = takeReturned(state.detector.expire(now: time), &state)
        state.nextExpiry = state.detector.nextExpiry
        scheduleExpiry(&state, now: time)
        return returned
    }

    /// Takes `ids` out of the ejected list; their backends.
    private func takeReturned(_ ids: [ObjectIdentifier], _ state: inout State) -> [Backend] {
        guard !ids.isEmpty else { return [] }
        let set = Set(ids)
        let returned = state.ejected.filter { set.contains(ObjectIdentifier($0)) }
        state.ejected.removeAll { set.contains(ObjectIdentifier($0)) }
        state.nextExpiry = state.detector.nextExpiry
        return returned
    }

    private func scheduleExpiry(_ state: inout State, now time: ContinuousClock.Instant) {
        state.expiryTimer?.cancel()
        state.expiryTimer = nil
        guard let timers, let expiry = state.nextExpiry else { return }
        let delay = TimeAmount(max(expiry - time, .zero)) + .milliseconds(1)
        state.expiryTimer = timers.next().scheduleTask(in: delay) { [weak self] in self?.expireEjections() }
    }

    private func announceReturns(_ returned: [Backend]) {
        for backend in returned { announce(.returned(backend)) }
    }

    private func announce(_ change: EjectionChange) {
        let hook = state.withLockedValue { $0.ejectionHook }
        hook?(change)
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
