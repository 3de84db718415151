import Logging
import MusterSystemd
import MusterRuntime
import ServiceLifecycle
import UnixSignals

/// Runs the supervisor for the daemon's lifetime: starts every service, reloads on SIGHUP, and on
/// graceful shutdown (SIGTERM, SIGINT, `musterctl shutdown`) stops every instance before returning.
struct SupervisorService: Service {
    let supervisor: Supervisor
    let logger: Logger
    let readiness: StartupReadiness

    func run() async throws {
        await supervisor.bindListeners()
        readiness.arrive(.listeners)
        await supervisor.start()
        let reloads = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                do {
                    let (plan, _) = try await supervisor.reload(dryRun: false)
                    logger.info("reloaded on SIGHUP", metadata: ["added": "\(plan.added)", "removed": "\(plan.removed)", "changed": "\(plan.changed)"])
                } catch let error as ControlError {
                    logger.error("reload on SIGHUP refused: \(error.message)", metadata: ["details": "\(error.details ?? [])"])
                } catch {
                    logger.error("reload on SIGHUP failed: \(error)")
                }
            }
        }
        // WatchdogSec=: ping at half the interval, and only after the supervisor has answered a
        // heartbeat (a full reconcile pass behind every queued event), never from a bare timer.
        let watchdog = SystemdNotifier.watchdogInterval().map { interval in
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval / 2)
                    await supervisor.heartbeat()
                    SystemdNotifier.notify("WATCHDOG=1")
                }
            }
        }
        // Suspends until SIGTERM/SIGINT or `musterctl shutdown` starts a graceful shutdown.
        try? await gracefulShutdown()
        reloads.cancel()
        watchdog?.cancel()
        await supervisor.shutdown()
    }
}
