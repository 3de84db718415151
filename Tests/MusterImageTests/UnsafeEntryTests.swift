import Foundation
import MusterImage
import Testing

/// Layers that try to write outside the root are refused, naming the layer and the entry, and
/// leave nothing behind: not outside the root, not in the store.
@Suite("Hostile layers", .enabled(if: isRoot, "unpacking keeps owners: needs root"))
struct UnsafeEntryTests {
    enum Trick: String, CaseIterable, CustomTestStringConvertible {
        case dotDot, hardLinkOut, fileThroughSymlink, hardLinkThroughSymlink, whiteoutThroughSymlink
        var testDescription: String { rawValue }
    }

    /// A layer for each trick, aimed at `outside` (a folder beside the store holding `victim`).
    func layers(_ trick: Trick, outside: String) -> [[[String: Any]]] {
        switch trick {
        case .dotDot:
            return [[file("ok", "fine"), file("../../../../escape", "out")]]
        case .hardLinkOut:
            return [[hardlink("passwd", to: "../../etc/passwd")]]
        case .fileThroughSymlink:
            return [[symlink("evil", to: outside), file("evil/escape", "out")]]
        case .hardLinkThroughSymlink:
            return [[symlink("evil", to: outside), hardlink("stolen", to: "evil/victim")]]
        case .whiteoutThroughSymlink:
            return [[symlink("evil", to: outside)], [file("evil/.wh.victim")]]
        }
    }

    @Test(arguments: Trick.allCases)
    func anEntryThatEscapesTheRootIsRefusedAndNothingIsWritten(trick: Trick) throws {
        try ImageFixture.with { f in
            let outside = f.path("outside")
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
            try "victim\n".write(toFile: outside + "/victim", atomically: false, encoding: .utf8)
            let layout = try f.image("hostile", layers: layers(trick, outside: outside))
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: true)
            let error = try #require(unpackError(f.store, image))
            #expect(error.kind == .unsafeEntry)
            let layerNamed = image.layers.contains { error.description.hasPrefix(f.blobFile(layout, $0.digest) + ": entry \"") }
            #expect(layerNamed, "\(error.description)")
            let outsideNow = try FileManager.default.contentsOfDirectory(atPath: outside)
            #expect(outsideNow == ["victim"])
            #expect(f.read(outside + "/victim") == "victim\n")
            #expect(!f.exists(f.path("escape")))
            #expect(!f.exists("/escape"))
            #expect(f.storeFolders() == [])
        }
    }
}
