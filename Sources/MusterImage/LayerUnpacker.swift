import CArchive
import Glibc

/// Applies layer tars, base first, onto one root folder, the way the OCI image spec's changesets
/// say: entries are written with their modes, owners, times, xattrs, hard links, symlinks, devices
/// and fifos; `.wh.NAME` removes NAME from the layers below; `.wh..wh..opq` empties its folder of
/// what the layers below put there.
///
/// Paths: libarchive resolves relative names against the process's working directory, and musterd
/// is multithreaded, so nothing here chdirs. Each entry's name is checked here (no `..`, a leading
/// `/` dropped as tar does) and then prefixed with the absolute, symlink-free root; libarchive's
/// SECURE_SYMLINKS then refuses any entry (or hard-link target) whose parent folders contain a
/// symlink, so no entry is written through a link, inside the root or out of it. A layer made by
/// diffing a filesystem never has such entries. Symlink targets are data and are stored as they are.
struct LayerUnpacker {
    /// Absolute and free of symlinks (the store makes it with mkdtemp under a realpath'd root).
    let root: String
    let uidShift: UInt32
    let gidShift: UInt32

    private static let flags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR
        | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT
    // Not ARCHIVE_EXTRACT_UNLINK: with it libarchive removes a symlink met in an entry's parent
    // folders instead of refusing the entry.

