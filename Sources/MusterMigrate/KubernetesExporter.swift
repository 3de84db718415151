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

/// `musterctl export kubernetes`: one manifest becomes a Deployment, with a Service for `[proxy]`
/// and a HorizontalPodAutoscaler for a cpu or memory `[autoscale]`; or, when the autoscaler scales
/// on requests (concurrency, rps) or to zero, a Knative Service in their place, which makes its own
/// Deployment, Kubernetes Service and autoscaler. The objects of one service are one multi-document
/// YAML file.
public struct KubernetesExporter {
    /// The Kubernetes version the objects are written for (and tests validate against).
    public static let kubernetesVersion = "1.33.0"

    /// Ports Knative's queue-proxy (and its metrics and profiling) take in every pod of a revision;
    /// a user container may not listen on them (knative.dev/serving, k8s_validation.go).
    public static let knativeReservedPorts: Set<Int> = [8008, 8012, 8013, 8022, 9090, 9091]

    /// The HorizontalPodAutoscaler policies' period: the controller's default sync period
    /// (kube-controller-manager --horizontal-pod-autoscaler-sync-period), so one period is one
    /// decision, as Muster's max_scale_up and max_scale_down count per decision.
    public static let hpaPeriodSeconds = 15

    /// How long a startupProbe gives a container to pass its check for the first time.
    public static let startupBudgetSeconds = 300

    public struct Output: Sendable, Equatable {
        public var name: String
        /// One or more YAML documents, `---` between them, after a header comment.
        public var yaml: String
        /// The objects written, in order: "Deployment", "Service", "HorizontalPodAutoscaler", or
        /// "Knative Service".
        public var kinds: [String]
        /// Settings with no counterpart in what was written, each with why.
        public var notCarriedOver: [String]
        /// Settings carried over differently (rounded, bounded, approximated) or that need something
        /// of the cluster, each with how.
        public var notes: [String]
        public var fileName: String { name + ".yaml" }
    }

    /// The container port `{port}` and `$PORT` become.
    public var port: Int
    public init(port: Int = 8080) { self.port = port }

    /// What scales the service once exported.
    enum Autoscaler {
        /// `autoscaling/v2` on a resource metric: "cpu" or "memory" and the per-pod averageValue.
        case horizontal(AutoscaleSpec, resource: String, averageValue: String)
        /// Knative's KPA: the only one that scales on requests, and to zero.
        case knative(AutoscaleSpec)
    }

