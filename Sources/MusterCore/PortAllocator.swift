/// Hands each instance slot a port from `instance_ports`, stable for the slot's life, never two
/// slots one port. Whether a port is free on the host is asked of `isFree`, so this stays pure.
public struct PortAllocator: Sendable {
    public let range: ClosedRange<Int>
    private var byOwner: [String: Int] = [:]
    private var taken: Set<Int> = []
    private var cursor: Int

    public init(range: ClosedRange<Int>) {
        self.range = range
        self.cursor = range.lowerBound
    }

    public func port(of owner: String) -> Int? { byOwner[owner] }

    /// The owner's port, allocating the next free one if it has none. Called only when the
    /// owner's process is not running: if its port has been taken meanwhile (another program,
    /// or a daemon that probed the same range a moment earlier), it gets another one instead of
    /// failing on the same port at every restart.
    public mutating func allocate(for owner: String, isFree: (Int) -> Bool) -> Int? {
        if let port = byOwner[owner] {
            if isFree(port) { return port }
            release(owner)
        }
        for _ in 0..<range.count {
            let candidate = cursor
            cursor = cursor == range.upperBound ? range.lowerBound : cursor + 1
            if !taken.contains(candidate), isFree(candidate) {
                taken.insert(candidate)
                byOwner[owner] = candidate
                return candidate
            }
        }
        return nil
    }

    /// Moves a port to a new owner: a process being replaced keeps its port under another name
    /// while its slot allocates a fresh one for the replacement.
    public mutating func transfer(from owner: String, to newOwner: String) {
        guard let port = byOwner.removeValue(forKey: owner) else { return }
        byOwner[newOwner] = port
    }

    public mutating func release(_ owner: String) {
        if let port = byOwner.removeValue(forKey: owner) { taken.remove(port) }
    }
}
