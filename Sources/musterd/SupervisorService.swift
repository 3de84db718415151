import Logging
import MusterRuntime
import ServiceLifecycle
import UnixSignals

/// Runs the supervisor for the daemon's lifetime: starts every service, reloads on SIGHUP, and on
/// graceful shutdown (SIGTERM, SIGINT, `musterctl shutdown`) stops every instance before returning.
struct SupervisorService: Service {
    let supervisor: Supervisor
    let logger: Logger

    func run() async throws {
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
        // Suspends until SIGTERM/SIGINT or `musterctl shutdown` starts a graceful shutdown.
        try? await gracefulShutdown()
        reloads.cancel()
        await supervisor.shutdown()
    }
}
