import Foundation
import Glibc
import MusterImage
import Testing

/// Layers applied onto a root as the OCI spec says, checked against what umoci (a peer) unpacks
/// from the same image and against layers written by Python's tarfile.
@Suite("Unpacking layers", .enabled(if: isRoot, "unpacking keeps owners and makes devices: needs root"))
struct UnpackTests {
    @Test func theBusyboxImageUnpacksWithItsFilesLinksAndModes() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let rootfs = try f.store.unpack(image)
            let digestHex = String(image.manifestDigest.dropFirst("sha256:".count))
            #expect(rootfs == f.path("store/\(digestHex)/rootfs"))
            #expect(f.mode(rootfs + "/bin/busybox") == S_IFREG | 0o755)
            #expect(f.info(rootfs + "/bin/busybox")?.st_size == f.info("/bin/busybox")?.st_size)
            #expect(f.link(rootfs + "/bin/sh") == "/bin/busybox")
            #expect(f.link(rootfs + "/bin/httpd") == "busybox")
            #expect(f.mode(rootfs + "/tmp") == S_IFDIR | 0o1777)
            #expect(f.mode(rootfs + "/root") == S_IFDIR | 0o700)
            #expect(f.read(rootfs + "/www/index.html")?.contains("Served by busybox httpd") == true)
            #expect(f.read(rootfs + "/etc/passwd")?.contains("nobody:x:65534:65534") == true)
            #expect(f.info(rootfs + "/etc/group")?.st_uid == 0)
        }
    }

    @Test func theBusyboxImageUnpacksAsUmociUnpacksIt() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let rootfs = try f.store.unpack(try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false))
            try f.run("/usr/bin/umoci", "unpack", "--image", layout + ":latest", f.path("bundle"))
            let ours = f.tree(rootfs)
            let umocis = f.tree(f.path("bundle/rootfs"))
            #expect(ours.count > 20)
            #expect(ours == umocis)
        }
    }

    @Test func aFileDeletedInALaterUmociLayerIsWhitedOut() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            try f.run("/usr/bin/umoci", "unpack", "--image", layout + ":latest", f.path("edit"))
            try FileManager.default.removeItem(atPath: f.path("edit/rootfs/www/index.html"))
            try FileManager.default.removeItem(atPath: f.path("edit/rootfs/etc"))
            try "added\n".write(toFile: f.path("edit/rootfs/www/new.html"), atomically: false, encoding: .utf8)
            try f.run("/usr/bin/umoci", "repack", "--image", layout + ":latest", f.path("edit"))
            let image = try OCIImage.resolve(path: layout, tag: "latest", verifyLayers: true)
            #expect(image.layers.count == 2)
            let rootfs = try f.store.unpack(image)
            #expect(!f.exists(rootfs + "/www/index.html"))
            #expect(!f.exists(rootfs + "/etc"))
            #expect(f.read(rootfs + "/www/new.html") == "added\n")
            #expect(!f.exists(rootfs + "/www/.wh.index.html"))
            #expect(!f.exists(rootfs + "/.wh.etc"))
            try f.run("/usr/bin/umoci", "unpack", "--image", layout + ":latest", f.path("bundle"))
            let ours = f.tree(rootfs)
            let umocis = f.tree(f.path("bundle/rootfs"))
            #expect(ours == umocis)
        }
    }

    /// The opaque marker may come before or after the folder's own entries in the tar.
    @Test(arguments: [true, false])
    func anOpaqueFolderHidesOnlyWhatLowerLayersPutThere(markerFirst: Bool) throws {
        try ImageFixture.with { f in
            let lower: [[String: Any]] = [folder("d"), file("d/old", "old"), folder("d/sub"), file("d/sub/older", "older"),
                                          folder("keep"), file("keep/x", "x"), file("keep/gone", "gone")]
            let own: [[String: Any]] = [file("d/new", "new"), folder("d/sub"), file("d/sub/newer", "newer"), file("d/deep/file", "deep")]
            let marker = [file("d/.wh..wh..opq")]
            let upper = (markerFirst ? marker + own : own + marker) + [file("keep/.wh.gone")]
            let layout = try f.image("opaque", layers: [lower, upper], gzip: true)
            let rootfs = try f.store.unpack(try OCIImage.resolve(path: layout, tag: nil, verifyLayers: true))
            #expect(f.read(rootfs + "/d/new") == "new")
            #expect(f.read(rootfs + "/d/sub/newer") == "newer")
            #expect(f.read(rootfs + "/d/deep/file") == "deep")
            #expect(!f.exists(rootfs + "/d/old"))
            #expect(!f.exists(rootfs + "/d/sub/older"))
            #expect(!f.exists(rootfs + "/d/.wh..wh..opq"))
            #expect(f.read(rootfs + "/keep/x") == "x")
            #expect(!f.exists(rootfs + "/keep/gone"))
            #expect(!f.exists(rootfs + "/keep/.wh.gone"))
        }
    }

    @Test func aFileInALaterLayerReplacesAFolderAndItsContents() throws {
        try ImageFixture.with { f in
            let layout = try f.image("replace", layers: [[folder("x"), file("x/inside", "i")], [file("x", "now a file")]])
            let rootfs = try f.store.unpack(try OCIImage.resolve(path: layout, tag: nil, verifyLayers: true))
            #expect(f.read(rootfs + "/x") == "now a file")
        }
    }

    @Test func hardLinksDevicesFifosXattrsSetuidOwnersAndTimesAreKept() throws {
        try ImageFixture.with { f in
            let entries: [[String: Any]] = [
                folder("bin"), file("bin/tool", "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0),
                file("data", "payload", mode: 0o640, uid: 1234, gid: 5678, mtime: 1_000_000_000, xattrs: ["user.muster": "kept"]),
                hardlink("data-again", to: "data"),
                folder("dev"), device("dev/null", major: 1, minor: 3), fifo("pipe"),
                file("/absolute/made/relative", "abs"),
            ]
            let layout = try f.image("special", layers: [entries])
            let rootfs = try f.store.unpack(try OCIImage.resolve(path: layout, tag: nil, verifyLayers: true))
            #expect(f.mode(rootfs + "/bin/tool") == S_IFREG | 0o4755)
            let data = try #require(f.info(rootfs + "/data"))
            #expect(data.st_mode == S_IFREG | 0o640)
            #expect(data.st_uid == 1234)
            #expect(data.st_gid == 5678)
            #expect(data.st_mtim.tv_sec == 1_000_000_000)
            #expect(data.st_nlink == 2)
            #expect(f.info(rootfs + "/data-again")?.st_ino == data.st_ino)
            let null = try #require(f.info(rootfs + "/dev/null"))
            #expect(null.st_mode & S_IFMT == S_IFCHR)
            #expect(null.st_rdev == makedev(1, 3))
            let pipe = try #require(f.mode(rootfs + "/pipe"))
            #expect(pipe & S_IFMT == S_IFIFO)
            #expect(xattr(rootfs + "/data", "user.muster") == "kept")
            #expect(f.read(rootfs + "/absolute/made/relative") == "abs")
        }
    }

    @Test func anOCIArchiveUnpacksIdenticallyToItsLayout() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            try f.run("/bin/tar", "-C", layout, "-cf", f.path("busybox.tar"), ".")
            let fromLayout = try ImageStore(root: f.path("store-layout")).unpack(try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false))
            let archive = try OCIImage.resolve(path: f.path("busybox.tar"), tag: nil, verifyLayers: false)
            let fromArchive = try ImageStore(root: f.path("store-archive")).unpack(archive)
            let layoutTree = f.tree(fromLayout)
            let archiveTree = f.tree(fromArchive)
            #expect(layoutTree.count > 20)
            #expect(archiveTree == layoutTree)
        }
    }
}

private func makedev(_ major: UInt32, _ minor: UInt32) -> UInt {
    UInt((major & 0xfff) << 8 | (minor & 0xff)) | UInt(minor & ~0xff) << 12 | UInt(major & ~0xfff) << 32
}

/// lgetxattr(2): not in the Glibc module's headers.
@_silgen_name("lgetxattr")
private func lgetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int

private func xattr(_ path: String, _ name: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = lgetxattr(path, name, &buffer, buffer.count)
    return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
}
