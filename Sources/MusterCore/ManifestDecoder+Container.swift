extension ManifestDecoder {
    /// Whether the manifest's `[container]` names an image, whose Entrypoint and Cmd make
    /// `command` optional. Read before `command` is checked.
    static func containerHasImage(_ top: inout TableReader) -> Bool {
        guard case .table(let entries)? = top.value("container") else { return false }
        return entries.contains { $0.key == "image" }
    }

    /// `[container]` and its `[[container.mounts]]`. Relative paths are relative to the manifest's
    /// folder. What only the host can answer (does the image exist, is it for this machine, does
    /// a mount's source exist) is `ManifestLoader`'s to check.
    static func decodeContainer(_ reader: inout TableReader, spec: inout ServiceSpec, sourcePath: String) -> ContainerSpec? {
        let folder = sourcePath.isEmpty ? "" : PathText.directory(of: sourcePath)
        func resolved(_ path: String) -> String { folder.isEmpty ? path : PathText.resolve(path, from: folder) }

        let image = reader.string("image", example: "\"images/web\"")
        let tag = reader.string("tag", example: "\"latest\"")
        let rootfs = reader.string("rootfs", example: "\"/srv/web-root\"")
        // A missing or doubled source is reported, and the other keys are still read, so every
        // mistake in the table shows at once.
        var source: ContainerSpec.Source?
        switch (image, rootfs) {
        case (let image?, nil):
            if image.isEmpty { reader.fail("image", .string(image), "names no image (try image = \"images/web\", an OCI image layout folder or oci-archive file)") }
            else { source = .image(path: resolved(image), tag: tag) }
            if let tag, tag.isEmpty { reader.fail("tag", .string(tag), "is empty (try tag = \"latest\", or leave it out when the image has one manifest)") }
        case (nil, let rootfs?):
            if rootfs.isEmpty { reader.fail("rootfs", .string(rootfs), "names no folder (try rootfs = \"/srv/web-root\")") }
            else { source = .rootfs(resolved(rootfs)) }
            if let tag { reader.fail("tag", .string(tag), "applies to an image only (remove it, or use image = … instead of rootfs)") }
        case (.some, .some):
            reader.fail("rootfs", nil, "and image are two sources for one root filesystem (keep one of them)")
        case (nil, nil):
            reader.fail("image", nil, "is required in [container]: an OCI image (try image = \"images/web\"), or rootfs = \"/srv/web-root\" for an unpacked root folder")
        }
        var container = ContainerSpec(source: source ?? .rootfs("/"))

        if let hostname = reader.string("hostname", example: "\"{service}-{index}\"") {
            let sample = container.hostnameSample(hostname, service: spec.name)
            if ContainerSpec.isValidHostname(sample) { container.hostname = hostname }
            else { reader.fail("hostname", .string(hostname), "is not a hostname: 1 to 64 letters, digits, '-' and '.', with {service}, {index} and {port} expanded (try hostname = \"{service}-{index}\")") }
        }
        if let network = reader.string("network", example: "\"host\"") {
            if let value = ContainerSpec.Network(rawValue: network) { container.network = value }
            else { reader.fail("network", .string(network), "must be \"host\" (the host's network) or \"private\" (only loopback; the proxy still reaches the instance through a socket musterd passes in)") }
        }
        if let flag = reader.boolean("user_namespace") { container.userNamespace = flag }
        if let seccomp = reader.string("seccomp", example: "\"default\"") {
            if let value = ContainerSpec.Seccomp(rawValue: seccomp) { container.seccomp = value }
            else { reader.fail("seccomp", .string(seccomp), "must be \"default\" (the usual container deny list) or \"none\"") }
        }
        if let reference = reader.string("image_ref", example: "\"registry.example.com/shop/web:1.4\"") {
            if reference.isEmpty || reference.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
                reader.fail("image_ref", .string(reference), "not a container image reference (try image_ref = \"registry.example.com/shop/web:1.4\")")
            } else {
                container.imageRef = reference
            }
        }
        if let node = reader.value("mounts") {
            container.mounts = decodeMounts(node, reader: &reader, resolved: resolved)
        }
        container.overrides.command = !spec.command.isEmpty
        return source == nil ? nil : container
    }

    private static func decodeMounts(_ node: TOMLNode, reader: inout TableReader, resolved: (String) -> String) -> [ContainerMount] {
        let example = "[[container.mounts]] with source = \"data/web\", target = \"/var/lib/web\""
        guard case .array(let items) = node else {
            reader.fail("mounts", node, "expected [[container.mounts]] tables, got \(node.kindName) (try \(example))")
            return []
        }
        var mounts: [ContainerMount] = []
        for (position, item) in items.enumerated() {
            guard case .table(let entries) = item else {
                reader.fail("mounts", item, "expected a table in mounts, got \(item.kindName) (try \(example))")
                continue
            }
            var entry = TableReader(file: reader.file, table: "container.mounts #\(position + 1)", entries: entries)
            let source = entry.string("source", example: "\"data/web\"")
            let target = entry.string("target", example: "\"/var/lib/web\"")
            let readOnly = entry.boolean("readonly") ?? false
            if source == nil { entry.fail("source", nil, "is required: the host path to mount (try source = \"data/web\")") }
            if target == nil { entry.fail("target", nil, "is required: where it appears in the container (try target = \"/var/lib/web\")") }
            if let source, source.isEmpty { entry.fail("source", .string(source), "is empty (try source = \"data/web\")") }
            var cleanTarget: String?
            if let target {
                if let path = IsolatedPath(target), !path.optional, path.path != "/" { cleanTarget = path.path }
                else { entry.fail("target", .string(target), "must be an absolute path inside the container, not /, without . or .. parts (try target = \"/var/lib/web\")") }
            }
            if let target = cleanTarget, mounts.contains(where: { $0.target == target }) {
                entry.fail("target", .string(target), "is already the target of another mount (each target once)")
                cleanTarget = nil
            }
            entry.finish()
            reader.absorb(entry.issues)
            if let source, !source.isEmpty, let cleanTarget {
                mounts.append(ContainerMount(source: resolved(source), target: cleanTarget, readOnly: readOnly))
            }
        }
        return mounts
    }
}

extension ContainerSpec {
    /// A template expanded with sample values, to check what every instance's name will be like.
    func hostnameSample(_ template: String, service: String) -> String {
        Placeholders.expand(template, Placeholders.Values(port: 65535, index: 9999, service: service))
    }
}
