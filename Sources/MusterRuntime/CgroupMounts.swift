/// Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo rather than guessed:
/// pure cgroup2 hosts mount it at /sys/fs/cgroup, hybrid ones at /sys/fs/cgroup/unified beside the
/// v1 controller hierarchies.
public struct CgroupMounts: Sendable, Equatable {
    /// The cgroup2 mount point, if any.
    public var unified: String?
    /// v1 controller name → its hierarchy's mount point ("memory" → /sys/fs/cgroup/memory).
    public var v1: [String: String]

    public init(unified: String?, v1: [String: String]) {
        self.unified = unified
        self.v1 = v1
    }

    /// - Parameter mountinfo: the text of /proc/self/mountinfo.
    public static func parse(mountinfo: String) -> CgroupMounts {
        var mounts = CgroupMounts(unified: nil, v1: [:])
        for line in mountinfo.split(separator: "\n") {
            // "36 25 0:31 / /sys/fs/cgroup/memory rw,... shared:14 - cgroup cgroup rw,memory"
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = unescape(String(left[4]))
            switch right[0] {
            case "cgroup2":
                if mounts.unified == nil { mounts.unified = mountPoint }
            case "cgroup":
                for option in right[2].split(separator: ",") where mounts.v1[String(option)] == nil {
                    mounts.v1[String(option)] = mountPoint
                }
            default:
                continue
            }
        }
        return mounts
    }

    /// The calling process's cgroup per hierarchy from /proc/self/cgroup: "" for cgroup2, and each
    /// v1 controller's name.
    public static func parse(procCgroup text: String) -> [String: String] {
        var paths: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty { paths[""] = String(fields[2]); continue }
            for controller in fields[1].split(separator: ",") { paths[String(controller)] = String(fields[2]) }
        }
        return paths
    }

    /// mountinfo escapes spaces and the like as \040.
    private static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var result = ""
        var iterator = Array(text)[...]
        while let char = iterator.popFirst() {
            if char == "\\", iterator.count >= 3, let code = UInt8(String(iterator.prefix(3)), radix: 8) {
                result.append(Character(UnicodeScalar(code)))
                iterator = iterator.dropFirst(3)
            } else {
                result.append(char)
            }
        }
        return result
    }
}

extension StringProtocol {
    func components(separatedBy separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let range = rest.firstRange(of: separator) {
            parts.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}
