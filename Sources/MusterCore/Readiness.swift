/// Who is ready for traffic, for the parts decided without a probe: without a check an instance
/// is ready once it is running (after `start_seconds`); with any check, only the check's results
/// (or READY=1 for notify) make it ready, and only a starting or running instance can be.
public enum Readiness {
    public static func update(_ records: inout [Int: InstanceRecord], health: HealthSpec) {
        for (index, record) in records {
            var next = record
            if !(record.state == .starting || record.state == .running) {
                next.ready = false
            } else if health.check == .none {
                next.ready = record.state == .running
            }
            if next != record { records[index] = next }
        }
    }
}
