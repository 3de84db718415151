import Glibc
import MusterCore

/// Container instances: where their root comes from, the folders of each start, and how a
/// PID 1 is stopped.
extension Supervisor {
    /// The read-only lower layer of a container's overlay: `rootfs` as written, or the image's
    /// unpacked root.
    func containerLowerLayer(_ spec: ServiceSpec) throws(SpawnError) -> String {
        guard deps.containersDir != nil else { throw SpawnError("[container]: this musterd has no state_dir for containers' layers") }
        switch spec.container?.source {
        case .rootfs(let path)?:
            guard FileSystem.isDirectory(path) else { throw SpawnError("[container] rootfs \(path): no such folder") }
            return path
        case .image(let path, _)?:
            guard let digest = spec.container?.image?.manifestDigest, let root = deps.images?.unpackedRoot(digest: digest) else {
                throw SpawnError("[container] image \(path): not unpacked in this musterd's image store (reload to unpack it)")
            }
            return root
        case nil:
            throw SpawnError("not a container")
        }
    }

    /// Makes the start's folders and turns `request` into a container launch: the program as the
    /// container resolves it, the notify socket bound in where the service looks for it.
    func prepareContainer(_ spec: ServiceSpec, lower: String, plan: LaunchPlan, index: Int, generation: Int,
                          notifySocket: NotifySocket?, request: inout LaunchRequest) throws(SpawnError) -> ContainerRoot.Prepared {
        guard let containersDir = deps.containersDir else { throw SpawnError("[container]: no state_dir") }
        var prepared = try ContainerRoot.prepare(containersDir: containersDir, lower: lower, spec: spec, plan: plan,
                                                 index: index, generation: generation)
        if let notifySocket {
            prepared.launch.binds.append(ContainerLaunch.Bind(source: notifySocket.path, target: Self.containerNotifySocket, readOnly: false))
            request.environment.removeAll { $0.hasPrefix("NOTIFY_SOCKET=") }
            request.environment.append("NOTIFY_SOCKET=\(Self.containerNotifySocket)")
        }
        request.program = prepared.program
        request.container = prepared.launch
        if spec.container?.seccomp == .default { request.seccompFilter = .containerDefault }
        if spec.container?.network == .private {
            // Its own network holds only loopback: the socket the proxy reaches is made here and
            // passed in (sd_listen_fds). Its PID is 1 in its own pid namespace.
            do throws(SpawnError) { request.listenSocket = try ActivationSocket.listen(port: plan.port) }
            catch {
                ContainerRoot.remove(prepared.folder)
                throw error
            }
            request.environment.removeAll { $0.hasPrefix("LISTEN_FDS=") || $0.hasPrefix("LISTEN_PID=") || $0.hasPrefix("LISTEN_FDNAMES=") }
            request.environment += ["LISTEN_FDS=1", "LISTEN_PID=1", "LISTEN_FDNAMES=\(spec.name)"]
        }
        // Root in a container without a user namespace is the host's root: without a list of its
        // own, it keeps only podman's default capabilities, not everything musterd holds.
        if request.isolation.capabilities == nil { request.isolation.capabilities = CapabilitySet.containerDefault }
        return prepared
    }

    /// Where a container's service finds its notify socket (bind-mounted from the host's).
    static let containerNotifySocket = "/run/muster/notify.sock"

    /// Sends a stop signal; to a container's PID 1 that would never receive it, SIGKILL to its
    /// cgroup instead, and returns what to say about that.
    func deliverStopSignal(_ live: LiveInstance, _ signal: Int32) -> String? {
        guard live.containerFolder != nil, !Self.initHandles(signal, pid: live.handle.pid) else {
            live.handle.signal(signal)
            return nil
        }
        if let cgroup = live.cgroup { deps.cgroups.kill(cgroup) } else { live.handle.signal(SIGKILL) }
        return "sent SIGKILL to pid \(live.handle.pid): it is its container's PID 1 and has no handler for \(SignalName.name(signal)), which the kernel would drop"
    }

    /// Whether `signal` would reach the container's PID 1. The kernel drops a signal sent from
    /// outside to a namespace's init unless the init has a handler for it (SIGKILL aside): a
    /// service that never installed one for SIGTERM would sit out the whole stop timeout. Outside
    /// a container the same signal would have ended it at once, so such a PID 1 is killed at once.
    static func initHandles(_ signal: Int32, pid: Int32) -> Bool {
        guard let status = FileSystem.readIfPresent("/proc/\(pid)/status") else { return true }
        func mask(_ field: String) -> UInt64? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
            return UInt64(line.dropFirst(field.count + 1).trimmingPrefix(while: { $0 == "\t" || $0 == " " }), radix: 16)
        }
        let bit: UInt64 = 1 << UInt64(signal - 1)
        // Caught, or ignored on purpose (then the stop timeout is what the service asked for).
        return (mask("SigCgt") ?? bit) & bit != 0 || (mask("SigIgn") ?? 0) & bit != 0
    }
}