    public func export(_ spec: ServiceSpec, image: String?, source: String) throws(MigrationError) -> Output {
        guard let image, !image.trimmingWhitespace().isEmpty else {
            if let container = spec.container {
                let local: String
                switch container.source {
                case .image(let path, _): local = "the OCI image \(path) is on this host, not in a registry: push it (skopeo copy oci:\(path) docker://REGISTRY/IMAGE:TAG)"
                case .rootfs(let folder): local = "its root folder \(folder) is not an image: build one from it (umoci, buildah) and push it"
                }
                throw MigrationError("\(source): service \(spec.name) runs a [container] without image_ref: \(local), then set [container] image_ref = \"REGISTRY/IMAGE:TAG\" in the manifest or give --image \(spec.name)=REGISTRY/IMAGE:TAG")
            }
            throw MigrationError("\(source): service \(spec.name) has no image: a container needs an image, and a command path on a host is not one; give it with [export] image = \"REGISTRY/IMAGE:TAG\" in the manifest or --image \(spec.name)=REGISTRY/IMAGE:TAG")
        }
        var dropped: [String] = []
        var notes: [String] = []

        let autoscaler = Self.autoscaler(for: spec, dropped: &dropped)
        let isKnative: Bool
        if case .knative = autoscaler { isKnative = true } else { isKnative = false }
        if spec.proxy != nil || isKnative, let first = spec.name.first, !first.isLetter {
            throw MigrationError("\(source): service \(spec.name): a Kubernetes Service's name must start with a letter (a DNS-1035 label); rename the service to export it")
        }
        if isKnative && Self.knativeReservedPorts.contains(port) {
            throw MigrationError("\(source): service \(spec.name) becomes a Knative Service, and Knative's queue-proxy takes port \(port) in every pod (it takes 8008, 8012, 8013, 8022, 9090 and 9091); give another with --port")
        }
        let pods = isKnative ? "a Knative revision's pods" : "a Deployment's pods"

        // {index} needs the pod's name from the downward API; Knative accepts that (fieldRef) only
        // with its kubernetes.podspec-fieldref feature, so a Knative Service asks for it only when used.
        let usesIndex = (spec.command + [spec.directory] + Array(spec.environment.values)).contains { $0.contains("{index}") }
        let setsPodName = !isKnative || usesIndex
        func bind(_ text: String) -> String {
            // Kubernetes expands $(VAR) in command, args and env values; $$ keeps a literal $.
            var out = text.replacing("$(", with: "$$(")
            out = out.replacing("{port}", with: String(port)).replacing("{service}", with: spec.name)
            return out.replacing("{index}", with: "$(POD_NAME)")
        }
        let command = spec.command.map(bind)
        var env: [YAMLNode] = []
        func variable(_ name: String, _ value: String) -> YAMLNode { .map([("name", .string(name)), ("value", .string(value))]) }
        let podName: YAMLNode = .map([("name", .string("POD_NAME")), ("valueFrom", .map([("fieldRef", .map([("fieldPath", .string("metadata.name"))]))]))])
        if setsPodName { env.append(podName) }
        // Knative sets PORT itself, to the containerPort, and refuses it in env.
        if !isKnative { env.append(variable("PORT", String(port))) }
        env.append(variable("MUSTER_SERVICE", spec.name))
        if setsPodName { env.append(variable("MUSTER_INSTANCE", "$(POD_NAME)")) }
        var reserved: [(key: String, why: String)] = [
            ("PORT", isKnative ? "set by Knative itself, to the containerPort (\(port))" : "set by the export itself (\(port))"),
            ("MUSTER_SERVICE", "set by the export itself (\(spec.name))"),
        ]
        if setsPodName {
            reserved.append(("MUSTER_INSTANCE", "set by the export itself (the pod's name)"))
            reserved.append(("POD_NAME", "set by the export itself (the pod's name)"))
        }
        if isKnative {
            for key in ["K_SERVICE", "K_CONFIGURATION", "K_REVISION"] { reserved.append((key, "set by Knative itself")) }
        }
        let reservedKeys = Set(reserved.map(\.key))
        for key in spec.environment.keys.sorted() where !reservedKeys.contains(key) {
            env.append(variable(key, bind(spec.environment[key]!)))
        }
        for item in reserved where spec.environment[item.key] != nil {
            dropped.append("environment \(item.key): \(item.why)")
        }
        if usesIndex {
            dropped.append("{index}: \(pods) have no index; it became $(POD_NAME), the pod's name (a StatefulSet would give ordinals)")
            if isKnative {
                notes.append("{index}: $(POD_NAME) comes from the downward API (fieldRef), which Knative accepts only with kubernetes.podspec-fieldref: \"enabled\" in its config-features ConfigMap")
            }
        }
        if setsPodName {
            dropped.append("MUSTER_INSTANCE: \(pods) have no index; it is the pod's name")
        } else {
            dropped.append("MUSTER_INSTANCE: \(pods) have no index, and the pod's name needs Knative's kubernetes.podspec-fieldref feature; not set (Knative sets K_REVISION)")
        }

        var container: [(String, YAMLNode)] = []
        // A Knative revision's single container needs no name (older Knative versions refuse one).
        if !isKnative { container.append(("name", .string(spec.name))) }
        container.append(("image", .string(image)))
        if spec.container.map({ !$0.overrides.command }) ?? false {
            // The image's Entrypoint and Cmd run, as they do under Muster.
        } else if let program = command.first {
            container.append(("command", .list([.string(program)])))
            if command.count > 1 { container.append(("args", .list(command.dropFirst().map { .string($0) }))) }
        }
        if spec.directory != "/" { container.append(("workingDir", .string(bind(spec.directory)))) }
        // Knative names the serving port http1 (HTTP/1) or h2c; any other name is refused.
        let portName = isKnative ? "http1" : spec.proxy?.mode == .tcp ? "tcp" : "http"
        container.append(("ports", .list([.map([("name", .string(portName)), ("containerPort", .int(port)), ("protocol", .string("TCP"))])])))
        container.append(("env", .list(env)))
        var limits: [(String, YAMLNode)] = []
        if let cpu = spec.resources.cpuMax { limits.append(("cpu", .string(Self.millicores(cpu)))) }
        if let memory = spec.resources.memoryMax { limits.append(("memory", .string(Self.quantity(memory)))) }
        if !limits.isEmpty { container.append(("resources", .map([("limits", .map(limits))]))) }
        container += probes(spec.health, knative: isKnative, dropped: &dropped, notes: &notes)

        // Behind Muster's proxy an instance may listen on loopback; in a pod, connections come to
        // the pod's IP. Only where the address is likely the listening one: the command, and
        // variables named like a bind address (not DATABASE_URL=…localhost…).
        let listening = command + spec.environment.keys.sorted().filter { key in
            ["HOST", "BIND", "LISTEN", "ADDR"].contains { key.uppercased().contains($0) }
        }.map { bind(spec.environment[$0]!) }
        let probedOnPodIP = spec.health.check == .tcp || spec.health.check == .http
        if !isKnative, spec.proxy != nil || probedOnPodIP, Self.namesLoopback(listening) {
            notes.append("the command or a bind-address variable names a loopback address (127.0.0.1, localhost or ::1): in a pod, the Service's connections and the kubelet's probes arrive on the pod's IP, so the program must listen on 0.0.0.0 there")
        } else if isKnative, spec.health.restartUnhealthy, probedOnPodIP, Self.namesLoopback(listening) {
            notes.append("the command or a bind-address variable names a loopback address (127.0.0.1, localhost or ::1): Knative's queue-proxy reaches the container there, but the kubelet's livenessProbe arrives on the pod's IP, so the program must listen on 0.0.0.0")
        }

        // [proxy] drain_timeout: a preStop sleep keeps the pod serving while it leaves the
        // Service's endpoints, which Kubernetes does at the same time as it starts the stop.
        // Knative's queue-proxy drains by itself and refuses lifecycle hooks.
        var drainSeconds = 0
        if let proxy = spec.proxy, !isKnative, proxy.drainTimeout > .zero {
            drainSeconds = Int(proxy.drainTimeout.seconds.rounded(.up))
            container.append(("lifecycle", .map([("preStop", .map([("sleep", .map([("seconds", .int(drainSeconds))]))]))])))
            notes.append("[proxy] drain_timeout = \(DurationText.format(proxy.drainTimeout)): a preStop sleep of \(drainSeconds)s keeps the pod serving while it leaves the Service's endpoints; Kubernetes does not see in-flight requests, so every stop waits the whole \(drainSeconds)s (Muster stops as soon as the last one ends), and terminationGracePeriodSeconds is drain_timeout + [stop] timeout")
        }
        isolation(spec.isolation, knative: isKnative, into: &container, dropped: &dropped, notes: &notes)

        if let pids = spec.resources.pidsMax { dropped.append("[resources] pids_max = \(pids): Kubernetes sets a pod's PID limit per node (kubelet podPidsLimit), not per pod") }
        if let box = spec.container {
            if !box.mounts.isEmpty { dropped.append("[[container.mounts]] (\(box.mounts.map(\.target).joined(separator: ", "))): host folders become volumes (hostPath, or better a PersistentVolumeClaim) with volumeMounts; add them by hand") }
            if box.network == .private { notes.append("[container] network = \"private\": a pod has a network of its own anyway; the program must bind the containerPort itself, as Kubernetes passes no socket (LISTEN_FDS)") }
            if box.hostname != ContainerSpec.defaultHostname { dropped.append("[container] hostname = \"\(box.hostname)\": a pod's hostname is its name (spec.hostname sets one name for every replica)") }
            if let user = spec.user, box.overrides.user { dropped.append("user = \(user): an account of the image; set securityContext.runAsUser to its numeric uid") }
            if box.seccomp == .none { notes.append("[container] seccomp = \"none\": the pod gets its runtime's default profile unless securityContext.seccompProfile says Unconfined") }
        }
        if let user = spec.user, spec.container == nil { dropped.append("user = \(user): containers run as their image's user; set spec.template.spec.securityContext.runAsUser to a numeric uid if you need another") }
        if let group = spec.group { dropped.append("group = \(group): set securityContext.runAsGroup to a numeric gid if you need it") }
        if spec.inheritEnvironment { dropped.append("inherit_environment = true: a container starts with its image's environment") }
        if spec.stop.signal != 15 { dropped.append("[stop] signal = \(SignalName.name(spec.stop.signal)): Kubernetes stops containers with SIGTERM (or the image's STOPSIGNAL)") }
        switch spec.restart.policy {
        case .always: break
        case .onFailure, .never: dropped.append("[restart] policy = \(spec.restart.policy.rawValue): \(pods) always restart (a Job would run to completion)")
        }
        if spec.restart.successExitCodes != [0] { dropped.append("[restart] success_exit_codes: \(pods) restart on every exit") }
        dropped.append("[restart] max_failed_starts, backoff_min and backoff_max: Kubernetes' CrashLoopBackOff (10s doubling to 5m) is fixed")
        dropped.append("[logs] max_bytes and backups: container logs are rotated by the kubelet (containerLogMaxSize, containerLogMaxFiles)")
        if spec.logs.target == .journal { dropped.append("[logs] target = journal: a container's output goes to the kubelet's log files (kubectl logs), not to journald") }

        let labels: YAMLNode = .map([("app.kubernetes.io/name", .string(spec.name))])
        let metadata: YAMLNode = .map([("name", .string(spec.name)), ("labels", labels), ("annotations", .map([("muster/source", .string(source))]))])
        func object(_ apiVersion: String, _ kind: String, _ body: [(String, YAMLNode)]) -> YAMLNode {
            .map([("apiVersion", .string(apiVersion)), ("kind", .string(kind)), ("metadata", metadata), ("spec", .map(body))])
        }
        let readySeconds = Int(spec.restart.startSeconds.rounded(.up))
        let stopSeconds = Int(spec.stop.timeout.seconds.rounded(.up))
        var objects: [YAMLNode] = []
        var kinds: [String] = []

        if case .knative(let scale) = autoscaler {
            if let proxy = spec.proxy { knativeProxyNotes(proxy, dropped: &dropped, notes: &notes) }
            if readySeconds > 0 { dropped.append("[restart] start_seconds = \(Self.number(spec.restart.startSeconds)): a Knative revision has no minReadySeconds; its pods serve once ready") }
            dropped.append("[stop] timeout = \(DurationText.format(spec.stop.timeout)): Knative sets a pod's terminationGracePeriodSeconds from the revision's timeoutSeconds (the request timeout, 300s by default)")
            let annotations = knativeAnnotations(scale, instances: spec.instances, dropped: &dropped, notes: &notes)
            let template: YAMLNode = .map([
                ("metadata", .map([("labels", labels), ("annotations", .map(annotations))])),
                ("spec", .map([("containers", .list([.map(container)]))])),
            ])
            objects.append(object("serving.knative.dev/v1", "Service", [("template", template)]))
            kinds.append("Knative Service")
            notes.insert("[autoscale] metric = \(scale.metric.rawValue)\(scale.min == 0 ? ", min = 0" : ""): a Knative Service (serving.knative.dev/v1; Knative Serving must be installed) in place of a Deployment, a Service and an autoscaler, which Knative makes itself; it serves the service at its own URL", at: 0)
        } else {
            var podSpec: [(String, YAMLNode)] = [("containers", .list([.map(container)]))]
            podSpec.append(("terminationGracePeriodSeconds", .int(stopSeconds + drainSeconds)))
            var deploymentSpec: [(String, YAMLNode)] = []
            if case .horizontal(let scale, _, _) = autoscaler {
                // kubectl apply would set replicas back on every apply, undoing the autoscaler.
                notes.append("instances = \(spec.instances): the starting count; the Deployment leaves replicas out so that kubectl apply does not reset the count the HorizontalPodAutoscaler chose, which starts at minReplicas = \(max(1, scale.min))")
            } else {
                deploymentSpec.append(("replicas", .int(spec.instances)))
            }
            if readySeconds > 0 { deploymentSpec.append(("minReadySeconds", .int(readySeconds))) }
            deploymentSpec.append(("selector", .map([("matchLabels", labels)])))
            deploymentSpec.append(("template", .map([("metadata", .map([("labels", labels)])), ("spec", .map(podSpec))])))
            objects.append(object("apps/v1", "Deployment", deploymentSpec))
            kinds.append("Deployment")
            if let proxy = spec.proxy {
                objects.append(object("v1", "Service", service(proxy, labels: labels, portName: portName, dropped: &dropped, notes: &notes)))
                kinds.append("Service")
            }
            if case .horizontal(let scale, let resource, let averageValue) = autoscaler {
                objects.append(object("autoscaling/v2", "HorizontalPodAutoscaler",
                                      horizontalPodAutoscaler(spec.name, scale, resource: resource, averageValue: averageValue, dropped: &dropped, notes: &notes)))
                kinds.append("HorizontalPodAutoscaler")
            }
        }

        var text = "# Exported by `musterctl export kubernetes` from \(source) for Kubernetes \(Self.kubernetesVersion)\(isKnative ? " and Knative Serving" : "").\n"
        for note in dropped { text += "# Not carried over: \(note.replacing("\n", with: " "))\n" }
        for note in notes { text += "# Note: \(note.replacing("\n", with: " "))\n" }
        text += objects.map(YAMLWriter.render).joined(separator: "---\n")
        return Output(name: spec.name, yaml: text, kinds: kinds, notCarriedOver: dropped, notes: notes)
    }

