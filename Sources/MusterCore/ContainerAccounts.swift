/// A container's users and groups, from its own `/etc/passwd` and `/etc/group`: a manifest's or
/// image's `user` names an account of the image, never of the host. Spellings as the OCI image
/// spec gives them for `User`: `name`, `uid`, `name:group`, `uid:gid` (and mixed).
public struct ContainerAccounts: Sendable {
    public struct Account: Sendable, Equatable {
        public var name: String?
        public var uid: UInt32
        public var gid: UInt32
        public var home: String
        /// Supplementary groups: every group of /etc/group that lists the user.
        public var groups: [UInt32]
    }

    private var users: [(name: String, uid: UInt32, gid: UInt32, home: String)] = []
    private var groups: [(name: String, gid: UInt32, members: [String])] = []

    /// Either file may be missing (nil): then only numeric ids resolve.
    public init(passwd: String?, group: String?) {
        for line in (passwd ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 6, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { continue }
            users.append((String(fields[0]), uid, gid, String(fields[5])))
        }
        for line in (group ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let gid = UInt32(fields[2]) else { continue }
            let members = fields.count > 3 ? fields[3].split(separator: ",").map(String.init) : []
            groups.append((String(fields[0]), gid, members))
        }
    }

    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case noSuchUser(String)
        case noSuchGroup(String)
        public var description: String {
            switch self {
            case .noSuchUser(let name): "user \(name) is not in the container's /etc/passwd (add it to the image, or give a numeric uid)"
            case .noSuchGroup(let name): "group \(name) is not in the container's /etc/group (add it to the image, or give a numeric gid)"
            }
        }
    }

    /// `user` (and `group`, which overrides the group part of `user`) to ids; nil `user`: root.
    public func resolve(user: String?, group: String?) throws(Problem) -> Account {
        let parts = (user ?? "0").split(separator: ":", maxSplits: 1).map(String.init)
        let userPart = parts.first ?? "0"
        var account: Account
        if let uid = UInt32(userPart) {
            let known = users.first { $0.uid == uid }
            account = Account(name: known?.name, uid: uid, gid: known?.gid ?? 0, home: known?.home ?? "/", groups: [])
        } else if let known = users.first(where: { $0.name == userPart }) {
            account = Account(name: known.name, uid: known.uid, gid: known.gid, home: known.home, groups: [])
        } else {
            throw .noSuchUser(userPart)
        }
        if let groupPart = group ?? (parts.count > 1 ? parts[1] : nil) {
            if let gid = UInt32(groupPart) { account.gid = gid }
            else if let known = groups.first(where: { $0.name == groupPart }) { account.gid = known.gid }
            else { throw .noSuchGroup(groupPart) }
        }
        if let name = account.name {
            account.groups = groups.filter { $0.members.contains(name) }.map(\.gid)
        }
        if !account.groups.contains(account.gid) { account.groups.insert(account.gid, at: 0) }
        return account
    }
}
