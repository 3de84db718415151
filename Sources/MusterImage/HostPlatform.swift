import Glibc

/// This host's platform in OCI's words (GOARCH names): what an image's config must say.
public struct HostPlatform: Sendable, Equatable, CustomStringConvertible {
    public var os: String
    public var architecture: String

    public static let current = HostPlatform(os: "linux", architecture: architecture(machine: unameMachine()))

    public var description: String { os + "/" + architecture }

    /// uname's machine names to the ones OCI images use.
    static func architecture(machine: String) -> String {
        switch machine {
        case "x86_64": return "amd64"
        case "aarch64", "arm64": return "arm64"
        case "i386", "i486", "i586", "i686": return "386"
        case "ppc64le": return "ppc64le"
        case "s390x": return "s390x"
        case "riscv64": return "riscv64"
        default: return machine.hasPrefix("armv") ? "arm" : machine
        }
    }

    private static func unameMachine() -> String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: &names.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