    /// Which autoscaler the service's `[autoscale]` becomes: a HorizontalPodAutoscaler for cpu or
    /// memory; Knative for what only its KPA does (scaling on requests, scaling to zero), which
    /// serves HTTP only; nothing when that leaves no engine (a tcp proxy scaled on requests).
    static func autoscaler(for spec: ServiceSpec, dropped: inout [String]) -> Autoscaler? {
        guard var scale = spec.autoscale else { return nil }
        if scale.min == 0 || scale.metric.comesFromProxy {
            // The decoder requires a [proxy] for both.
            if spec.proxy?.mode != .tcp { return .knative(scale) }
            if scale.metric.comesFromProxy {
                dropped.append("[autoscale] metric = \(scale.metric.rawValue): only Knative scales on \(scale.metric == .rps ? "requests per second" : "requests in flight"), and it serves HTTP only while this proxy is tcp; no autoscaler was written (a HorizontalPodAutoscaler would need a custom metrics adapter), so the count stays at instances = \(spec.instances)")
                return nil
            }
            dropped.append("[autoscale] min = 0: only Knative scales to zero, and it serves HTTP only while this proxy is tcp; minReplicas is 1 (a HorizontalPodAutoscaler goes to zero only with the alpha HPAScaleToZero feature gate)")
            scale.min = 1
        }
        switch scale.metric {
        case .cpu:
            // A manifest's cpu target is cores per instance, which is exactly what an
            // AverageValue target of the cpu resource is ("600m" = 0.6 cores per pod on average).
            // Utilization would be a share of the pod's cpu *request* instead: the Deployment
            // sets no request of its own (cpu_max becomes a limit, which Kubernetes copies into
            // the request), so a percentage would silently change meaning with cpu_max and fail
            // without it.
            return .horizontal(scale, resource: "cpu", averageValue: millicores(scale.target))
        case .memory:
            // Bytes per instance: an AverageValue quantity ("200Mi"), as exact as the manifest's.
            return .horizontal(scale, resource: "memory", averageValue: quantity(UInt64(scale.target.rounded())))
        case .concurrency, .rps:
            return nil  // handled above
        }
    }

