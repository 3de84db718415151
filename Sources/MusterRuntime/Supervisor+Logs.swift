import MusterCore

/// Where `logs --all` reads: every instance log file of every service, and the services whose
/// lines go to the journal instead.
extension Supervisor {
    public struct LogSources: Sendable, Equatable {
        public struct File: Sendable, Equatable {
            public var service: String
            public var index: Int
            public var path: String
        }
        /// By service name, then index.
        public var files: [File]
        /// Services with `[logs] target = "journal"`: nothing of theirs is in a file.
        public var journal: [String]
    }

    /// Each service's `<index>.log` files as they are on disk now (an instance scaled away keeps
    /// its file, and its lines are history worth showing), plus the files its current instances
    /// will write, which may not exist yet.
    public func logSources() -> LogSources {
        var sources = LogSources(files: [], journal: [])
        for name in services.keys.sorted() {
            guard let entry = services[name] else { continue }
            if entry.spec.logs.target == .journal {
                sources.journal.append(name)
                continue
            }
            var indexes = Set(0..<max(entry.spec.instances, 1)).union(entry.records.keys)
            for file in FileSystem.list("\(deps.logDir)/\(name)") where file.hasSuffix(".log") {
                if let index = Int(file.dropLast(4)), index >= 0 { indexes.insert(index) }
            }
            for index in indexes.sorted() {
                sources.files.append(.init(service: name, index: index, path: logPath(name, index)))
            }
        }
        return sources
    }
}
