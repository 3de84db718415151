import Foundation
import Glibc
import MusterControl
import MusterRuntime
import Testing

@Suite("PeerAuthorizer")
struct PeerAuthorizerTests {
    let authorizer = PeerAuthorizer(controlGroup: "muster")

    @Test("allows root")
    func root() {
        #expect(authorizer.decide(uid: 0, gid: 0) == .allowed)
        #expect(authorizer.decide(uid: 0, gid: 65534) == .allowed)
    }

    @Test("allows musterd's own user")
    func ownUser() {
        #expect(authorizer.decide(uid: geteuid(), gid: getegid()) == .allowed)
    }

    @Test("refuses uid 65534 when it is not in the group")
    func nobodyRefused() throws {
        if let group = Accounts.group(named: "muster") {
            // A host where nobody may use musterd would make this test meaningless.
            try #require(group.gid != 65534 && !group.members.contains(Accounts.user(id: 65534)?.name ?? "uid 65534"))
        }
        try #require(geteuid() != 65534)
        let decision = authorizer.decide(uid: 65534, gid: 65534)
        guard case .refused(let why) = decision else {
            Issue.record("uid 65534 was allowed")
            return
        }
        let who = Accounts.user(id: 65534)?.name ?? "uid 65534"
        #expect(why == "\(who) is not root and not in the group \"muster\"")
    }

    @Test("names an unknown uid by number")
    func unknownUser() throws {
        let uid: uid_t = 3_999_999_001
        try #require(Accounts.user(id: uid) == nil)
        #expect(PeerAuthorizer(controlGroup: "no-such-group-here").decide(uid: uid, gid: 3_999_999_001)
            == .refused("uid 3999999001 is not root and not in the group \"no-such-group-here\""))
    }

    @Test("allows the control group as primary group")
    func primaryGroup() throws {
        let group = try #require(Accounts.group(named: "root"))
        let other = PeerAuthorizer(controlGroup: "root")
        #expect(other.decide(uid: 65534, gid: group.gid) == .allowed)
        #expect(other.decide(uid: 65534, gid: 65534) != .allowed)
    }

    /// A user listed as a supplementary member in /etc/group, whose primary group is another one.
    static let supplementary: (user: String, uid: uid_t, primary: gid_t, group: String)? = {
        guard let text = try? String(contentsOfFile: "/etc/group", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 4, let gid = gid_t(fields[2]) else { continue }
            for member in fields[3].split(separator: ",").map(String.init) {
                if let user = Accounts.user(named: member), user.uid != 0, user.uid != geteuid(), user.gid != gid {
                    return (member, user.uid, user.gid, fields[0])
                }
            }
        }
        return nil
    }()

    @Test("allows a supplementary member of the control group", .enabled(if: supplementary != nil, "no such member in /etc/group"))
    func supplementaryMember() throws {
        let found = try #require(Self.supplementary)
        #expect(PeerAuthorizer(controlGroup: found.group).decide(uid: found.uid, gid: found.primary) == .allowed)
        #expect(PeerAuthorizer(controlGroup: "no-such-group-here").decide(uid: found.uid, gid: found.primary) != .allowed)
    }

    @Test("without a socket to ask, follows allowWithoutCredentials")
    func noCredentials() async {
        #expect(await PeerAuthorizer(controlGroup: "muster").decide(channel: nil) == .refused("peer credentials unavailable"))
        #expect(await PeerAuthorizer(controlGroup: "muster", allowWithoutCredentials: true).decide(channel: nil) == .allowed)
    }
}
