import CMusterShims
import Glibc

/// What the spawn shim needs to start a process as a container: the folder its overlay root is
/// mounted on, the overlay's layers, its hostname, network and bind mounts. Prepared per
/// instance start by `ContainerRoot`.
public struct ContainerLaunch: Sendable, Equatable {
    public struct Bind: Sendable, Equatable {
        /// On the host, absolute.
        public var source: String
        /// Inside the container, absolute.
        public var target: String
        public var readOnly: Bool
        public init(source: String, target: String, readOnly: Bool) {
            self.source = source
            self.target = target
            self.readOnly = readOnly
        }
    }

    /// An empty folder the overlay is mounted on, in the child's mount namespace only.
    public var root: String
    /// Read-only lower layers, uppermost first (the image's unpacked root, or `rootfs`).
    public var lowerLayers: [String]
    /// The instance's own writable layer and overlayfs's work folder, on the same filesystem.
    public var upper: String
    public var work: String
    public var hostname: String
    public var privateNetwork: Bool
    public var binds: [Bind]

    public init(root: String, lowerLayers: [String], upper: String, work: String, hostname: String,
                privateNetwork: Bool = false, binds: [Bind] = []) {
        self.root = root
        self.lowerLayers = lowerLayers
        self.upper = upper
        self.work = work
        self.hostname = hostname
        self.privateNetwork = privateNetwork
        self.binds = binds
    }

    /// overlayfs's mount options. Its option parser splits on ',' and the lower list on ':', and
    /// takes '\' as an escape: such paths are escaped so they mean themselves.
    public var overlayOptions: String {
        func escaped(_ path: String) -> String {
            var out = ""
            for character in path {
                if character == "," || character == ":" || character == "\\" { out.append("\\") }
                out.append(character)
            }
            return out
        }
        return "lowerdir=\(lowerLayers.map(escaped).joined(separator: ":")),upperdir=\(escaped(upper)),workdir=\(escaped(work))"
    }
}

/// A `ContainerLaunch` as the C request holds it: C strings and arrays, alive until `release()`.
struct ShimContainer {
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private let root: UnsafeMutablePointer<CChar>
    private let options: UnsafeMutablePointer<CChar>
    private let hostname: UnsafeMutablePointer<CChar>
    private let sources: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private let targets: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private let readOnly: UnsafeMutablePointer<Int32>
    private let launch: ContainerLaunch

    init(_ launch: ContainerLaunch) {
        self.launch = launch
        root = strdup(launch.root)!
        options = strdup(launch.overlayOptions)!
        hostname = strdup(launch.hostname)!
        let count = launch.binds.count
        sources = .allocate(capacity: count + 1)
        targets = .allocate(capacity: count + 1)
        readOnly = .allocate(capacity: max(1, count))
        var strings: [UnsafeMutablePointer<CChar>] = []
        for (i, bind) in launch.binds.enumerated() {
            let source = strdup(bind.source)!, target = strdup(bind.target)!
            strings += [source, target]
            sources[i] = UnsafePointer(source)
            targets[i] = UnsafePointer(target)
            readOnly[i] = bind.readOnly ? 1 : 0
        }
        sources[count] = nil
        targets[count] = nil
        self.strings = strings
    }

    func fill(_ q: inout muster_spawn_request) {
        q.container_root = UnsafePointer(root)
        q.overlay_options = UnsafePointer(options)
        q.hostname = UnsafePointer(hostname)
        q.private_network = launch.privateNetwork ? 1 : 0
        q.bind_sources = UnsafePointer(sources)
        q.bind_targets = UnsafePointer(targets)
        q.bind_read_only = UnsafePointer(readOnly)
        q.bind_count = launch.binds.count
    }

    mutating func release() {
        for string in strings { free(string) }
        strings = []
        free(root)
        free(options)
        free(hostname)
        sources.deallocate()
        targets.deallocate()
        readOnly.deallocate()
    }
}
