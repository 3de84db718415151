import Foundation
import Glibc
import MusterImage
import Testing

/// One unpack per digest, shared; crash-safe; concurrent callers wait for the one unpack.
@Suite("The image store", .enabled(if: isRoot, "unpacking keeps owners: needs root"))
struct ImageStoreTests {
    @Test func aSecondUnpackReturnsWithoutReadingTheImage() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let first = try f.store.unpack(image)
            try FileManager.default.removeItem(atPath: layout + "/blobs")
            let second = try f.store.unpack(image)
            #expect(second == first)
            #expect(f.exists(second + "/bin/busybox"))
        }
    }

    @Test func twoThreadsUnpackingOneDigestMakeOneRootfs() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let store = f.store
            let results = Results()
            let group = DispatchGroup()
            for _ in 0..<2 {
                DispatchQueue.global().async(group: group) {
                    results.add(Result { () throws(ImageError) -> String in try store.unpack(image) })
                }
            }
            group.wait()
            let paths = try results.all.map { try $0.get() }
            #expect(paths.count == 2)
            #expect(Set(paths).count == 1)
            #expect(f.storeFolders() == [String(image.manifestDigest.dropFirst("sha256:".count))])
            #expect(store.list().count == 1)
        }
    }

    @Test func leftoversOfACrashedUnpackAreRemovedByTheNext() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let hex = String(image.manifestDigest.dropFirst("sha256:".count))
            // A crash mid-unpack leaves a temp folder; one after the rename, a folder with no marker.
            try FileManager.default.createDirectory(atPath: f.path("store/\(hex).tmp-crash1/rootfs/bin"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: f.path("store/\(hex)/rootfs/half"), withIntermediateDirectories: true)
            let rootfs = try f.store.unpack(image)
            #expect(f.storeFolders() == [hex])
            #expect(!f.exists(rootfs + "/half"))
            #expect(f.exists(rootfs + "/bin/busybox"))
        }
    }

    @Test func aCorruptLayerFailsTheUnpackAndLeavesNothing() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let layer = try #require(image.layers.first)
            try f.corrupt(f.blobFile(layout, layer.digest))
            let error = try #require(unpackError(f.store, image))
            #expect(error.kind == .corruptBlob || error.kind == .io)
            #expect(error.description.hasPrefix(f.blobFile(layout, layer.digest) + ": "))
            #expect(f.storeFolders() == [])
            #expect(f.store.list() == [])
        }
    }

    @Test func aLayerWhoseBytesDoNotMatchItsDigestIsRefusedAfterReading() throws {
        try ImageFixture.with { f in
            // A valid tar under the wrong name: only the hash can tell, and it does.
            let layout = try f.image("swapped", layers: [[file("a", "one")], [file("b", "two")]])
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let first = f.blobFile(layout, image.layers[0].digest)
            let second = f.blobFile(layout, image.layers[1].digest)
            let secondBytes = try Data(contentsOf: URL(fileURLWithPath: second))
            try secondBytes.write(to: URL(fileURLWithPath: first))
            let error = try #require(unpackError(f.store, image))
            #expect(error.kind == .corruptBlob)
            #expect(error.description.hasPrefix("\(first): blob \(image.layers[0].digest) has sha256 "))
            #expect(f.storeFolders() == [])
        }
    }

    @Test func anIdShiftChownsEveryFileIntoItsOwnFolder() throws {
        try ImageFixture.with { f in
            let layout = try f.image("owned", layers: [[folder("home"), file("home/app", "x", uid: 1000, gid: 1001), symlink("link", to: "/home/app")]])
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let plain = try f.store.unpack(image)
            let shifted = try f.store.unpack(image, uidShift: 100_000, gidShift: 100_000)
            #expect(shifted != plain)
            #expect(shifted.hasSuffix("-100000/rootfs"))
            #expect(f.info(plain + "/home/app")?.st_uid == 1000)
            #expect(f.info(shifted + "/home/app")?.st_uid == 101_000)
            #expect(f.info(shifted + "/home/app")?.st_gid == 101_001)
            #expect(f.info(shifted + "/home")?.st_uid == 100_000)
            #expect(f.info(shifted + "/link")?.st_uid == 100_000)
            #expect(f.info(shifted)?.st_uid == 100_000)
            #expect(f.link(shifted + "/link") == "/home/app")
        }
    }

    @Test func listShowsWhatIsUnpackedAndRemoveDeletesIt() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: "latest", verifyLayers: false)
            let rootfs = try f.store.unpack(image)
            let listed = try #require(f.store.list().first)
            #expect(listed.digest == image.manifestDigest)
            #expect(listed.source == layout)
            #expect(listed.tag == "latest")
            #expect(listed.rootfs == rootfs)
            #expect(listed.bytes > 1_000_000)
            #expect(abs(listed.unpackedAt.timeIntervalSinceNow) < 600)
            try f.store.remove(digest: image.manifestDigest)
            #expect(f.store.list() == [])
            #expect(f.storeFolders() == [])
        }
    }
}

/// What the threads returned, gathered under a lock.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<String, ImageError>] = []

    func add(_ result: Result<String, ImageError>) {
        lock.lock()
        results.append(result)
        lock.unlock()
    }

    var all: [Result<String, ImageError>] {
        lock.lock()
        defer { lock.unlock() }
        return results
    }
}
