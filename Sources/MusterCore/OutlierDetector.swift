/// Passive outlier ejection, as the proxy applies it: `eject_after` failures in a row (failed
/// connects, or 5xx answers in http mode) take an instance out of the rotation for `eject_for`;
/// each further ejection in a row doubles that time, and a success ends the streak. Never more
/// than half of the instances are out at once: a failure that would eject one more is counted,
/// and the instance goes out on a later failure once there is room. Pure: the caller passes
/// every result with its time and acts on what it gets back.
///
/// Results reported while an instance is out belong to requests it took before it was ejected,
/// and are ignored.
public struct OutlierDetector<Member: Hashable & Sendable>: Sendable {
    public struct Policy: Sendable, Equatable {
        /// Failures in a row that eject an instance; 0 turns ejection off.
        public var ejectAfter: Int
        /// The first ejection's length; the n-th in a row lasts `ejectFor · 2^(n-1)`, at most
        /// `longestEjection`.
        public var ejectFor: Duration

        public init(ejectAfter: Int, ejectFor: Duration) {
            self.ejectAfter = ejectAfter
            self.ejectFor = ejectFor
        }

        public var isEnabled: Bool { ejectAfter > 0 && ejectFor > .zero }

        /// Doubling stops at five minutes (Envoy's `max_ejection_time` default), or at
        /// `ejectFor` itself when that is longer.
        public var longestEjection: Duration { max(ejectFor, .seconds(300)) }

        /// How long the `count`-th ejection in a row lasts (count ≥ 1).
        public func duration(ofEjection count: Int) -> Duration {
            var duration = ejectFor
            for _ in 1..<max(count, 1) {
                duration = duration * 2
                if duration >= longestEjection { return longestEjection }
            }
            return min(duration, longestEjection)
        }
    }

    /// One instance taken out of the rotation.
    public struct Ejection: Sendable, Equatable {
        public var until: ContinuousClock.Instant
        public var duration: Duration
        /// 1 for the first ejection, 2 for the next one without a success between, …
        public var count: Int

        public init(until: ContinuousClock.Instant, duration: Duration, count: Int) {
            self.until = until
            self.duration = duration
            self.count = count
        }
    }

    /// What a failure led to.
    public enum Outcome: Sendable, Equatable {
        /// Counted; the instance stays in.
        case counted(failures: Int)
        /// Out of the rotation until `Ejection.until`.
        case ejected(Ejection)
        /// Enough failures, but half of the instances are out already: it stays in for now.
        case capped(failures: Int)
        /// Ejection is off, or the instance is out already.
        case ignored
    }

    struct Record: Sendable, Equatable {
        var failures = 0
        /// Ejections since the last success.
        var ejections = 0
        var ejection: Ejection?
    }

    public var policy: Policy
    private(set) var records: [Member: Record] = [:]

    public init(policy: Policy) {
        self.policy = policy
    }

    /// A failed connect or a 5xx from `member`, one of `memberCount` instances in the rotation.
    public mutating func recordFailure(of member: Member, memberCount: Int, now: ContinuousClock.Instant) -> Outcome {
        guard policy.isEnabled else { return .ignored }
        var record = records[member] ?? Record()
        if let ejection = record.ejection {
            if ejection.until > now { return .ignored }
            record.ejection = nil
        }
        record.failures += 1
        guard record.failures >= policy.ejectAfter else {
            records[member] = record
            return .counted(failures: record.failures)
        }
        guard ejectedCount(now: now, except: member) < Self.maxEjected(of: memberCount) else {
            records[member] = record
            return .capped(failures: record.failures)
        }
        record.failures = 0
        record.ejections += 1
        let duration = policy.duration(ofEjection: record.ejections)
        let ejection = Ejection(until: now + duration, duration: duration, count: record.ejections)
        record.ejection = ejection
        records[member] = record
        return .ejected(ejection)
    }

    /// A connect or an answer below 500 from `member`: its failures and its streak of
    /// ejections start again from zero. Returns whether there was anything to forget.
    @discardableResult
    public mutating func recordSuccess(of member: Member, now: ContinuousClock.Instant) -> Bool {
        guard let record = records[member] else { return false }
        if let ejection = record.ejection, ejection.until > now { return false }
        records[member] = nil
        return true
    }

    /// Whether it holds failures or a streak of ejections of `member`.
    public func isTracking(_ member: Member) -> Bool { records[member] != nil }

    /// At most this many of `memberCount` instances may be out at once.
    public static func maxEjected(of memberCount: Int) -> Int { max(memberCount, 0) / 2 }

    /// `member`'s ejection while it lasts.
    public func ejection(of member: Member, now: ContinuousClock.Instant) -> Ejection? {
        guard let ejection = records[member]?.ejection, ejection.until > now else { return nil }
        return ejection
    }

    /// The members out of the rotation at `now`.
    public func ejected(now: ContinuousClock.Instant) -> [Member] {
        records.compactMap { member, record in record.ejection.map { $0.until > now } == true ? member : nil }
    }

    public func ejectedCount(now: ContinuousClock.Instant) -> Int { ejectedCount(now: now, except: nil) }

    private func ejectedCount(now: ContinuousClock.Instant, except excluded: Member?) -> Int {
        records.reduce(0) { count, entry in
            count + (entry.key != excluded && entry.value.ejection.map { $0.until > now } == true ? 1 : 0)
        }
    }

    /// When the next ejection ends; nil when none is in force.
    public var nextExpiry: ContinuousClock.Instant? {
        records.values.compactMap(\.ejection?.until).min()
    }

    /// Ends the ejections whose time is up and returns their members (each once). Their streak
    /// stays: failing again soon ejects them for twice as long.
    public mutating func expire(now: ContinuousClock.Instant) -> [Member] {
        var returned: [Member] = []
        for (member, record) in records {
            guard let ejection = record.ejection, ejection.until <= now else { continue }
            records[member]!.ejection = nil
            records[member]!.failures = 0
            returned.append(member)
        }
        return returned
    }

    /// The rotation is now `members`: others are forgotten. When fewer instances remain than
    /// the ejections in force allow (half of them), the ejections ending soonest end now; their
    /// members are returned.
    public mutating func retain(_ members: Set<Member>, now: ContinuousClock.Instant) -> [Member] {
        records = records.filter { members.contains($0.key) }
        var out = records.compactMap { member, record in
            record.ejection.flatMap { $0.until > now ? (member, $0.until) : nil }
        }
        let allowed = Self.maxEjected(of: members.count)
        guard out.count > allowed else { return [] }
        out.sort { $0.1 < $1.1 }
        let returned = out.prefix(out.count - allowed).map(\.0)
        for member in returned {
            records[member]!.ejection = nil
            records[member]!.failures = 0
        }
        return returned
    }

    /// Applies a changed policy. Ejections in force run their course; with ejection turned off
    /// they end now, and those members are returned.
    public mutating func update(_ next: Policy, now: ContinuousClock.Instant) -> [Member] {
        policy = next
        guard !next.isEnabled else { return [] }
        let returned = ejected(now: now)
        records.removeAll()
        return returned
    }
}
