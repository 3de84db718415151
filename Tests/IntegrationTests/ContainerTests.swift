import Foundation
import MusterAPI
import Testing

/// `[container]` through the real musterd: an OCI image built offline by
/// scripts/images/busybox-image, unpacked by musterd, its instances served by busybox httpd behind
/// the proxy, and bad images refused with the running system left as it was.
@Suite("Containers end to end", .enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/umoci"), "namespaces and mounts need root; the image is built with umoci"), .serialized)
struct ContainerIntegrationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Builds the busybox image at `folder` (an OCI image layout).
    static func buildImage(_ d: DaemonHarness, at folder: String, tag: String = "latest") throws {
        let built = d.run(repository + "/scripts/images/busybox-image", [folder, tag])
        try #require(built.code == 0, "\(built)")
    }

    static func web(port: Int, image: String = "../images/web", extra: String = "") -> String {
        """
        command = ["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"]
        instances = 2
        [restart]
        start_seconds = 0.2
        [stop]
        timeout = "10s"
        [container]
        image = "\(image)"
        \(extra)
        [proxy]
        listen = ["127.0.0.1:\(port)"]
        protocol = "http"
        [health]
        check = "http"
        path = "/index.html"
        interval = "200ms"
        rise = 1
        """
    }

    @Test func anImageServesBehindTheProxyAndStopsAtOnceAsPID1() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": Self.web(port: port)]) { d in
            try Self.buildImage(d, at: d.directory.appendingPathComponent("images/web").path)
            let check = d.run(DaemonHarness.binDir + "/musterctl", ["check", d.servicesDir.appendingPathComponent("web.toml").path])
            #expect(check.code == 0, "\(check)")
            try await d.start()
            let ready = await eventually(15) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(ready, "\(d.ctl("status").stdout)")
            let page = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/index.html"])
            #expect(page.stdout.contains("Served by busybox httpd from an OCI image."), "\(page)")

            let rows = try d.instances("web")
            let digests = Set(rows.compactMap { $0.container?.image })
            #expect(digests.count == 1)
            #expect(digests.first?.hasPrefix("sha256:") == true)
            let table = d.ctl("status").stdout
            #expect(table.contains("web: containers of image \(digests.first?.prefix(19) ?? "?")\n"), "\(table)")
            // One unpacked root, shared by both instances; one writable layer each.
            let state = d.directory.appendingPathComponent("state")
            let unpacked = try FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("images").path).filter { !$0.hasSuffix(".lock") }
            #expect(unpacked.count == 1, "\(unpacked)")
            let layers = try FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("containers/web").path)
            #expect(layers.count == 2, "\(layers)")

            // busybox httpd has no SIGTERM handler: as PID 1 it would never get the signal, so the
            // stop must not wait out its 10 s timeout, and the layers go with the processes.
            let started = Date()
            let stopped = d.ctl("stop", "web")
            #expect(stopped.code == 0, "\(stopped)")
            #expect(Date().timeIntervalSince(started) < 8)
            let removed = await eventually(5) {
                ((try? FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("containers/web").path)) ?? []).isEmpty
            }
            #expect(removed)
        }
    }

    @Test func badImagesAreNamedAndAReloadLeavesTheRunningContainersAlone() async throws {
        let port = ProxyTests.freePort()
        try await DaemonHarness.with(services: ["web": Self.web(port: port)]) { d in
            let image = d.directory.appendingPathComponent("images/web").path
            try Self.buildImage(d, at: image)
            try await d.start()
            let ready = await eventually(15) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(ready)
            let pids = try d.instances("web").map(\.pid)

            try d.write(service: "web", Self.web(port: port, extra: "tag = \"v2\""))
            let wrongTag = d.ctl("reload")
            #expect(wrongTag.code == 1)
            #expect(wrongTag.stderr.contains("web.toml: [container] tag = \"v2\": "), "\(wrongTag)")
            #expect(wrongTag.stderr.contains("latest"), "the tags that exist are listed: \(wrongTag)")

            try d.write(service: "web", Self.web(port: port, extra: "network = \"bridge\""))
            let bridge = d.ctl("reload")
            #expect(bridge.code == 1)
            #expect(bridge.stderr.contains("web.toml: [container] network = \"bridge\": must be \"host\""), "\(bridge)")

            try d.write(service: "web", Self.web(port: port, image: "../images/none"))
            let missing = d.ctl("reload")
            #expect(missing.code == 1)
            #expect(missing.stderr.contains("web.toml: [container] image = \"\(d.servicesDir.path)/../images/none\": "), "\(missing)")

            // A corrupt layer: `check` (which hashes every layer) names the blob, and so does the
            // reload, which hashes the layer as it unpacks it. A second build (fresh file times,
            // so another digest) that musterd has not unpacked yet.
            let copy = d.directory.appendingPathComponent("images/corrupt").path
            try Self.buildImage(d, at: copy)
            let index = try String(contentsOfFile: copy + "/index.json", encoding: .utf8)
            let manifestMatch = index.firstMatch(of: /sha256:([0-9a-f]{64})/)?.1
            let manifestHex = try #require(manifestMatch)
            let manifest = try String(contentsOfFile: copy + "/blobs/sha256/" + manifestHex, encoding: .utf8)
            let layerMatch = manifest.matches(of: /sha256:([0-9a-f]{64})/).last?.1
            let layerHex = try #require(layerMatch)
            let layer = copy + "/blobs/sha256/" + layerHex
            let handle = try #require(FileHandle(forUpdatingAtPath: layer))
            try handle.seek(toOffset: 100)
            try handle.write(contentsOf: Data("corrupt".utf8))
            try handle.close()
            try d.write(service: "web", Self.web(port: port, image: "../images/corrupt"))
            let manifestPath = d.servicesDir.appendingPathComponent("web.toml").path
            let checked = d.run(DaemonHarness.binDir + "/musterctl", ["check", manifestPath])
            #expect(checked.code == 1)
            #expect(checked.stderr.contains(String(layerHex)), "\(checked)")
            let reload = d.ctl("reload")
            #expect(reload.code == 1)
            #expect(reload.stderr.contains("web.toml: [container] image = "), "\(reload)")
            #expect(reload.stderr.contains(String(layerHex)), "\(reload)")

            try await Task.sleep(for: .milliseconds(300))
            #expect(try d.instances("web").map(\.pid) == pids)
            let page = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/index.html"])
            #expect(page.stdout.contains("busybox"), "\(page)")
        }
    }

    @Test func aPrivateNetworkIsReachedThroughTheSocketMusterdPassesIn() async throws {
        let port = ProxyTests.freePort()
        let manifest = """
            command = ["/bin/activated-server"]
            instances = 2
            [restart]
            start_seconds = 0.2
            [container]
            rootfs = "../root"
            network = "private"
            [proxy]
            listen = ["127.0.0.1:\(port)"]
            protocol = "http"
            [health]
            check = "http"
            path = "/"
            interval = "200ms"
            rise = 1
            """
        try await DaemonHarness.with(services: ["web": manifest]) { d in
            // A root folder of the test's own: the server (static, it needs no libc) and nothing else.
            let root = d.directory.appendingPathComponent("root").path
            try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
            let source = Self.repository + "/Tests/IntegrationTests/Fixtures/activated-server.c"
            let built = d.run("/usr/bin/gcc", ["-static", "-O2", "-o", root + "/bin/activated-server", source])
            try #require(built.code == 0, "\(built)")
            try await d.start()
            let ready = await eventually(15) { ProxyTests.readyCount(d, "web") == 2 }
            #expect(ready, "\(d.ctl("status").stdout)\n\(d.log)")
            var seen: Set<String> = []
            for _ in 0..<4 {
                let page = d.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/"])
                #expect(page.stdout.hasSuffix("; interfaces: lo \n"), "\(page)")
                seen.insert(page.stdout)
            }
            #expect(seen == ["activated in web-0; interfaces: lo \n", "activated in web-1; interfaces: lo \n"], "\(seen)")
        }
    }
}
