import MusterCore

/// A YAML document built by hand: deterministic, every string double-quoted.
public indirect enum YAMLNode: Sendable, Equatable {
    case map([(String, YAMLNode)])
    case list([YAMLNode])
    case string(String)
    case int(Int)
    case bool(Bool)

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool { YAMLWriter.render(lhs) == YAMLWriter.render(rhs) }
}

public enum YAMLWriter {
    public static func render(_ node: YAMLNode) -> String {
        var out = ""
        write(node, indent: 0, into: &out)
        return out
    }

    static func write(_ node: YAMLNode, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch node {
        case .map(let entries):
            for (key, value) in entries {
                switch value {
                case .map(let inner) where !inner.isEmpty:
                    out += "\(pad)\(key):\n"
                    write(value, indent: indent + 2, into: &out)
                case .list(let items) where !items.isEmpty:
                    out += "\(pad)\(key):\n"
                    write(value, indent: indent + 2, into: &out)
                default:
                    out += "\(pad)\(key): \(scalar(value))\n"
                }
            }
        case .list(let items):
            for item in items {
                switch item {
                case .map(let inner) where !inner.isEmpty:
                    var block = ""
                    write(item, indent: indent + 2, into: &block)
                    // The first line of the item's block takes the "- " in place of its indent.
                    out += pad + "- " + block.dropFirst(indent + 2)
                default:
                    out += "\(pad)- \(scalar(item))\n"
                }
            }
        default:
            out += pad + scalar(node) + "\n"
        }
    }

    static func scalar(_ node: YAMLNode) -> String {
        switch node {
        case .string(let text): return quoted(text)
        case .int(let value): return String(value)
        case .bool(let value): return value ? "true" : "false"
        case .map: return "{}"
        case .list: return "[]"
        }
    }

