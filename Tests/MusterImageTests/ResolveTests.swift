import Foundation
@testable import MusterImage
import Testing

/// index.json → manifest → config, and every way an image can be wrong, each named in one line.
@Suite("Resolving OCI images", .enabled(if: isRoot, "busybox-image needs root (umoci records owners)"))
struct ResolveTests {
    @Test func theBusyboxImageResolvesToItsManifestConfigAndLayer() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: "latest", verifyLayers: true)
            let index = try #require(f.read(layout + "/index.json"))
            #expect(index.contains(image.manifestDigest))
            #expect(image.source == layout)
            #expect(image.tag == "latest")
            #expect(image.config.entrypoint == ["/bin/busybox"])
            #expect(image.config.cmd == ["httpd", "-f", "-p", "8080", "-h", "/www"])
            #expect(image.config.env.contains("GREETING=hello"))
            #expect(image.config.workingDir == "/www")
            #expect(image.config.os == "linux")
            #expect(image.config.architecture == "amd64")
            #expect(image.layers.count == 1)
            #expect(image.layers.first?.mediaType == "application/vnd.oci.image.layer.v1.tar+gzip")
            let untagged = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            #expect(untagged == image)
        }
    }

    @Test func aWrongTagListsTheTagsThatExist() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage(tag: "1.0")
            let error = try #require(resolveError(layout, tag: "latest", verifyLayers: false))
            #expect(error.kind == .unknownTag)
            #expect(error.description == "\(layout)/index.json: no manifest tagged \"latest\"; it has \"1.0\" (set tag to one of them)")
        }
    }

    @Test func aMissingImageOrIndexIsNamed() throws {
        try ImageFixture.with { f in
            let missing = try #require(resolveError(f.path("nothing"), tag: nil, verifyLayers: false))
            #expect(missing.kind == .missingImage)
            #expect(missing.description.hasPrefix(f.path("nothing") + ": no such image"))
            let layout = try f.busyboxImage()
            try FileManager.default.removeItem(atPath: layout + "/index.json")
            let noIndex = try #require(resolveError(layout, tag: nil, verifyLayers: false))
            #expect(noIndex.kind == .missingIndex)
            #expect(noIndex.description.hasPrefix(layout + "/index.json: missing"))
        }
    }

    @Test func aCorruptConfigBlobIsNamedWithItsFile() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let manifest = try #require(f.read(f.blobFile(layout, image.manifestDigest)))
            let match = manifest.firstMatch(of: /"config":\{[^}]*"digest":"(sha256:[0-9a-f]+)"/)?.1
            let configDigest = try #require(match)
            let configFile = f.blobFile(layout, String(configDigest))
            try f.corrupt(configFile)
            let error = try #require(resolveError(layout, tag: nil, verifyLayers: false))
            #expect(error.kind == .corruptBlob)
            #expect(error.description.hasPrefix("\(configFile): blob \(configDigest) has sha256 "))
        }
    }

    @Test func aCorruptLayerIsFoundWhenLayersAreVerified() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            let layer = try #require(image.layers.first)
            try f.corrupt(f.blobFile(layout, layer.digest))
            let unverified = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            #expect(unverified == image)
            let error = try #require(resolveError(layout, tag: nil, verifyLayers: true))
            #expect(error.kind == .corruptBlob)
            #expect(error.description.contains(f.blobFile(layout, layer.digest) + ": blob " + layer.digest))
        }
    }

    @Test func aMissingBlobIsNamed() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            let image = try OCIImage.resolve(path: layout, tag: nil, verifyLayers: false)
            try FileManager.default.removeItem(atPath: f.blobFile(layout, image.manifestDigest))
            let error = try #require(resolveError(layout, tag: nil, verifyLayers: false))
            #expect(error.kind == .missingBlob)
            #expect(error.description.hasPrefix("\(f.blobFile(layout, image.manifestDigest)): blob \(image.manifestDigest) is missing"))
        }
    }

    @Test func anImageForAnotherArchitectureNamesBoth() throws {
        try ImageFixture.with { f in
            let layout = try f.image("arm", layers: [[file("a", "x")]], extra: ["architecture": "arm64"])
            let error = try #require(resolveError(layout, tag: nil, verifyLayers: false))
            #expect(error.kind == .otherPlatform)
            #expect(error.description.contains("image is for linux/arm64, this host is linux/\(HostPlatform.current.architecture)"))
        }
    }

    @Test func anUnsupportedLayerMediaTypeIsRefused() throws {
        try ImageFixture.with { f in
            let layout = try f.image("zstd", layers: [[file("a", "x")]], extra: ["layerMediaType": "application/vnd.oci.image.layer.v1.tar+zstd"])
            let error = try #require(resolveError(layout, tag: nil, verifyLayers: false))
            #expect(error.kind == .unsupportedMediaType)
            #expect(error.description.contains("application/vnd.oci.image.layer.v1.tar+zstd, which Muster cannot unpack"))
        }
    }

    @Test func anImageIndexIsFollowedToThisHostsManifest() throws {
        try ImageFixture.with { f in
            let layout = try f.image("multi", ["nestedIndex": true, "layers": [["entries": [file("a", "x")]]]])
            let image = try OCIImage.resolve(path: layout, tag: "latest", verifyLayers: true)
            #expect(image.layers.count == 1)
            #expect(image.config.architecture == HostPlatform.current.architecture)
        }
    }

    @Test func anOCIArchiveResolvesLikeItsLayout() throws {
        try ImageFixture.with { f in
            let layout = try f.busyboxImage()
            try f.run("/bin/tar", "-C", layout, "-cf", f.path("busybox.tar"), ".")
            let fromLayout = try OCIImage.resolve(path: layout, tag: "latest", verifyLayers: true)
            let fromArchive = try OCIImage.resolve(path: f.path("busybox.tar"), tag: "latest", verifyLayers: true)
            #expect(fromArchive.source == f.path("busybox.tar"))
            #expect(fromArchive.manifestDigest == fromLayout.manifestDigest)
            #expect(fromArchive.config == fromLayout.config)
            #expect(fromArchive.layers == fromLayout.layers)
        }
    }

    @Test func hostArchitecturesUseOCINames() {
        #expect(HostPlatform.architecture(machine: "x86_64") == "amd64")
        #expect(HostPlatform.architecture(machine: "aarch64") == "arm64")
        #expect(HostPlatform.current.os == "linux")
    }
}
