#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Signal names as operators write them ("TERM", "SIGTERM", "15").
public enum SignalName {
    public static let known: [(name: String, number: Int32)] = [
        ("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("KILL", SIGKILL), ("USR1", SIGUSR1),
        ("USR2", SIGUSR2), ("TERM", SIGTERM), ("CONT", SIGCONT), ("STOP", SIGSTOP), ("WINCH", SIGWINCH),
        ("ALRM", SIGALRM), ("ABRT", SIGABRT),
    ]

    public static func number(_ text: String) -> Int32? {
        var name = text.trimmingWhitespace().uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        if let number = Int32(name), number > 0, number < 65 { return number }
        return known.first { $0.name == name }?.number
    }

    public static func name(_ number: Int32) -> String {
        known.first { $0.number == number }.map { "SIG" + $0.name } ?? "signal \(number)"
    }
}
