import CMusterShims
import Glibc

/// The terminal while `musterctl top` owns it: raw keys (no echo, no line buffering), the
/// alternate screen, no cursor; and put back as it was on every way out: `q`, an error, Ctrl-C
/// (SIGINT), SIGTERM and SIGHUP.
enum Terminal {
    // Read by the signal handler, which can only reach globals; written once before it is set.
    nonisolated(unsafe) private static var saved = termios()
    nonisolated(unsafe) private static var active = false
    private static let enterScreen = Array("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J".utf8)
    private static let leaveScreen = Array("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l".utf8)

    static var isInteractive: Bool { isatty(0) == 1 && isatty(1) == 1 }

    /// Colour unless the terminal cannot show it or the user asked for none (NO_COLOR).
    static var hasColour: Bool {
        guard isatty(1) == 1, getenv("NO_COLOR") == nil, let term = getenv("TERM").map({ String(cString: $0) }) else { return false }
        return !term.isEmpty && term != "dumb"
    }

    static func size() -> (rows: Int, columns: Int) {
        var rows: Int32 = 0, columns: Int32 = 0
        if muster_window_size(1, &rows, &columns) == 0, rows > 0, columns > 0 { return (Int(rows), Int(columns)) }
        let env = { (name: String) in getenv(name).flatMap { Int(String(cString: $0)) } }
        return (env("LINES") ?? 24, env("COLUMNS") ?? 80)
    }

    static func enter() {
        tcgetattr(0, &saved)
        var raw = saved
        // ISIG stays: Ctrl-C arrives as SIGINT, and the handler puts the terminal back.
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        tcsetattr(0, TCSAFLUSH, &raw)
        active = true
        for signal in [SIGINT, SIGTERM, SIGHUP] { Glibc.signal(signal, onSignal) }
        write(enterScreen)
    }

    /// Back to the shell's terminal; safe to call twice and from a signal handler (tcsetattr and
    /// write are async-signal-safe).
    static func leave() {
        guard active else { return }
        active = false
        tcsetattr(0, TCSAFLUSH, &saved)
        write(leaveScreen)
    }

    static func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    /// Waits up to `milliseconds` for input on stdin and returns what arrived (empty on timeout);
    /// nil once the terminal is gone.
    static func readKeys(waiting milliseconds: Int32) -> [UInt8]? {
        var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, milliseconds) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = read(0, &buffer, buffer.count)
        if count > 0 { return Array(buffer[..<count]) }
        return count < 0 && (errno == EINTR || errno == EAGAIN) ? [] : nil
    }
}

private let onSignal: @convention(c) (Int32) -> Void = { signal in
    Terminal.leave()
    _exit(128 + signal)
}
