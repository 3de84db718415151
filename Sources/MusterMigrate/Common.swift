#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import MusterCore

/// One manifest produced by an import, with everything that did not translate.
public struct ImportedManifest: Sendable, Equatable {
    /// The service name (also the file stem: `<name>.toml`).
    public var name: String
    /// The manifest's TOML text, header comment included.
    public var toml: String
    /// "file:line", where the program or app was defined.
    public var origin: String
    /// Settings that have no counterpart in a manifest today, each with why.
    public var notCarriedOver: [String]
    /// Translations that are exact only under a condition, or were resolved at import time.
    public var notes: [String] = []

    public var fileName: String { name + ".toml" }
}

/// What an import produced: manifests, things that were not carried over at all (a `[group:x]`),
/// and errors (a program that could not be imported).
public struct ImportResult: Sendable, Equatable {
    public var manifests: [ImportedManifest] = []
    /// Whole sections or files that produced no manifest, each with why.
    public var notCarriedOver: [String] = []
    /// Problems that stopped a program from being imported.
    public var errors: [String] = []
    public init() {}

    /// Every line of the summary: per manifest and general.
    public var summaryLines: [String] {
        var lines: [String] = []
        for manifest in manifests {
            lines.append("imported \(manifest.origin) -> \(manifest.fileName)")
            for note in manifest.notCarriedOver { lines.append("  not carried over yet: \(note)") }
            for note in manifest.notes { lines.append("  note: \(note)") }
        }
        for note in notCarriedOver { lines.append("not carried over: \(note)") }
        for error in errors { lines.append("error: \(error)") }
        return lines
    }
}

public struct MigrationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The manifest being written: only the keys that were given are written, so Muster's defaults
/// stay visible as defaults.
public struct ManifestDraft: Sendable, Equatable {
    public var header: [String] = []
    public var name: String
    public var command: [String] = []
    public var directory: String?
    public var user: String?
    public var group: String?
    public var inheritEnvironment: Bool?
    public var inheritEnvironmentComment: String?
    public var instances: Int?
    public var instancesComment: String?
    public var environment: [(String, String)] = []
    public var restartPolicy: String?
    public var startSeconds: Double?
    public var maxFailedStarts: Int?
    public var backoffMin: String?
    public var backoffMax: String?
    public var backoffComment: String?
    public var successExitCodes: [Int]?
    public var stopSignal: String?
    public var stopTimeout: String?
    public var memoryMax: String?
    public var memoryComment: String?
    public var logMaxBytes: String?
    public var logBackups: Int?
    /// Written at the end as comments: things the user must do by hand.
    public var trailingComments: [String] = []
    public var notCarriedOver: [String] = []

    public init(name: String) { self.name = name }

    public static func == (lhs: ManifestDraft, rhs: ManifestDraft) -> Bool {
        TOMLWriter.write(lhs) == TOMLWriter.write(rhs)
    }
}

/// Service names are `a-z`, `0-9` and `-`: `My_App.v2` becomes `my-app-v2`.
public enum NameMapping {
    public static func serviceName(_ raw: String) -> String {
        var out = ""
        for scalar in raw.lowercased().unicodeScalars {
            if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) { out.unicodeScalars.append(scalar) }
            else if !out.isEmpty, !out.hasSuffix("-") { out.append("-") }
        }
        while out.hasSuffix("-") { out.removeLast() }
        if out.count > 63 { out = String(out.prefix(63)); while out.hasSuffix("-") { out.removeLast() } }
        return out.isEmpty ? "service" : out
    }
}

/// The host access the importers need: reading files, globbing, paths, host name, CPU count.
public enum HostFiles {
    public static func read(_ path: String) throws(MigrationError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw MigrationError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MigrationError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > 16 << 20 { throw MigrationError("\(path) is larger than 16M; not a config file") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sorted matches of a glob pattern, as Python's `sorted(glob.glob(pattern))`.
    public static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths.sorted()
    }

    public static func absolute(_ path: String, relativeTo base: String) -> String {
        if path.hasPrefix("/") { return normalized(path) }
        var root = base
        if !root.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: 4096)
            if getcwd(&buffer, buffer.count) != nil {
                let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                root = root == "." ? cwd : cwd + "/" + root
            }
        }
        return normalized(root + "/" + path)
    }

    /// Removes `.`, `..` and doubled slashes (lexically, as Python's os.path.normpath).
    public static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func cpuCount() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

