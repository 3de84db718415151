/// A fixed number of the latest values: appending past `capacity` drops the oldest. Memory is
/// `capacity` elements from the first append on, however long the daemon runs.
public struct SampleRing<Element: Sendable>: Sendable {
    public let capacity: Int
    private var storage: [Element] = []
    /// Where the next append goes once `storage` is full (the oldest element).
    private var head = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a ring holds at least one value")
        self.capacity = capacity
    }

    public var count: Int { storage.count }

    public mutating func append(_ element: Element) {
        if storage.count < capacity {
            if storage.isEmpty { storage.reserveCapacity(capacity) }
            storage.append(element)
        } else {
            storage[head] = element
            head = (head + 1) % capacity
        }
    }

    /// Oldest first.
    public var elements: [Element] { Array(storage[head...] + storage[..<head]) }

    public var last: Element? { storage.isEmpty ? nil : storage[(head + storage.count - 1) % storage.count] }
}
