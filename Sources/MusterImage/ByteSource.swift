import CArchive
import Glibc

/// Bytes of one file of an image, read front to back once.
protocol ByteSource: AnyObject {
    /// Fills up to `buffer.count` bytes; 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int
}

/// A file of an image layout folder.
final class FileBytes: ByteSource {
    private let fd: Int32
    private let path: String

    /// nil when the file does not exist; other failures to open are errors.
    init?(path: String) throws(ImageError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw ImageError(.io, "\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw ImageError(.io, "\(path): cannot read: \(String(cString: strerror(errno)))")
        }
    }
}

/// A member of an oci-archive, read in place by libarchive. Each member opened scans the tar from
/// the start to its header: for an uncompressed tar libarchive skips the other members' data by
/// seeking, so this costs a walk over the headers, and no member is ever extracted to disk.
final class ArchiveMemberBytes: ByteSource {
    private let archive: OpaquePointer
    private let label: String

    /// nil when the archive holds no member `member` (a path like `blobs/sha256/<hex>`).
    init?(archivePath: String, member: String) throws(ImageError) {
        guard let archive = archive_read_new() else { fatalError("archive_read_new: out of memory") }
        archive_read_support_format_tar(archive)
        // `podman save` writes plain tar; a gzipped one is read as well (skipping then decompresses).
        archive_read_support_filter_gzip(archive)
        self.archive = archive
        self.label = archivePath + ":" + member
        guard archive_read_open_filename(archive, archivePath, 1 << 16) == ARCHIVE_OK else {
            throw ImageError(.io, "\(archivePath): cannot read as an oci-archive tar: \(Self.message(archive)) (make one with `tar -C LAYOUT -cf FILE .` or `podman save --format oci-archive`)")
        }
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { return nil }
            guard status >= ARCHIVE_WARN, let entry else {
                throw ImageError(.io, "\(archivePath): damaged tar while looking for \(member): \(Self.message(archive)) (rebuild the archive)")
            }
            let name = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            if Self.memberName(name) == member, archive_entry_filetype(entry) == UInt32(Glibc.S_IFREG) { return }
        }
    }

    deinit { archive_read_free(archive) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
        if n < 0 { throw ImageError(.io, "\(label): cannot read: \(Self.message(archive)) (rebuild the archive)") }
        return n
    }

    /// `./blobs/x`, `/blobs/x` and `blobs/x` are one member: tar keeps whatever prefix it was given.
    static func memberName(_ name: String) -> String {
        var rest = Substring(name)
        while rest.hasPrefix("./") || rest.hasPrefix("/") { rest = rest.hasPrefix("/") ? rest.dropFirst() : rest.dropFirst(2) }
        return String(rest)
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }
}

/// A blob's bytes as they are read, hashed on the way; `finish` drains what the reader left and
/// compares size and sha256 with the descriptor that named the blob.
final class VerifiedBlob {
    let digest: BlobDigest
    let size: Int64
    /// Where the blob lives, for messages: a path, or `archive:member`.
    let file: String
    private let bytes: ByteSource
    private let hasher = SHA256Hasher()
    private(set) var count: Int64 = 0

    init(digest: BlobDigest, size: Int64, file: String, bytes: ByteSource) {
        self.digest = digest
        self.size = size
        self.file = file
        self.bytes = bytes
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        let n = try bytes.read(into: buffer)
        hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        count += Int64(n)
        if count > size {
            throw ImageError(.corruptBlob, "\(file): blob \(digest) is larger than the \(size) bytes its descriptor says (the image is damaged; rebuild or re-copy it)")
        }
        return n
    }

    /// Reads to the end (a tar reader stops at the end-of-archive blocks; gzip may have padding).
    func finish() throws(ImageError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        while try read(into: buffer) > 0 {}
        if count != size {
            throw ImageError(.corruptBlob, "\(file): blob \(digest) has \(count) bytes, its descriptor says \(size) (the image is damaged; rebuild or re-copy it)")
        }
        let actual = hasher.finish()
        if actual != digest.hex {
            throw ImageError(.corruptBlob, "\(file): blob \(digest) has sha256 \(actual): the file is corrupt (rebuild or re-copy the image)")
        }
    }

    /// The whole blob, verified; for index, manifest and config, which are small.
    func readAll(limit: Int64) throws(ImageError) -> [UInt8] {
        guard size <= limit else {
            throw ImageError(.invalidImage, "\(file): blob \(digest) claims \(size) bytes, more than the \(limit) a manifest or config may have (the image is damaged)")
        }
        // One byte more than the descriptor says, so that a longer file shows as one.
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(size) + 1, alignment: 16)
        defer { out.deallocate() }
        var filled = 0
        while filled < out.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: out[filled...]))
            if n == 0 { break }
            filled += n
        }
        try finish()
        return Array(out[0..<filled])
    }
}
