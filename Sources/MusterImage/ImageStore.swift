import Foundation
import Glibc

/// Images unpacked once per manifest digest (and per id shift) under one folder, shared by every
/// instance and service that runs them:
///
///     root/<sha256-hex>[-<uidShift>[-<gidShift>]]/rootfs       the unpacked root, used read-only
///     root/<sha256-hex>[-…]/image.json                        what it is (for `musterctl images`)
///     root/<sha256-hex>[-…]/complete                          written last: the unpack finished
///     root/<sha256-hex>[-…].lock                              flock'd while unpacking or removing
///     root/<sha256-hex>[-…].tmp-XXXXXX/                       an unpack in progress (or a crashed one)
public struct ImageStore: Sendable {
    public let root: String

    /// - Parameter root: e.g. `<state_dir>/images`; made on first unpack.
    public init(root: String) {
        self.root = root
    }

    /// The unpacked root of `image`, unpacking it first unless that was done before.
    ///
    /// A finished unpack returns at once without reading the image. Otherwise, under a lock that
    /// threads and processes share, the layers are unpacked into a temporary folder (each layer's
    /// sha256 checked as it is read), flushed, and renamed into place; leftovers of a crashed unpack
    /// are removed first. A failure leaves nothing behind.
    /// - Parameters:
    ///   - uidShift, gidShift: added to every file's owner, for a user namespace whose root is that
    ///     host id (the ownership is chowned on unpack, not idmapped at mount time).
    /// - Returns: the absolute path of the rootfs folder.
    public func unpack(_ image: ResolvedImage, uidShift: UInt32 = 0, gidShift: UInt32 = 0) throws(ImageError) -> String {
        let digest = try BlobDigest(image.manifestDigest, in: image.source)
        let base = try absoluteRoot()
        let name = Self.folderName(digest.hex, uidShift: uidShift, gidShift: gidShift)
        let folder = base + "/" + name
        if Self.isComplete(folder) { return folder + "/rootfs" }

        let lock = try StoreLock(base + "/" + name + ".lock")
        defer { lock.release() }
        if Self.isComplete(folder) { return folder + "/rootfs" }
        for leftover in FileTree.names(in: base) where leftover.hasPrefix(name + ".tmp-") {
            try FileTree.remove(base + "/" + leftover)
        }
        try FileTree.remove(folder)

        var template = Array((folder + ".tmp-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ImageError(.io, "\(folder).tmp-XXXXXX: cannot create: \(FileTree.errorText()) (check that \(base) is writable)")
        }
        let temp = String(cString: made)
        do throws(ImageError) {
            try fill(temp, with: image, digest: digest, uidShift: uidShift, gidShift: gidShift)
            guard rename(temp, folder) == 0 else {
                throw ImageError(.io, "\(folder): cannot rename \(temp) into place: \(FileTree.errorText())")
            }
        } catch {
            try? FileTree.remove(temp)
            throw error
        }
        try Self.writeFile(folder + "/complete", [])
        Self.syncFolder(folder)
        return folder + "/rootfs"
    }

    private func fill(_ temp: String, with image: ResolvedImage, digest: BlobDigest, uidShift: UInt32, gidShift: UInt32) throws(ImageError) {
        let rootfs = temp + "/rootfs"
        guard mkdir(rootfs, 0o755) == 0, chown(rootfs, uidShift, gidShift) == 0 else {
            throw ImageError(.io, "\(rootfs): cannot create: \(FileTree.errorText())")
        }
        let source = try ImageSource.at(image.source)
        let unpacker = LayerUnpacker(root: rootfs, uidShift: uidShift, gidShift: gidShift)
        for layer in image.layers {
            let layerDigest = try BlobDigest(layer.digest, in: image.source)
            guard let compression = MediaTypes.layerCompression(layer.mediaType) else {
                throw ImageError(.unsupportedMediaType, "\(source.label(layerDigest.blobPath)): layer media type \(layer.mediaType) cannot be unpacked (rebuild the image with tar or tar+gzip layers)")
            }
            try unpacker.apply(try source.blob(layerDigest, size: layer.size), compression: compression)
        }
        let record = UnpackedImage(digest: digest.description, source: image.source, tag: image.tag, uidShift: uidShift,
                                   gidShift: gidShift, bytes: FileTree.diskBytes(rootfs), unpackedAt: Date(),
                                   rootfs: "")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        guard let json = try? encoder.encode(record) else { throw ImageError(.io, "\(temp)/image.json: cannot encode") }
        try Self.writeFile(temp + "/image.json", Array(json))
        // The rename below says "complete": what it names must be on disk first, or a power cut
        // could leave a complete-looking root of empty files.
        let fd = open(temp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = syncfs(fd); close(fd) }
    }

    /// The unpacked root of the image with this manifest digest, when an unpack of it finished;
    /// nil otherwise. Reads nothing of the image: what an instance start asks.
    public func unpackedRoot(digest: String, uidShift: UInt32 = 0, gidShift: UInt32 = 0) -> String? {
        guard let parsed = try? BlobDigest(digest, in: root), let base = try? absoluteRoot(create: false) else { return nil }
        let folder = base + "/" + Self.folderName(parsed.hex, uidShift: uidShift, gidShift: gidShift)
        return Self.isComplete(folder) ? folder + "/rootfs" : nil
    }

    /// The finished unpacks, from their image.json; unreadable ones are left out.
    public func list() -> [UnpackedImage] {
        guard let base = try? absoluteRoot(create: false) else { return [] }
        var images: [UnpackedImage] = []
        for name in FileTree.names(in: base).sorted() where !name.contains(".") {
            let folder = base + "/" + name
            guard Self.isComplete(folder), let data = FileManager.default.contents(atPath: folder + "/image.json") else { continue }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            guard var image = try? decoder.decode(UnpackedImage.self, from: data) else { continue }
            image.rootfs = folder + "/rootfs"
            images.append(image)
        }
        return images
    }

    /// Removes every unpack of `digest` (each id shift). Unpacks not there are not an error.
    /// The caller makes sure no running instance uses them.
    public func remove(digest: String) throws(ImageError) {
        let hex = try BlobDigest(digest, in: root).hex
        guard let base = try? absoluteRoot(create: false) else { return }
        for name in FileTree.names(in: base) where !name.contains(".") && (name == hex || name.hasPrefix(hex + "-")) {
            let lock = try StoreLock(base + "/" + name + ".lock")
            defer { lock.release() }
            // The marker goes first: a removal cut short leaves an unpack that is redone, not a
            // complete-looking half.
            if unlink(base + "/" + name + "/complete") != 0 && errno != ENOENT {
                throw ImageError(.io, "\(base)/\(name)/complete: cannot remove: \(FileTree.errorText())")
            }
            try FileTree.remove(base + "/" + name)
        }
    }

    static func folderName(_ hex: String, uidShift: UInt32, gidShift: UInt32) -> String {
        if uidShift == 0 && gidShift == 0 { return hex }
        return uidShift == gidShift ? "\(hex)-\(uidShift)" : "\(hex)-\(uidShift)-\(gidShift)"
    }

    private static func isComplete(_ folder: String) -> Bool { access(folder + "/complete", F_OK) == 0 }

    /// The store's folder, absolute and symlink-free: layers are unpacked under it by absolute path.
    private func absoluteRoot(create: Bool = true) throws(ImageError) -> String {
        if create {
            var current = root.hasPrefix("/") ? "" : "."
            for component in root.split(separator: "/") {
                current += "/" + component
                if mkdir(current, 0o700) != 0 && errno != EEXIST {
                    throw ImageError(.io, "\(current): cannot create the image store folder: \(FileTree.errorText()) (check state_dir)")
                }
            }
        }
        guard let real = realpath(root, nil) else {
            throw ImageError(.io, "\(root): cannot open the image store folder: \(FileTree.errorText()) (check state_dir)")
        }
        defer { free(real) }
        return String(cString: real)
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8]) throws(ImageError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ImageError(.io, "\(path): cannot create: \(FileTree.errorText())") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError(.io, "\(path): cannot write: \(FileTree.errorText())")
            }
            offset += n
        }
        if fsync(fd) != 0 { throw ImageError(.io, "\(path): cannot fsync: \(FileTree.errorText())") }
    }

    private static func syncFolder(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

/// syncfs(2): Glibc declares it only under _GNU_SOURCE, which the Swift overlay does not set.
@_silgen_name("syncfs")
private func syncfs(_ fd: Int32) -> Int32

/// One finished unpack, as `musterctl images` shows it.
public struct UnpackedImage: Sendable, Equatable, Codable {
    public var digest: String
    public var source: String
    public var tag: String?
    public var uidShift: UInt32
    public var gidShift: UInt32
    /// Allocated on disk by the rootfs (hard links once).
    public var bytes: Int64
    public var unpackedAt: Date
    /// Absolute path of the rootfs folder (not stored: where the store finds it).
    public var rootfs: String

    enum CodingKeys: String, CodingKey { case digest, source, tag, uidShift, gidShift, bytes, unpackedAt }

    public init(digest: String, source: String, tag: String?, uidShift: UInt32, gidShift: UInt32, bytes: Int64,
                unpackedAt: Date, rootfs: String) {
        self.digest = digest
        self.source = source
        self.tag = tag
        self.uidShift = uidShift
        self.gidShift = gidShift
        self.bytes = bytes
        self.unpackedAt = unpackedAt
        self.rootfs = rootfs
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(digest: try c.decode(String.self, forKey: .digest), source: try c.decode(String.self, forKey: .source),
                  tag: try c.decodeIfPresent(String.self, forKey: .tag), uidShift: try c.decode(UInt32.self, forKey: .uidShift),
                  gidShift: try c.decode(UInt32.self, forKey: .gidShift), bytes: try c.decode(Int64.self, forKey: .bytes),
                  unpackedAt: try c.decode(Date.self, forKey: .unpackedAt), rootfs: "")
    }
}

/// An exclusive flock on one file: per open file, so it excludes other threads of this process
/// (each opens its own) as well as other processes.
private final class StoreLock {
    private var fd: Int32

    init(_ path: String) throws(ImageError) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ImageError(.io, "\(path): cannot open the unpack lock: \(FileTree.errorText())") }
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let text = FileTree.errorText()
            close(fd)
            throw ImageError(.io, "\(path): cannot lock: \(text)")
        }
    }

    func release() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    deinit { release() }
}