    /// `[health]` → readinessProbe, and with restart_unhealthy a livenessProbe (plus, in a
    /// Deployment, a startupProbe that holds it off until the first success, as Muster never
    /// restarts an instance that has not been ready yet).
    func probes(_ health: HealthSpec, knative: Bool, dropped: inout [String], notes: inout [String]) -> [(String, YAMLNode)] {
        let handler: (String, YAMLNode)
        switch health.check {
        case .none:
            return []
        case .notify:
            dropped.append("[health] check = notify: a pod has no sd_notify socket (NOTIFY_SOCKET); no readinessProbe was written, so a pod is ready once its container runs (check = \"tcp\" or \"http\" would give one)")
            return []
        case .tcp:
            handler = ("tcpSocket", .map([("port", .int(port))]))
        case .http:
            handler = ("httpGet", .map([("path", .string(health.path)), ("port", .int(port))]))
        case .exec:
            handler = ("exec", .map([("command", .list(health.command.map { .string($0) }))]))
            notes.append("[health] check = exec: the command runs inside the container, so the image must hold \(health.command[0]) (Muster ran it on the host as the service's user)")
        }
        let period = max(1, Int(health.interval.seconds.rounded(.up)))
        let timeout = max(1, Int(health.timeout.seconds.rounded(.up)))
        for (key, value, field, seconds) in [("interval", health.interval, "periodSeconds", period), ("timeout", health.timeout, "timeoutSeconds", timeout)]
            where value.seconds != Double(seconds) {
            notes.append("[health] \(key) = \(DurationText.format(value)): probes count whole seconds; \(field) = \(seconds)")
        }
        var out: [(String, YAMLNode)] = [("readinessProbe", .map([
            handler, ("periodSeconds", .int(period)), ("timeoutSeconds", .int(timeout)),
            ("successThreshold", .int(health.rise)), ("failureThreshold", .int(health.fall)),
        ]))]
        guard health.restartUnhealthy else { return out }
        out.append(("livenessProbe", .map([handler, ("periodSeconds", .int(period)), ("timeoutSeconds", .int(timeout)), ("failureThreshold", .int(health.fall))])))
        if knative {
            notes.append("[health] restart_unhealthy: Muster never restarts an instance that has not been ready yet, but the livenessProbe counts from the start (no startupProbe is written for Knative, which older versions refuse); give a slow starter initialDelaySeconds")
        } else {
            let attempts = (Self.startupBudgetSeconds + period - 1) / period
            out.append(("startupProbe", .map([handler, ("periodSeconds", .int(period)), ("timeoutSeconds", .int(timeout)), ("failureThreshold", .int(attempts))])))
            notes.append("[health] restart_unhealthy: Muster never restarts an instance that has not been ready yet; a startupProbe (the same check) holds the livenessProbe off until it first passes, for up to \(DurationText.format(.seconds(attempts * period))), after which the kubelet restarts the container")
        }
        return out
    }

