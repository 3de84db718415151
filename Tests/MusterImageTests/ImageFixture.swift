import Foundation
import Glibc
import MusterImage

let isRoot = geteuid() == 0

/// A folder of the test's own (unique per run), removed when the test ends, failed or not, with
/// the helpers that build images into it.
struct ImageFixture {
    let dir: String

    static func with<T>(_ body: (ImageFixture) throws -> T) throws -> T {
        var template = Array("/tmp/muster-image-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp: \(String(cString: strerror(errno)))") }
        let fixture = ImageFixture(dir: String(cString: made))
        defer { _ = try? FileManager.default.removeItem(atPath: fixture.dir) }
        return try body(fixture)
    }

    func path(_ name: String) -> String { dir + "/" + name }

    var store: ImageStore { ImageStore(root: path("store")) }

    /// scripts/images/busybox-image into `name`.
    func busyboxImage(_ name: String = "busybox", tag: String = "latest") throws -> String {
        let out = path(name)
        try run(repository + "/scripts/images/busybox-image", out, tag)
        return out
    }

    /// An image layout written by Fixtures/oci-layout.py from `spec` (see that file).
    func image(_ name: String, _ spec: [String: Any]) throws -> String {
        let out = path(name)
        let specFile = path(name + ".json")
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: specFile))
        try run("/usr/bin/env", "python3", repository + "/Tests/MusterImageTests/Fixtures/oci-layout.py", specFile, out)
        return out
    }

    /// An image of `layers`, each a list of entries, uncompressed unless `gzip`.
    func image(_ name: String, layers: [[[String: Any]]], gzip: Bool = false, extra: [String: Any] = [:]) throws -> String {
        var spec: [String: Any] = ["layers": layers.map { ["gzip": gzip, "entries": $0] as [String: Any] }]
        spec.merge(extra) { $1 }
        return try image(name, spec)
    }

    @discardableResult
    func run(_ arguments: String...) throws -> String { try runArguments(arguments) }

    @discardableResult
    func runArguments(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw FixtureError("\(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
        }
        return text
    }

    /// Everything under `root` that a rootfs comparison cares about, one sorted line per file:
    /// path, type, mode, owner, size, link target, and the mtime of non-folders (whiteouts touch
    /// folders' mtimes, and runtimes differ in restoring them).
    func tree(_ root: String) -> [String] {
        var lines: [String] = []
        func walk(_ relative: String) {
            let full = relative.isEmpty ? root : root + "/" + relative
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: full)) ?? []).sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(root + "/" + child, &info) == 0 else { continue }
                let type = info.st_mode & S_IFMT
                var line = "\(child) \(String(info.st_mode, radix: 8)) \(info.st_uid):\(info.st_gid)"
                if type == S_IFREG { line += " size=\(info.st_size) mtime=\(info.st_mtim.tv_sec)" }
                if type == S_IFLNK { line += " -> \(link(root + "/" + child) ?? "?") mtime=\(info.st_mtim.tv_sec)" }
                if type == S_IFCHR || type == S_IFBLK { line += " rdev=\(info.st_rdev)" }
                lines.append(line)
                if type == S_IFDIR { walk(child) }
            }
        }
        walk("")
        return lines
    }

    func link(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

    func mode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode : nil
    }

    func info(_ path: String) -> stat? {
        var info = stat()
        return lstat(path, &info) == 0 ? info : nil
    }

    func exists(_ path: String) -> Bool { mode(path) != nil }

    func read(_ path: String) -> String? { FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } }

    /// Names in the store folder that are not lock files: what an unpack left on disk.
    func storeFolders() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path("store"))) ?? []).filter { !$0.hasSuffix(".lock") }.sorted()
    }

    /// The blob file a digest names in a layout.
    func blobFile(_ layout: String, _ digest: String) -> String { layout + "/blobs/sha256/" + digest.dropFirst("sha256:".count) }

    /// Flips one byte in the middle of a file.
    func corrupt(_ file: String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: file))
        data[data.count / 2] ^= 0xff
        try data.write(to: URL(fileURLWithPath: file))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The repository root: three folders up from this file.
let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Tar entries for Fixtures/oci-layout.py.
func file(_ name: String, _ data: String = "", mode: Int = 0o644, uid: Int = 0, gid: Int = 0, mtime: Int = 1_600_000_000,
          xattrs: [String: String] = [:]) -> [String: Any] {
    ["name": name, "type": "file", "data": data, "mode": mode, "uid": uid, "gid": gid, "mtime": mtime, "xattrs": xattrs]
}

func folder(_ name: String, mode: Int = 0o755) -> [String: Any] { ["name": name, "type": "dir", "mode": mode] }

func symlink(_ name: String, to target: String) -> [String: Any] { ["name": name, "type": "symlink", "link": target, "mode": 0o777] }

func hardlink(_ name: String, to target: String) -> [String: Any] { ["name": name, "type": "hardlink", "link": target] }

func device(_ name: String, major: Int, minor: Int) -> [String: Any] {
    ["name": name, "type": "char", "major": major, "minor": minor, "mode": 0o666]
}

func fifo(_ name: String) -> [String: Any] { ["name": name, "type": "fifo", "mode": 0o600] }

/// The error resolving fails with, or nil. A plain function rather than `#require(throws:)`:
/// a closure inside a macro argument can run the wrong body (see scripts/lint-tests).
func resolveError(_ path: String, tag: String?, verifyLayers: Bool) -> ImageError? {
    do {
        _ = try OCIImage.resolve(path: path, tag: tag, verifyLayers: verifyLayers)
        return nil
    } catch {
        return error
    }
}

/// The error unpacking fails with, or nil.
func unpackError(_ store: ImageStore, _ image: ResolvedImage) -> ImageError? {
    do {
        _ = try store.unpack(image)
        return nil
    } catch {
        return error
    }
}
