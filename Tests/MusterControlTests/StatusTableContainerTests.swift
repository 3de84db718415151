import MusterAPI
import MusterText
import Testing

/// The status table's line for container services: which image each runs.
@Suite("Status table: containers")
struct StatusTableContainerTests {
    static func row(_ id: String, _ container: ContainerInstanceStatus?) -> InstanceStatus {
        var row = InstanceStatus(id: id, index: 0, state: "running", pid: 1, port: 20000, restarts: 0, uptimeSeconds: 1,
                                 cgroup: nil, reason: nil, cpuSeconds: nil, cpuPercent: nil, memoryBytes: nil, user: "root")
        row.container = container
        return row
    }

    @Test func eachServiceNamesItsImageAndARolloutNamesBoth() {
        let old = "sha256:a0c5b208c20f63049cfa5346a4e63ceb6b237eb4a2bc6dfc177683d0ae3d5a2f"
        let new = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        let status = StatusResponse(services: [
            ServiceStatus(name: "static", desired: 2, started: true, instances: [
                Self.row("static:0", ContainerInstanceStatus(image: old, rootfs: nil)),
                Self.row("static:1", ContainerInstanceStatus(image: old, rootfs: nil)),
            ], source: "/x/static.toml"),
            ServiceStatus(name: "shop", desired: 2, started: true, instances: [
                Self.row("shop:0", ContainerInstanceStatus(image: new, rootfs: nil)),
                Self.row("shop:1", ContainerInstanceStatus(image: old, rootfs: nil)),
            ], source: "/x/shop.toml"),
            ServiceStatus(name: "box", desired: 1, started: true, instances: [Self.row("box:0", ContainerInstanceStatus(image: nil, rootfs: "/srv/root"))], source: "/x/box.toml"),
            ServiceStatus(name: "plain", desired: 1, started: true, instances: [Self.row("plain:0", nil)], source: "/x/plain.toml"),
        ])
        let table = StatusTable.render(status, now: 10)
        #expect(table.contains("\nstatic: containers of image sha256:a0c5b208c20f\n"), "\(table)")
        #expect(table.contains("\nshop: containers of image sha256:0123456789ab (shop:0); image sha256:a0c5b208c20f (shop:1)\n"), "\(table)")
        #expect(table.contains("\nbox: containers of root folder /srv/root"), "\(table)")
        #expect(!table.contains("plain: containers"), "\(table)")
    }
}
