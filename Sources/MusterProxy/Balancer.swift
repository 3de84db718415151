/// The two ways `[proxy] balance` picks an instance from a rotation, as pure functions of the
/// list, a cursor and (for least-request) a random number and each candidate's load.
enum Balancer {
    /// Round robin: the first eligible candidate at or after `start` (wrapping).
    static func roundRobin<T>(_ list: [T], start: Int, isEligible: (T) -> Bool) -> T? {
        roundRobinPosition(list, start: start, isEligible: isEligible).map { list[$0] }
    }

    /// Power of two choices on requests in flight (what Envoy's LEAST_REQUEST and HAProxy's
    /// `leastconn` do with two samples): of the round-robin candidate at `start` and a second one
    /// drawn with `random`, the one with less `load`. Ties go to the round-robin candidate, so an
    /// idle service is spread exactly as round robin spreads it; under load the slow instance,
    /// whose requests pile up, is passed over.
    static func leastRequest<T>(_ list: [T], start: Int, random: UInt64, isEligible: (T) -> Bool, load: (T) -> Int) -> T? {
        guard let first = roundRobinPosition(list, start: start, isEligible: isEligible) else { return nil }
        guard list.count > 1 else { return list[first] }
        // Another eligible candidate, searched from a random offset so each is equally likely
        // when all are eligible.
        let offset = 1 + Int(random % UInt64(list.count - 1))
        var second: Int?
        for step in 0..<(list.count - 1) {
            let position = (first + (offset - 1 + step) % (list.count - 1) + 1) % list.count
            if isEligible(list[position]) {
                second = position
                break
            }
        }
        guard let second else { return list[first] }
        return load(list[second]) < load(list[first]) ? list[second] : list[first]
    }

    private static func roundRobinPosition<T>(_ list: [T], start: Int, isEligible: (T) -> Bool) -> Int? {
        guard !list.isEmpty else { return nil }
        let base = start & Int(Int32.max)
        for offset in 0..<list.count {
            let position = (base &+ offset) % list.count
            if isEligible(list[position]) { return position }
        }
        return nil
    }

    /// SplitMix64's finaliser: turns a counter into well-spread bits. Cheap enough for every
    /// request (no system call, unlike the system generator, which reads getrandom).
    static func mix(_ counter: UInt64) -> UInt64 {
        var z = counter &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