    /// A YAML double-quoted scalar: `"`, `\` and control characters escaped.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF {
                    out += "\\u" + TOMLWriter.hex4(scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// `musterctl export kubernetes`: one manifest becomes a Deployment.
public struct KubernetesExporter {
    /// The Kubernetes version the objects are written for (and tests validate against).
    public static let kubernetesVersion = "1.33.0"

    public struct Output: Sendable, Equatable {
        public var name: String
        public var yaml: String
        /// Settings with no counterpart in what was written, each with why.
        public var notCarriedOver: [String]
        public var fileName: String { name + ".yaml" }
    }

    /// The container port `{port}` and `$PORT` become.
    public var port: Int
    public init(port: Int = 8080) { self.port = port }

    public func export(_ spec: ServiceSpec, image: String?, source: String) throws(MigrationError) -> Output {
        guard let image, !image.trimmingWhitespace().isEmpty else {
            throw MigrationError("\(source): service \(spec.name) has no image: a container needs an image, and a command path on a host is not one; give it with [export] image = \"REGISTRY/IMAGE:TAG\" in the manifest or --image \(spec.name)=REGISTRY/IMAGE:TAG")
        }
        var notes: [String] = []
        var usesIndex = false
        func bind(_ text: String) -> String {
            // Kubernetes expands $(VAR) in command, args and env values; $$ keeps a literal $.
            var out = text.replacing("$(", with: "$$(")
            out = out.replacing("{port}", with: String(port)).replacing("{service}", with: spec.name)
            if out.contains("{index}") { usesIndex = true; out = out.replacing("{index}", with: "$(POD_NAME)") }
            return out
        }
        let command = spec.command.map(bind)
        var env: [YAMLNode] = []
        func variable(_ name: String, _ value: String) -> YAMLNode { .map([("name", .string(name)), ("value", .string(value))]) }
        let podName: YAMLNode = .map([("name", .string("POD_NAME")), ("valueFrom", .map([("fieldRef", .map([("fieldPath", .string("metadata.name"))]))]))])
        env.append(podName)
        env.append(variable("PORT", String(port)))
        env.append(variable("MUSTER_SERVICE", spec.name))
        env.append(.map([("name", .string("MUSTER_INSTANCE")), ("value", .string("$(POD_NAME)"))]))
        for key in spec.environment.keys.sorted() where !["PORT", "MUSTER_SERVICE", "MUSTER_INSTANCE", "POD_NAME"].contains(key) {
            env.append(variable(key, bind(spec.environment[key]!)))
        }
        for key in ["PORT", "MUSTER_SERVICE", "MUSTER_INSTANCE"] where spec.environment[key] != nil {
            notes.append("environment \(key): set by the export itself (\(key == "PORT" ? String(port) : key == "MUSTER_SERVICE" ? spec.name : "the pod's name"))")
        }
        if usesIndex {
            notes.append("{index}: a Deployment's pods have no index; it became $(POD_NAME), the pod's name (a StatefulSet would give ordinals)")
        }
        notes.append("MUSTER_INSTANCE: a Deployment's pods have no index; it is the pod's name")

        var container: [(String, YAMLNode)] = [
            ("name", .string(spec.name)),
            ("image", .string(image)),
            ("command", .list([.string(command[0])])),
        ]
        if command.count > 1 { container.append(("args", .list(command.dropFirst().map { .string($0) }))) }
        if spec.directory != "/" { container.append(("workingDir", .string(bind(spec.directory)))) }
        container.append(("ports", .list([.map([("name", .string("http")), ("containerPort", .int(port)), ("protocol", .string("TCP"))])])))
        container.append(("env", .list(env)))
        var limits: [(String, YAMLNode)] = []
        if let cpu = spec.resources.cpuMax { limits.append(("cpu", .string("\(max(1, Int((cpu * 1000).rounded())))m"))) }
        if let memory = spec.resources.memoryMax { limits.append(("memory", .string(Self.quantity(memory)))) }
        if !limits.isEmpty { container.append(("resources", .map([("limits", .map(limits))]))) }

        if let pids = spec.resources.pidsMax { notes.append("[resources] pids_max = \(pids): Kubernetes sets a pod's PID limit per node (kubelet podPidsLimit), not per pod") }
        if let user = spec.user { notes.append("user = \(user): containers run as their image's user; set spec.template.spec.securityContext.runAsUser to a numeric uid if you need another") }
        if let group = spec.group { notes.append("group = \(group): set securityContext.runAsGroup to a numeric gid if you need it") }
        if spec.inheritEnvironment { notes.append("inherit_environment = true: a container starts with its image's environment") }
        if spec.stop.signal != 15 { notes.append("[stop] signal = \(SignalName.name(spec.stop.signal)): Kubernetes stops containers with SIGTERM (or the image's STOPSIGNAL)") }
        switch spec.restart.policy {
        case .always: break
        case .onFailure, .never: notes.append("[restart] policy = \(spec.restart.policy.rawValue): a Deployment's pods always restart (a Job would run to completion)")
        }
        if spec.restart.successExitCodes != [0] { notes.append("[restart] success_exit_codes: a Deployment restarts on every exit") }
        notes.append("[restart] max_failed_starts, backoff_min and backoff_max: Kubernetes' CrashLoopBackOff (10s doubling to 5m) is fixed")
        notes.append("[logs] max_bytes and backups: container logs are rotated by the kubelet (containerLogMaxSize, containerLogMaxFiles)")
        notes.append("[proxy], [health] and [autoscale] (Service, probes, HorizontalPodAutoscaler or Knative Service): not read by this musterd yet, so not exported")

        let templateSpec: [(String, YAMLNode)] = [
            ("containers", .list([.map(container)])),
            ("terminationGracePeriodSeconds", .int(Int(spec.stop.timeout.seconds.rounded(.up)))),
        ]
        let labels: YAMLNode = .map([("app.kubernetes.io/name", .string(spec.name))])
        var deploymentSpec: [(String, YAMLNode)] = [("replicas", .int(spec.instances))]
        let readySeconds = Int(spec.restart.startSeconds.rounded(.up))
        if readySeconds > 0 { deploymentSpec.append(("minReadySeconds", .int(readySeconds))) }
        deploymentSpec.append(("selector", .map([("matchLabels", labels)])))
        deploymentSpec.append(("template", .map([("metadata", .map([("labels", labels)])), ("spec", .map(templateSpec))])))
        let deployment: YAMLNode = .map([
            ("apiVersion", .string("apps/v1")),
            ("kind", .string("Deployment")),
            ("metadata", .map([("name", .string(spec.name)), ("labels", labels), ("annotations", .map([("muster/source", .string(source))]))])),
            ("spec", .map(deploymentSpec)),
        ])
        var text = "# Exported by `musterctl export kubernetes` from \(source) for Kubernetes \(Self.kubernetesVersion).\n"
        for note in notes { text += "# Not carried over: \(note.replacing("\n", with: " "))\n" }
        text += YAMLWriter.render(deployment)
        return Output(name: spec.name, yaml: text, notCarriedOver: notes)
    }

    /// Bytes as a Kubernetes quantity: "128Mi" when exact, else a plain number of bytes.
    static func quantity(_ bytes: UInt64) -> String {
        for (suffix, size) in [("Gi", UInt64(1) << 30), ("Mi", UInt64(1) << 20), ("Ki", UInt64(1) << 10)] where bytes % size == 0 {
            return "\(bytes / size)\(suffix)"
        }
        return String(bytes)
    }
}