    /// Reads `blob` once, unpacking as it goes and hashing every byte; a digest or size mismatch is
    /// known only at the end, so the caller throws the whole root away when this throws.
    func apply(_ blob: VerifiedBlob, compression: MediaTypes.LayerCompression) throws(ImageError) {
        let feed = LayerFeed(blob: blob)
        guard let reader = archive_read_new(), let writer = archive_write_disk_new() else { fatalError("libarchive: out of memory") }
        defer {
            archive_read_free(reader)
            archive_write_free(writer)
        }
        archive_read_support_format_tar(reader)
        if compression == .gzip { archive_read_support_filter_gzip(reader) }
        archive_write_disk_set_options(writer, Self.flags)
        // No archive_write_disk_set_standard_lookup: owners are the image's numeric ids, not
        // whatever this host's /etc/passwd maps their names to.
        let opened = archive_read_open(reader, Unmanaged.passUnretained(feed).toOpaque(), nil, { _, client, out in
            let feed = Unmanaged<LayerFeed>.fromOpaque(client!).takeUnretainedValue()
            return feed.next(out)
        }, nil)
        let layer = blob.file
        if opened != ARCHIVE_OK { throw feed.failure ?? Self.failure(reader, layer, "cannot open the layer as tar") }

        let changes = LayerChanges()
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(reader, &entry)
            if status == ARCHIVE_EOF { break }
            guard status >= ARCHIVE_WARN, let entry else {
                throw feed.failure ?? Self.failure(reader, layer, "damaged tar (rebuild the image)")
            }
            let raw = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            let path = try EntryPath(raw, layer: layer)
            if path.isRoot { continue }
            guard root.utf8.count + path.relative.utf8.count + 2 < Int(PATH_MAX) else {
                // libarchive would chdir into the tree to write a name this long.
                throw ImageError(.unsafeEntry, "\(layer): entry \"\(raw)\" has a path longer than \(PATH_MAX) bytes, which Muster does not unpack (shorten it in the image)")
            }
            if let whiteout = path.whiteout {
                try applyWhiteout(whiteout, at: path, raw: raw, layer: layer, changes: changes)
                continue
            }
            try write(entry, path: path, raw: raw, layer: layer, reader: reader, writer: writer, feed: feed)
            changes.record(path.relative)
        }
        if archive_write_close(writer) < ARCHIVE_WARN { throw Self.failure(writer, layer, "cannot finish unpacking") }
        try blob.finish()
    }

    private func write(_ entry: OpaquePointer, path: EntryPath, raw: String, layer: String,
                       reader: OpaquePointer, writer: OpaquePointer, feed: LayerFeed) throws(ImageError) {
        let target = root + "/" + path.relative
        // A file over a folder the layers below made: the folder goes (libarchive only rmdirs an
        // empty one). The parents are checked first so the removal cannot follow a link.
        if archive_entry_filetype(entry) != UInt32(Glibc.S_IFDIR), FileTree.type(target) == S_IFDIR {
            try checkParents(of: path.relative, raw: raw, layer: layer)
            try FileTree.remove(target)
        }
        if let link = archive_entry_hardlink(entry) {
            let linkRaw = String(cString: link)
            let linkPath = try EntryPath(linkRaw, layer: layer)
            guard !linkPath.isRoot else {
                throw ImageError(.unsafeEntry, "\(layer): entry \"\(raw)\" is a hard link to the root folder (the layer is damaged or hostile)")
            }
            try checkParents(of: linkPath.relative, raw: raw, layer: layer)
            archive_entry_set_hardlink(entry, root + "/" + linkPath.relative)
        }
        archive_entry_set_pathname(entry, target)
        if uidShift > 0 || gidShift > 0 {
            let uid = archive_entry_uid(entry) + Int64(uidShift)
            let gid = archive_entry_gid(entry) + Int64(gidShift)
            guard uid < Int64(UInt32.max), gid < Int64(UInt32.max) else {
                throw ImageError(.unsafeEntry, "\(layer): entry \"\(raw)\" owned by \(archive_entry_uid(entry)):\(archive_entry_gid(entry)) cannot be shifted by \(uidShift):\(gidShift) (use a smaller id range)")
            }
            archive_entry_set_uid(entry, uid)
            archive_entry_set_gid(entry, gid)
        }
        if archive_write_header(writer, entry) < ARCHIVE_WARN {
            let message = Self.message(writer)
            let unsafe = message.contains("symlink") || message.contains("..")
            throw ImageError(unsafe ? .unsafeEntry : .io, "\(layer): entry \"\(raw)\" refused: \(message)\(unsafe ? " (the layer writes through a link or out of the root; rebuild it from a real filesystem)" : "")")
        }
        if archive_entry_size(entry) > 0 {
            var buffer: UnsafeRawPointer?
            var size = 0
            var offset: la_int64_t = 0
            while true {
                let status = archive_read_data_block(reader, &buffer, &size, &offset)
                if status == ARCHIVE_EOF { break }
                if status < ARCHIVE_WARN { throw feed.failure ?? Self.failure(reader, layer, "cannot read entry \"\(raw)\"") }
                if archive_write_data_block(writer, buffer, size, offset) < ARCHIVE_WARN {
                    throw Self.failure(writer, layer, "cannot write entry \"\(raw)\"")
                }
            }
        }
        if archive_write_finish_entry(writer) < ARCHIVE_WARN { throw Self.failure(writer, layer, "cannot finish entry \"\(raw)\"") }
    }

    private func applyWhiteout(_ whiteout: EntryPath.Whiteout, at path: EntryPath, raw: String, layer: String,
                               changes: LayerChanges) throws(ImageError) {
        switch whiteout {
        case .metadata:
            return
        case .remove(let relative):
            // What this layer wrote itself stays: the whiteout hides the layers below only.
            if changes.wrote(relative) { return }
            try checkParents(of: relative, raw: raw, layer: layer)
            try FileTree.remove(root + "/" + relative)
        case .opaque(let folder):
            let absolute = folder.isEmpty ? root : root + "/" + folder
            if !folder.isEmpty { try checkParents(of: folder, raw: raw, layer: layer) }
            guard FileTree.type(absolute) == S_IFDIR else { return }
            try removeLower(in: folder, changes: changes)
        }
    }

    /// Empties `folder` of everything this layer did not write, keeping what it did (the opaque
    /// marker may come before or after the folder's other entries in the tar).
    private func removeLower(in folder: String, changes: LayerChanges) throws(ImageError) {
        let absolute = folder.isEmpty ? root : root + "/" + folder
        for name in FileTree.names(in: absolute) {
            let relative = folder.isEmpty ? name : folder + "/" + name
            let isFolder = FileTree.type(root + "/" + relative) == S_IFDIR
            if isFolder && (changes.wrote(relative) || changes.holds(relative)) {
                try removeLower(in: relative, changes: changes)
            } else if !changes.wrote(relative) {
                try FileTree.remove(root + "/" + relative)
            }
        }
    }

    /// Every folder above `relative` must be a real folder (or not exist): a removal must never
    /// follow a symlink a layer planted, here or out of the root.
    private func checkParents(of relative: String, raw: String, layer: String) throws(ImageError) {
        var current = root
        for component in relative.split(separator: "/").dropLast() {
            current += "/" + component
            guard let type = FileTree.type(current) else { return }
            if type == S_IFLNK {
                throw ImageError(.unsafeEntry, "\(layer): entry \"\(raw)\" goes through the symlink \(current.dropFirst(root.count + 1)) (the layer is damaged or hostile; rebuild it from a real filesystem)")
            }
        }
    }

    private static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }

    private static func failure(_ archive: OpaquePointer, _ layer: String, _ what: String) -> ImageError {
        ImageError(.io, "\(layer): \(what): \(message(archive))")
    }
}

/// What the layer being applied has written so far: opaque folders and whiteouts must spare it.
private final class LayerChanges {
    private var written = Set<String>()
    private var parents = Set<String>()

    func record(_ relative: String) {
        written.insert(relative)
        var path = Substring(relative)
        while let slash = path.lastIndex(of: "/") {
            path = path[..<slash]
            if !parents.insert(String(path)).inserted { break }
        }
    }

    func wrote(_ relative: String) -> Bool { written.contains(relative) }
    /// A folder this layer wrote something into without an entry of its own.
    func holds(_ relative: String) -> Bool { parents.contains(relative) }
}

/// Feeds libarchive the layer blob through its read callback, which cannot throw: a failure is
/// kept here and thrown once libarchive returns.
private final class LayerFeed {
    let blob: VerifiedBlob
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 17, alignment: 16)
    var failure: ImageError?

    init(blob: VerifiedBlob) { self.blob = blob }
    deinit { buffer.deallocate() }

    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        do {
            let n = try blob.read(into: buffer)
            out?.pointee = UnsafeRawPointer(buffer.baseAddress)
            return n
        } catch {
            failure = error
            return -1
        }
    }
}
