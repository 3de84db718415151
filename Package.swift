// swift-tools-version:6.1
import PackageDescription

// Versions are pinned exactly: builds here resolve from a local mirror that holds only these.
let package = Package(
    name: "Muster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "musterd", targets: ["musterd"]),
        .executable(name: "musterctl", targets: ["musterctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", exact: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        // C: the spawn shim (clone3/fork + exec, async-signal-safe child) and pidfd helpers.
        .target(name: "CMusterShims"),
        // libsystemd through pkg-config (sd-daemon, sd-journal).
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // libseccomp through pkg-config: the daemon builds the containers' seccomp filter with it.
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        // libarchive through pkg-config: tar and gzip of OCI image layers and oci-archive files.
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        // OpenSSL's libcrypto through pkg-config: SHA-256 of image blobs (EVP_Digest*).
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // Pure: manifests, validation, durations and sizes, state machine, backoff, reload plans.
        .target(
            name: "MusterCore",
            dependencies: []
        ),
        // Control API types shared by server and client.
        .target(name: "MusterAPI"),
        // Swift face of libsystemd.
        .target(name: "MusterSystemd", dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")]),
        // What this host holds: manifests and musterd.toml read from disk (with the file-trust
        // and user checks), files written atomically, users and groups. No processes, no sockets:
        // musterctl links it for check, import and export without the daemon's runtime.
        .target(name: "MusterHost", dependencies: ["MusterCore", "MusterImage"]),
        // OCI images read by Muster itself: image layout and oci-archive resolved (index, manifest,
        // config, sha256 of every blob), layers unpacked once per digest into a shared store.
        // No NIO, no runtime: musterctl links it so that `check` validates images.
        .target(name: "MusterImage", dependencies: ["CArchive", "CLibCrypto"]),
        // Linux side: spawner, cgroups, reaper, logs, state store, the Supervisor actor.
        .target(
            name: "MusterRuntime",
            dependencies: [
                "MusterCore", "MusterHost", "MusterAPI", "CMusterShims", "CSeccomp", "MusterProxy", "MusterImage",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        // The data plane: SwiftNIO round-robin proxy (tcp glue, HTTP/1.1 with instance pools).
        .target(
            name: "MusterProxy",
            dependencies: [
                "MusterCore", "CMusterShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The control API server (Hummingbird over a Unix socket, peer-credential check).
        .target(
            name: "MusterControl",
            dependencies: [
                "MusterRuntime", "MusterAPI", "MusterCore", "MusterText", "CMusterShims",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `/metrics`: the proxies' counters and the instances' gauges, the Prometheus way.
        .target(
            name: "MusterMetrics",
            dependencies: [
                "MusterRuntime", "MusterProxy", "MusterCore", "MusterAPI",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "musterd",
            dependencies: [
                "MusterCore", "MusterRuntime", "MusterControl", "MusterSystemd", "MusterMetrics", "MusterImage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Pure: supervisord/PM2 import and Kubernetes export (parsers and writers; no daemon).
        .target(name: "MusterMigrate", dependencies: ["MusterCore"]),
        // Pure: the status table and canary progress line, rendered by musterd for `musterctl
        // status` (GET /v1/status as text/plain) and by musterctl for `deploy --watch`.
        .target(name: "MusterText", dependencies: ["MusterAPI", "MusterCore", "MusterHost"]),
        // Pure: `musterctl top`'s rows, keys and screen diff (no terminal, no socket).
        .target(name: "MusterTop", dependencies: ["MusterAPI", "MusterCore"]),
        .executableTarget(
            name: "musterctl",
            dependencies: [
                // Not MusterRuntime: the CLI talks to the daemon and reads files, nothing more.
                "MusterCore", "MusterAPI", "MusterHost", "MusterMigrate", "MusterTop", "MusterText", "CMusterShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "MusterCoreTests", dependencies: ["MusterCore"], exclude: ["Fixtures"]),
        .testTarget(name: "MusterImageTests", dependencies: ["MusterImage", "CArchive"], exclude: ["Fixtures"]),
        .testTarget(name: "MusterTopTests", dependencies: ["MusterTop", "MusterAPI"]),
        .testTarget(name: "MusterMigrateTests", dependencies: ["MusterMigrate", "MusterCore"], exclude: ["Fixtures"]),
        .testTarget(
            name: "MusterRuntimeTests",
            dependencies: ["MusterRuntime", "MusterCore", "CMusterShims"]
        ),
        .testTarget(
            name: "MusterControlTests",
            dependencies: [
                "MusterControl", "MusterRuntime", "MusterAPI", "MusterCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "MusterProxyTests",
            dependencies: [
                "MusterProxy", "MusterCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "IntegrationTests", dependencies: ["MusterAPI"], exclude: ["Fixtures"]),
    ]
)