    /// `[isolation]`: no_new_privileges is a container's allowPrivilegeEscalation: false (both set
    /// the no_new_privs bit); the rest has no per-container counterpart.
    func isolation(_ isolation: IsolationSpec, knative: Bool, into container: inout [(String, YAMLNode)], dropped: inout [String], notes: inout [String]) {
        if isolation.noNewPrivileges {
            if knative {
                dropped.append("[isolation] no_new_privileges: older Knative versions refuse securityContext.allowPrivilegeEscalation, so it is not written; add allowPrivilegeEscalation: false where yours accepts it")
            } else {
                container.append(("securityContext", .map([("allowPrivilegeEscalation", .bool(false))])))
            }
        }
        if let capabilities = isolation.capabilities {
            let names = capabilities.numbers.map { Capabilities.name($0).replacing("CAP_", with: "") }
            dropped.append("[isolation] capabilities = \(capabilities): the container's capabilities come from its runtime; set securityContext.capabilities (drop: [\"ALL\"], add: [\(names.map { "\"\($0)\"" }.joined(separator: ", "))]) by hand\(knative ? " (Knative accepts add only with its kubernetes.containerspec-addcapabilities feature)" : "")")
        }
        if isolation.privateTmp { notes.append("[isolation] private_tmp: a container's /tmp is its own already (mount an emptyDir there for a fresh one on each start)") }
        if !isolation.readOnlyPaths.isEmpty || !isolation.writablePaths.isEmpty || !isolation.inaccessiblePaths.isEmpty {
            dropped.append("[isolation] read_only_paths, writable_paths and inaccessible_paths: a container sees its image's filesystem, not the host's; securityContext.readOnlyRootFilesystem and volumes are the tools there")
        }
        let limits = isolation.limits.entries.map(\.kind.rawValue)
        if !limits.isEmpty {
            dropped.append("[isolation] \(limits.joined(separator: ", ")): Kubernetes sets no per-container rlimits; they come from the container runtime's defaults")
        }
    }

    /// `[proxy]` → a `v1` Service in front of the Deployment's pods.
    func service(_ proxy: ProxySpec, labels: YAMLNode, portName: String, dropped: inout [String], notes: inout [String]) -> [(String, YAMLNode)] {
        let first = proxy.listen[0]
        let listen = proxy.listen.map { "\"\($0)\"" }.joined(separator: ", ")
        if proxy.listen.count > 1 {
            dropped.append("[proxy] listen = [\(listen)]: a Service has one cluster IP and no per-address listeners; it takes the first address's port (\(first.port)), and the other addresses are left out (add ports to the Service, or spec.ipFamilyPolicy: PreferDualStack for IPv6, by hand)")
        }
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(first.host) || first.host.hasPrefix("127.")
        notes.append("[proxy] listen = \"\(first)\": port \(first.port) of a ClusterIP Service, \(loopback ? "which every pod in the cluster can reach, not only this host's programs (a NetworkPolicy narrows it)" : "reachable inside the cluster only (type: LoadBalancer, a NodePort or an Ingress reach it from outside)")")
        // Both modes are TCP to a Service: kube-proxy forwards connections, whatever they carry.
        if proxy.mode == .http {
            dropped.append("[proxy] protocol = http: a Service forwards connections, not requests; per-request balancing, keep-alive pooling, X-Forwarded-For and Forwarded, and the proxy's own 400/502/503 answers need an Ingress controller or a service mesh")
        }
        dropped.append("[proxy] max_connections, connect_timeout, idle_timeout, retries and queue_timeout: a Service has no connection limit, timeouts, retries or queue (an Ingress controller or service mesh has its own)")
        if proxy.drainTimeout == .zero {
            notes.append("[proxy] drain_timeout = 0s: no preStop sleep, so a stopping pod may still get a few connections while it leaves the Service's endpoints")
        }
        return [
            ("selector", labels),
            ("ports", .list([.map([("name", .string(portName)), ("port", .int(first.port)), ("targetPort", .int(port)), ("protocol", .string("TCP"))])])),
        ]
    }

    /// What of `[proxy]` a Knative Service keeps: Knative routes requests itself.
    func knativeProxyNotes(_ proxy: ProxySpec, dropped: inout [String], notes: inout [String]) {
        let listen = proxy.listen.map { "\"\($0)\"" }.joined(separator: ", ")
        dropped.append("[proxy] listen = [\(listen)]: Knative serves the service at its own URL through the cluster's ingress (ports 80 and 443), not on a port of its own")
        dropped.append("[proxy] max_connections, connect_timeout, idle_timeout and retries: Knative's ingress and activator have their own, set per cluster (containerConcurrency would cap requests per pod, which Muster does not)")
        dropped.append("[proxy] queue_timeout = \(DurationText.format(proxy.queueTimeout)): Knative's activator holds requests while a revision has no ready pod, bounded by the revision's request timeout (timeoutSeconds, 300s by default), not by a queue time of its own")
        notes.append("[proxy] drain_timeout: Knative's queue-proxy drains in-flight requests itself before the container is stopped")
    }

    /// `[autoscale]` → `autoscaling/v2` HorizontalPodAutoscaler on the Deployment.
    func horizontalPodAutoscaler(_ name: String, _ scale: AutoscaleSpec, resource: String, averageValue: String,
                                 dropped: inout [String], notes: inout [String]) -> [(String, YAMLNode)] {
        let period = Self.hpaPeriodSeconds
        func policy(_ type: String, _ value: Int) -> YAMLNode {
            .map([("type", .string(type)), ("value", .int(value)), ("periodSeconds", .int(period))])
        }
        notes.append("[autoscale] metric = \(resource), target = \(resource == "cpu" ? Self.number(scale.target) + " cores" : ByteSize.format(UInt64(scale.target.rounded()))): averageValue \(averageValue) per pod, read from the metrics API (metrics-server must run in the cluster)")
        // Muster scales up at once (0); scale-down goes no lower than the highest recommendation
        // of scale_down_delay, which is what the HPA's stabilization window does (at most 1h).
        var scaleUp: [(String, YAMLNode)] = [("stabilizationWindowSeconds", .int(0))]
        if scale.maxScaleUp > 0 {
            scaleUp.append(("policies", .list([policy("Pods", scale.maxScaleUp)])))
            notes.append("[autoscale] max_scale_up = \(scale.maxScaleUp): at most \(scale.maxScaleUp) pods added per \(period)s, the HorizontalPodAutoscaler's decision period (Muster decides every metrics_interval, 1s by default)")
        } else {
            notes.append("[autoscale] max_scale_up = 0 (no limit): the HorizontalPodAutoscaler's default limit stays, double or 4 more pods per 15s, whichever is more")
        }
        let delay = Int(scale.scaleDownDelay.seconds.rounded(.up))
        if delay > 3600 { notes.append("[autoscale] scale_down_delay = \(DurationText.format(scale.scaleDownDelay)): stabilizationWindowSeconds is at most 3600") }
        var scaleDown: [(String, YAMLNode)] = [("stabilizationWindowSeconds", .int(min(delay, 3600)))]
        if scale.maxScaleDown > 0 {
            scaleDown.append(("policies", .list([policy("Pods", scale.maxScaleDown)])))
            notes.append("[autoscale] max_scale_down = \(scale.maxScaleDown): at most \(scale.maxScaleDown) pods removed per \(period)s, the HorizontalPodAutoscaler's decision period")
        } else {
            scaleDown.append(("policies", .list([policy("Percent", 100)])))
        }
        dropped.append("[autoscale] tolerance = \(Self.number(scale.tolerance)): a HorizontalPodAutoscaler's tolerance is kube-controller-manager's --horizontal-pod-autoscaler-tolerance (0.1 unless changed), cluster-wide; behavior.scaleUp/scaleDown.tolerance is alpha in Kubernetes 1.33 (feature gate HPAConfigurableTolerance), so it is not written")
        dropped.append("[autoscale] window = \(DurationText.format(scale.window)), panic_window = \(DurationText.format(scale.panicWindow)) and panic_threshold = \(Self.number(scale.panicThreshold)): a HorizontalPodAutoscaler has no averaging window and no panic mode; it follows the metrics API's latest usage every \(period)s and scales up at once")
        return [
            ("scaleTargetRef", .map([("apiVersion", .string("apps/v1")), ("kind", .string("Deployment")), ("name", .string(name))])),
            ("minReplicas", .int(max(1, scale.min))),
            ("maxReplicas", .int(scale.max)),
            ("metrics", .list([.map([
                ("type", .string("Resource")),
                ("resource", .map([("name", .string(resource)), ("target", .map([("type", .string("AverageValue")), ("averageValue", .string(averageValue))]))])),
            ])])),
            ("behavior", .map([("scaleUp", .map(scaleUp)), ("scaleDown", .map(scaleDown))])),
        ]
    }

    /// Knative's per-revision autoscaling annotations, on spec.template.metadata. Names and
    /// bounds as https://knative.dev/docs/serving/autoscaling/ documents them (kpa-specific,
    /// scale-bounds, scale-to-zero, autoscaling-metrics, autoscaling-targets).
    func knativeAnnotations(_ scale: AutoscaleSpec, instances: Int, dropped: inout [String], notes: inout [String]) -> [(String, YAMLNode)] {
        let key = "autoscaling.knative.dev/"
        var out: [(String, YAMLNode)] = [(key + "class", .string("kpa.autoscaling.knative.dev"))]
        if scale.metric.comesFromProxy {
            out.append((key + "metric", .string(scale.metric.rawValue)))
            out.append((key + "target", .string(Self.number(scale.target))))
            if scale.target != scale.target.rounded() {
                notes.append("[autoscale] target = \(Self.number(scale.target)): Knative documents the target as an integer; its parser takes decimals (from 0.01)")
            }
        } else {
            // The KPA, the only class that scales to zero, scales on concurrency or rps; the HPA
            // class scales on cpu or memory but never below one pod.
            out.append((key + "metric", .string("concurrency")))
            dropped.append("[autoscale] metric = \(scale.metric.rawValue), target = \(scale.metric == .cpu ? Self.number(scale.target) : ByteSize.format(UInt64(scale.target.rounded()))): Knative's KPA, the only class that scales to zero, scales on concurrency or rps (its HPA class takes cpu and memory but never goes below one pod); this Service scales on concurrency with the cluster's default target (container-concurrency-target-default, 100): set autoscaling.knative.dev/target once measured, or min = 1 in the manifest for a HorizontalPodAutoscaler on \(scale.metric.rawValue)")
        }
        out.append((key + "min-scale", .string(String(scale.min))))
        out.append((key + "max-scale", .string(String(scale.max))))
        out.append((key + "initial-scale", .string(String(instances))))
        if instances == 0 {
            notes.append("instances = 0: autoscaling.knative.dev/initial-scale \"0\" takes effect only with allow-zero-initial-scale: \"true\" in Knative's config-autoscaler")
        }
        // The stable window: Knative takes 6s to 1h.
        let window = min(max(scale.window.seconds, 6), 3600)
        out.append((key + "window", .string(DurationText.format(.seconds(window)))))
        if window != scale.window.seconds {
            notes.append("[autoscale] window = \(DurationText.format(scale.window)): Knative's stable window is 6s to 1h; \(DurationText.format(.seconds(window)))")
        }
        // The panic window is a share of the stable window in Knative (1% to 100%).
        let panicShare = min(max(scale.panicWindow.seconds / window * 100, 1), 100)
        out.append((key + "panic-window-percentage", .string(Self.decimal(panicShare))))
        if abs(panicShare * window / 100 - scale.panicWindow.seconds) > 0.05 {
            notes.append("[autoscale] panic_window = \(DurationText.format(scale.panicWindow)): Knative's panic window is 1% to 100% of the stable window; \(Self.decimal(panicShare))% of \(DurationText.format(.seconds(window)))")
        }
        // Muster's threshold is a multiple of capacity; Knative's a percentage, from 110 to 1000.
        let threshold = min(max(scale.panicThreshold * 100, 110), 1000)
        out.append((key + "panic-threshold-percentage", .string(Self.decimal(threshold))))
        if threshold != scale.panicThreshold * 100 {
            notes.append("[autoscale] panic_threshold = \(Self.number(scale.panicThreshold)): Knative's panic threshold is 110% to 1000% of capacity; \(Self.decimal(threshold))%")
        }
        let delay = min(scale.scaleDownDelay.seconds, 3600)
        out.append((key + "scale-down-delay", .string(DurationText.format(.seconds(delay)))))
        if delay != scale.scaleDownDelay.seconds {
            notes.append("[autoscale] scale_down_delay = \(DurationText.format(scale.scaleDownDelay)): Knative takes at most 1h")
        }
        if scale.min == 0 {
            // Knative removes the last pod once the stable window has seen no traffic and then the
            // per-revision retention has passed: the retention is what is left of Muster's idle time.
            // (config-autoscaler's scale-to-zero-grace-period is cluster-wide and is no idle time: it
            // bounds how long the network may take to route through the activator.)
            let retention = max(0, scale.scaleToZeroAfter.seconds - window)
            out.append((key + "scale-to-zero-pod-retention-period", .string(DurationText.format(.seconds(retention)))))
            notes.append("[autoscale] scale_to_zero_after = \(DurationText.format(scale.scaleToZeroAfter)): Knative removes the last pod once its stable window (\(DurationText.format(.seconds(window)))) has seen no request and then scale-to-zero-pod-retention-period (\(DurationText.format(.seconds(retention)))) has passed; the cluster must keep enable-scale-to-zero: \"true\", and its scale-to-zero-grace-period is a bound on network reprogramming, not an idle time")
        }
        dropped.append("[autoscale] tolerance = \(Self.number(scale.tolerance)): Knative's autoscaler has no tolerance band (target-utilization-percentage is another thing: the share of target to aim at)")
        if scale.maxScaleUp > 0 || scale.maxScaleDown > 0 {
            dropped.append("[autoscale] max_scale_up = \(scale.maxScaleUp) and max_scale_down = \(scale.maxScaleDown): Knative bounds steps as rates, cluster-wide only (config-autoscaler max-scale-up-rate and max-scale-down-rate)")
        }
        return out
    }

    /// Whether any text holds a loopback address: 127.0.0.1, localhost, [::1] or ::1 alone.
    static func namesLoopback(_ texts: [String]) -> Bool {
        texts.contains { $0.contains("127.0.0.1") || $0.contains("localhost") || $0.contains("[::1]") || $0 == "::1" }
    }

    /// Cores as a Kubernetes cpu quantity in millicores: 0.5 → "500m", at least "1m".
    static func millicores(_ cores: Double) -> String { "\(max(1, Int((cores * 1000).rounded())))m" }

    /// 10 → "10", 0.5 → "0.5".
    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// A percentage as Knative's float annotations show them: 10 → "10.0", 12.345 → "12.3".
    static func decimal(_ value: Double) -> String {
        let tenths = (value * 10).rounded() / 10
        return tenths == tenths.rounded() ? "\(Int(tenths)).0" : String(tenths)
    }

    /// Bytes as a Kubernetes quantity: "128Mi" when exact, else a plain number of bytes.
    static func quantity(_ bytes: UInt64) -> String {
        for (suffix, size) in [("Gi", UInt64(1) << 30), ("Mi", UInt64(1) << 20), ("Ki", UInt64(1) << 10)] where bytes % size == 0 {
            return "\(bytes / size)\(suffix)"
        }
        return String(bytes)
    }
}
