/// A layer entry's name made relative to the root: leading `/` and `.` components dropped as tar
/// does, `..` anywhere refused (no entry may climb out of the root, even one that would climb
/// back in).
struct EntryPath {
    /// Empty for the root folder itself.
    let relative: String

    enum Whiteout: Equatable {
        /// `.wh.NAME`: NAME (relative to the root) is removed from the layers below.
        case remove(String)
        /// `.wh..wh..opq`: the folder (relative; empty for the root) hides the layers below.
        case opaque(String)
        /// Other `.wh..wh.` names are aufs bookkeeping, skipped.
        case metadata
    }

    init(_ raw: String, layer: String) throws(ImageError) {
        var parts: [Substring] = []
        for component in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." {
                throw ImageError(.unsafeEntry, "\(layer): entry \"\(raw)\" climbs out of the root with .. (the layer is damaged or hostile; rebuild it)")
            }
            parts.append(component)
        }
        relative = parts.joined(separator: "/")
    }

    var isRoot: Bool { relative.isEmpty }

    var whiteout: Whiteout? {
        let name = relative.split(separator: "/").last.map(String.init) ?? ""
        guard name.hasPrefix(".wh.") else { return nil }
        let folder = relative.count > name.count ? String(relative.dropLast(name.count + 1)) : ""
        if name == ".wh..wh..opq" { return .opaque(folder) }
        if name.hasPrefix(".wh..wh.") { return .metadata }
        let hidden = String(name.dropFirst(4))
        if hidden.isEmpty { return .metadata }
        return .remove(folder.isEmpty ? hidden : folder + "/" + hidden)
    }
}
