import CMusterShims
import Glibc
import MusterRuntime
import NIOCore

/// Who may talk to musterd: root and members of `control_group`, decided from the kernel's
/// SO_PEERCRED on each connection, not from the socket file's mode (which anyone with write access
/// to the folder could loosen).
public struct PeerAuthorizer: Sendable {
    public var controlGroup: String
    /// For in-process tests of the routes, where there is no socket to ask.
    public var allowWithoutCredentials: Bool

    public init(controlGroup: String, allowWithoutCredentials: Bool = false) {
        self.controlGroup = controlGroup
        self.allowWithoutCredentials = allowWithoutCredentials
    }

    public enum Decision: Equatable, Sendable {
        case allowed
        case refused(String)
    }

    public func decide(channel: (any Channel)?) async -> Decision {
        guard let provider = channel as? SocketOptionProvider else {
            return allowWithoutCredentials ? .allowed : .refused("peer credentials unavailable")
        }
        let credentials: muster_ucred
        do {
            credentials = try await provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)).get()
        } catch {
            return allowWithoutCredentials ? .allowed : .refused("peer credentials unavailable: \(error)")
        }
        return decide(uid: credentials.uid, gid: credentials.gid)
    }

    /// The rule itself: root, the daemon's own user, or a member of `control_group` (primary or
    /// supplementary).
    public func decide(uid: uid_t, gid: gid_t) -> Decision {
        if uid == 0 || uid == geteuid() { return .allowed }
        if let group = Accounts.group(named: controlGroup) {
            if gid == group.gid { return .allowed }
            if let user = Accounts.user(id: uid), group.members.contains(user.name) { return .allowed }
        }
        let who = Accounts.user(id: uid)?.name ?? "uid \(uid)"
        return .refused("\(who) is not root and not in the group \"\(controlGroup)\"")
    }
}
