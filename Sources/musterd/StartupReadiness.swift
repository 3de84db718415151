import Synchronization

/// READY=1 goes to systemd once the control socket accepts and every proxy listener is bound;
/// the two happen on different tasks, in either order. Instances may still be starting.
final class StartupReadiness: Sendable {
    enum Step: Sendable { case controlSocket, listeners }

    private let arrived = Mutex<Set<Step>>([])
    private let whenReady: @Sendable () -> Void

    init(whenReady: @escaping @Sendable () -> Void) {
        self.whenReady = whenReady
    }

    func arrive(_ step: Step) {
        let complete = arrived.withLock { steps in
            let before = steps.count
            steps.insert(step)
            return before == 1 && steps.count == 2
        }
        if complete { whenReady() }
    }
}
