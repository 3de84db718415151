import CSystemd

/// The sd_notify protocol through libsystemd: READY=1, STATUS=…, RELOADING=1, STOPPING=1,
/// WATCHDOG=1. Does nothing when the daemon was not started by systemd (no NOTIFY_SOCKET).
public enum SystemdNotifier {
    /// Sends `state` ("READY=1", "STATUS=3 services running"). Returns false when nobody listens.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// The watchdog interval systemd expects pings within (WatchdogSec=), if it set one for us.
    public static func watchdogInterval() -> Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }
}
