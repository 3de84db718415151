import MusterCore
import MusterProxy

/// Passive outlier ejection as the control plane sees it: the proxy decides on its own (on the
/// hot path, `BackendSet`); the supervisor only records each ejection and return as an event and
/// shows them in `status`.
extension Supervisor {
    /// Events for `proxy`'s ejections from now on.
    func watchEjections(_ proxy: ServiceProxy) {
        proxy.backends.onEjection { [weak self] change in
            guard let self else { return }
            Task { await self.ejectionChanged(change) }
        }
    }

    func ejectionChanged(_ change: BackendSet.EjectionChange) {
        switch change {
        case .ejected(let backend, let ejection, let failures, let last):
            let streak = ejection.count > 1 ? ", ejection \(ejection.count) in a row" : ""
            emit("ejected", service: backend.service, index: backend.index,
                 message: "out of the proxy's rotation for \(DurationText.format(ejection.duration)) after \(failures) failures in a row (the last: \(last)\(streak))")
        case .returned(let backend):
            emit("unejected", service: backend.service, index: backend.index, message: "back in the proxy's rotation")
        }
    }

    /// When `backend`'s ejection from `owner`'s proxy ends, in seconds since the Unix epoch; nil
    /// when it is in the rotation.
    func ejectedUntil(_ backend: Backend, owner: String, now: ContinuousClock.Instant) -> Double? {
        guard let ejection = proxies[owner]?.backends.ejection(of: backend) else { return nil }
        return WallClock.now() + (ejection.until - now).seconds
    }
}
