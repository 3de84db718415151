import CMusterShims
import Glibc
import MusterProxy

/// musterd's own descriptor limit. A fresh host starts services with a soft limit of 1024
/// (hard 524288 under systemd); 2,000 instances need about 10,000 descriptors (a pidfd, two log
/// pipes and two usage files each) and the proxy one or two a connection, so the daemon raises its
/// soft limit to the hard one at start, as systemd's documentation asks of programs that need
/// many, and its instances still start with the soft limit musterd was given (unless a manifest's
/// `[isolation] limits` says otherwise).
public enum OpenFileLimit {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Raises the soft limit and sets the proxy's `DescriptorReserve` from the limit in force
    /// (also when raising failed).
    /// - Returns: the soft limit now in force.
    public static func raise() throws(Failure) -> Int {
        let result = muster_raise_open_file_limit()
        guard result >= 0 else {
            let failure = Failure(description: "setrlimit(RLIMIT_NOFILE): " + String(cString: strerror(errno)))
            var limit = rlimit()
            if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { DescriptorReserve.configure(limit: Int(clamping: limit.rlim_cur)) }
            throw failure
        }
        DescriptorReserve.configure(limit: Int(result))
        return Int(result)
    }
}
