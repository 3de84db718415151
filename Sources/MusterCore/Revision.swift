/// One deployed (or attempted) version of a service: the full spec, and how its deploy ended.
public struct Revision: Sendable, Equatable, Codable {
    public enum Outcome: Sendable, Equatable, Codable {
        /// Rolled out by a rolling restart, or the version a service started with.
        case deployed
        /// Its canary is being judged now.
        case canary
        case promoted
        case rolledBack(reason: String)
        /// A newer revision was deployed before this one's canary was judged.
        case superseded

        /// What `history` prints: "deployed", "rolled back: error rate 48.0% > 1%".
        public var text: String {
            switch self {
            case .deployed: "deployed"
            case .canary: "canary (being judged)"
            case .promoted: "promoted"
            case .rolledBack(let reason): "rolled back: \(reason)"
            case .superseded: "superseded"
            }
        }

        /// A revision a rollback may return to.
        public var isGood: Bool { self == .deployed || self == .promoted }
    }

    public var number: Int
    /// Seconds since 1970.
    public var time: Double
    public var spec: ServiceSpec
    /// What changed from the revision before, in manifest words (`RevisionDiff`).
    public var changes: [String]
    /// How it came: "start", "reload", "deploy", "rollback to 3".
    public var source: String
    public var outcome: Outcome

    public init(number: Int, time: Double, spec: ServiceSpec, changes: [String], source: String, outcome: Outcome) {
        self.number = number
        self.time = time
        self.spec = spec
        self.changes = changes
        self.source = source
        self.outcome = outcome
    }
}

/// A service's revisions, oldest first, and which one runs.
public struct RevisionHistory: Sendable, Equatable, Codable {
    public var revisions: [Revision] = []
    /// The revision the service's own instances run (not a canary's).
    public var current: Int?

    public init() {}

    public var latest: Revision? { revisions.last }

    public func revision(_ number: Int) -> Revision? { revisions.first { $0.number == number } }

    /// The good revision before the current one: where `rollback` goes by default.
    public var previousGood: Revision? {
        let current = self.current ?? Int.max
        return revisions.last { $0.number < current && $0.outcome.isGood }
    }

    /// Appends a revision of `spec`, numbered after the last, its changes taken against the
    /// current revision.
    public mutating func append(_ spec: ServiceSpec, time: Double, source: String, outcome: Revision.Outcome) -> Revision {
        let base = current.flatMap(revision) ?? revisions.last
        let changes = base.map { RevisionDiff.changes(from: $0.spec, to: spec) } ?? ["first revision"]
        let revision = Revision(number: (revisions.last?.number ?? 0) + 1, time: time, spec: spec, changes: changes,
                                source: source, outcome: outcome)
        revisions.append(revision)
        // Older revisions beyond the last 50 are forgotten, so the file stays small.
        if revisions.count > 50 { revisions.removeFirst(revisions.count - 50) }
        return revision
    }

    public mutating func setOutcome(_ number: Int, _ outcome: Revision.Outcome) {
        if let position = revisions.firstIndex(where: { $0.number == number }) { revisions[position].outcome = outcome }
    }
}
