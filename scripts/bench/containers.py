#!/usr/bin/env python3
"""The containers benchmark's body; run it through scripts/bench/containers, which checks what it
needs and builds the binaries. Builds the busybox OCI image once (scripts/images/busybox-image),
then, for ROUNDS rounds, in the same run:

  muster     one fresh musterd per round with three services at `instances = 0`: `box`, a
             `[container]` service of the image running `/bin/sleep 3600` (busybox's applet);
             `plain`, host `/bin/sleep 3600` (coreutils, as scripts/bench/spawn runs it); and
             `plainbb`, host `/bin/busybox sleep 3600` (the very binary the container runs, so
             the container's own cost is told apart from the program's). Each is scaled to
             INSTANCES with `musterctl scale` in turn (the order rotates per round) and timed from
             the command to the last `started` event of the service in musterd's journal (µs
             stamps); `musterctl status --json` is polled until all run, as spawn.py does, and
             that polled time is kept too. musterd's RSS is read before and after the containers,
             and `du` of <state_dir>/containers with the containers running, <state_dir>/images
             once.
  crun       INSTANCES containers of the same image with `crun run --detach`, one after the other
             from a loop as a user's script would (Python's subprocess, a vfork+exec each), timed
             from the first launch to the last one returning; with cgroups (crun's cgroupfs
             manager), without (`--cgroup-manager=disabled`), and with cgroups from two launchers
             at once (CRUN_PARALLEL, default 2; 0 or 1 leaves it out). The bundle: `umoci unpack` of
             the image once, config.json edited (args sleep 3600, terminal false, no network
             namespace, a cgroup namespace as Muster gives, Muster's capability set and seccomp
             deny list, no in-container cgroupfs mount); one small bundle folder per container
             holding only its config.json (its own cgroupsPath), all sharing the one rootfs with
             `root.readonly = true`. crun's state lives in `--root` under the run's temp folder.

Per instance figures are the round's time divided by INSTANCES; ratios are taken per round and
their median reported. Cleanup (crun containers, musterd and its children, the cgroups this run
named, temp folders) runs on success, failure, Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (BenchError, Interrupted, Process, kill_if_same, log, machine_busy, proc_stat,  # noqa: E402
                      raise_interrupted_on_signals, read_events, remove_cgroup_root, run_quiet, status_kib)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTANCES = int(os.environ.get("INSTANCES", "50"))
ROUNDS = max(1, int(os.environ.get("ROUNDS", "3")))
CRUN_PARALLEL = int(os.environ.get("CRUN_PARALLEL", "2"))
# Also a second musterd per round whose state_dir is on tmpfs (/dev/shm): the writable layers'
# files are fsync'd, which costs a disk flush each on the default temp folder's filesystem.
MUSTER_TMPFS = os.environ.get("MUSTER_TMPFS", "1") not in ("0", "")
TMPFS = "/dev/shm"
RESULTS_DIR = os.environ.get("RESULTS_DIR") or None
START_TIMEOUT = 120.0
POLL_INTERVAL = 0.020
SLEEP = ["/bin/sleep", "3600"]
TAG = "latest"

# Muster's default container capabilities (CapabilitySet.containerDefault: podman's list).
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"]

# Muster's default deny list (Sources/MusterRuntime/SeccompFilter+ContainerDefault.swift) as an OCI
# seccomp profile, so that crun builds and loads a filter of the same shape. Two simplifications:
# clone is denied per namespace flag (one masked-equal rule each), and personality is left allowed
# (its "any bit outside 0x20008, except the query" rule does not fit OCI's argument operators).
DENIED = ["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
          "query_module", "get_kernel_syms", "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig",
          "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "unshare", "setns", "swapon", "swapoff",
          "reboot", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
          "bpf", "perf_event_open", "lookup_dcookie", "keyctl", "add_key", "request_key", "settimeofday", "stime",
          "clock_settime", "clock_settime64", "iopl", "ioperm", "open_by_handle_at", "quotactl", "quotactl_fd",
          "acct", "vhangup", "syslog", "nfsservctl", "uselib", "sysfs", "_sysctl", "ustat", "vm86", "vm86old",
          "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register"]
CLONE_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]


def seccomp_profile():
    rules = [{"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
             {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    for flag in CLONE_NAMESPACE_FLAGS:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
            if os.uname().machine == "x86_64" else ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": rules}


def du_kib(path):
    r = run_quiet(["du", "-sk", path], timeout=60)
    if r.returncode != 0:
        raise BenchError(f"du -sk {path}: {r.stderr.strip()}")
    return int(r.stdout.split()[0])


def keep(path, name=None):
    if RESULTS_DIR and os.path.exists(path):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        shutil.copy(path, os.path.join(RESULTS_DIR, name or os.path.basename(path)))


# --- crun on this host -------------------------------------------------------------------------

def crun_needs_private_cgroup_view():
    """crun 1.8 refuses a hybrid host whose cgroup2 hierarchy has controllers ("cgroups in hybrid
    mode not supported, drop all controllers from cgroupv2"), even with --cgroup-manager=disabled.
    On such a host it is run in a mount namespace of its own where /sys/fs/cgroup/unified is
    unmounted, so it sees (and uses) the v1 hierarchies only; the host's mounts are not touched."""
    if not os.path.ismount("/sys/fs/cgroup/unified"):
        return False
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return bool(f.read().split())
    except OSError:
        return False


def crun_argv_prefix():
    """What every crun call is run under: on a hybrid host with cgroup2 controllers, a private
    mount namespace without /sys/fs/cgroup/unified (see above)."""
    if crun_needs_private_cgroup_view():
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'umount -l /sys/fs/cgroup/unified && exec "$@"', "sh"]
    return []


def driver(spec_path):
    """Runs inside the crun namespace (see crun_argv_prefix): launches or deletes the containers
    listed in the spec and prints what it measured as JSON on stdout."""
    with open(spec_path) as f:
        spec = json.load(f)
    base = ["crun", "--root", spec["root"]] + (["--cgroup-manager=disabled"] if spec.get("no_cgroups") else [])
    if spec["action"] == "delete":
        failed = []
        for cid in spec["ids"]:
            r = run_quiet(base + ["delete", "-f", cid], timeout=30)
            if r.returncode != 0 and "does not exist" not in r.stderr:
                failed.append(f"{cid}: {r.stderr.strip()}")
        print(json.dumps({"failed": failed}))
        return 0
    jobs = spec["jobs"]            # [[id, bundle], ...]
    lanes = max(1, spec.get("parallel", 1))
    errors = []
    times = [None] * len(jobs)

    def lane(k):
        for i in range(k, len(jobs), lanes):
            if errors:
                return
            cid, bundle = jobs[i]
            # The container inherits crun's stdio (terminal = false): a file, not a pipe that
            # would stay open for as long as the container runs.
            out_path = os.path.join(bundle, "output.log")
            with open(out_path, "wb") as out:
                t = time.monotonic()
                r = subprocess.run(base + ["run", "--detach", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=out)
                times[i] = time.monotonic() - t
            if r.returncode != 0:
                errors.append(f"crun run {cid} exited {r.returncode}: {benchlib.file_tail(out_path, 5).strip()}")
                return

    t0 = time.monotonic()
    if lanes == 1:
        lane(0)
    else:
        threads = [threading.Thread(target=lane, args=(k,)) for k in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - t0
    print(json.dumps({"elapsed": elapsed, "each": times, "errors": errors}))
    return 0


class Crun:
    """One run's crun: its bundle (shared read-only rootfs), state root, the containers it launched
    and their cgroups; registered with the Resources so that cleanup deletes every container."""

    def __init__(self, res, image_dir, script):
        self.res = res
        self.script = script
        self.prefix = crun_argv_prefix()
        self.tmp = res.temp_dir("crun")
        self.root = os.path.join(self.tmp, "state")      # crun --root
        os.makedirs(self.root)
        self.cgroup_root = f"crun-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        res.cgroup_roots.append(self.cgroup_root)        # registered before crun can make it
        self.launched = {}                               # id -> no_cgroups, everything ever asked to run
        self.pids = set()                                # (pid, starttime) of their processes
        unpacked = os.path.join(self.tmp, "unpacked")
        r = run_quiet(["umoci", "unpack", "--image", f"{image_dir}:{TAG}", unpacked], timeout=120)
        if r.returncode != 0:
            raise BenchError(f"umoci unpack: {r.stderr.strip()}")
        self.rootfs = os.path.join(unpacked, "rootfs")
        with open(os.path.join(unpacked, "config.json")) as f:
            self.template = json.load(f)
        self.version = run_quiet(["crun", "--version"]).stdout.splitlines()[0]

    def config(self, cid, no_cgroups):
        c = json.loads(json.dumps(self.template))
        p = c["process"]
        p["terminal"] = False
        p["args"] = SLEEP
        p["capabilities"] = {k: list(CAPABILITIES) for k in ("bounding", "effective", "permitted")}
        p["noNewPrivileges"] = True
        c["root"] = {"path": self.rootfs, "readonly": True}
        c["hostname"] = cid[-63:]
        linux = c["linux"]
        # Muster's container namespaces: pid, mount, uts, ipc, cgroup; the host's network.
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"] + [{"type": "cgroup"}]
        linux["seccomp"] = seccomp_profile()
        # crun 1.8 cannot mount cgroupfs inside a container on this hybrid host, and Muster does
        # not mount one either.
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        if no_cgroups:
            linux.pop("resources", None)
            linux.pop("cgroupsPath", None)
        else:
            linux["cgroupsPath"] = f"/{self.cgroup_root}/{cid}"
        return c

    def call(self, spec, timeout):
        path = os.path.join(self.tmp, f"spec-{uuid.uuid4().hex[:8]}.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        try:
            r = subprocess.run(self.prefix + [sys.executable, self.script, "--crun-driver", path],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"crun driver ({spec['action']}) did not finish within {timeout} s")
        if r.returncode != 0:
            raise BenchError(f"crun driver exited {r.returncode}: {r.stderr.strip()[-800:]}")
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"crun driver said: {r.stdout.strip()[-400:]} {r.stderr.strip()[-400:]}")

    def state(self, cid, no_cgroups):
        argv = ["crun", "--root", self.root] + (["--cgroup-manager=disabled"] if no_cgroups else []) + ["state", cid]
        r = run_quiet(argv)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def run(self, label, count, no_cgroups=False, parallel=1):
        jobs = []
        for i in range(count):
            cid = f"cb-{label}-{i}"
            bundle = os.path.join(self.tmp, "bundles", cid)
            os.makedirs(bundle)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(self.config(cid, no_cgroups), f)
            jobs.append([cid, bundle])
            self.launched[cid] = no_cgroups
        out = self.call({"action": "run", "root": self.root, "no_cgroups": no_cgroups, "jobs": jobs,
                         "parallel": parallel}, timeout=START_TIMEOUT)
        running = 0
        for cid, _ in jobs:
            st = self.state(cid, no_cgroups)
            if st and st.get("pid"):
                fields = proc_stat(st["pid"])
                if fields:
                    self.pids.add((st["pid"], fields[22]))
            if st and st.get("status") == "running":
                running += 1
        if out["errors"]:
            raise BenchError(f"crun ({label}): " + "; ".join(out["errors"][:3]))
        if running != count:
            raise BenchError(f"crun ({label}): {running} of {count} containers running after the last `crun run` returned")
        return {"elapsed": out["elapsed"], "each": out["each"], "bundle_kib": du_kib(os.path.join(self.tmp, "bundles")),
                "state_kib": du_kib(self.root)}

    def delete(self, ids=None):
        ids = list(self.launched) if ids is None else ids
        failed = []
        for no_cgroups in (False, True):
            batch = [cid for cid in ids if self.launched.get(cid) == no_cgroups]
            if batch:
                out = self.call({"action": "delete", "root": self.root, "no_cgroups": no_cgroups, "ids": batch},
                                timeout=120)
                failed += out["failed"]
        for cid in ids:
            self.launched.pop(cid, None)
        shutil.rmtree(os.path.join(self.tmp, "bundles"), ignore_errors=True)
        return failed

    def cleanup(self):
        """Everything ever launched, whatever state it is in; then any of their processes left."""
        try:
            for failure in self.delete():
                log(f"cleanup: crun delete: {failure}")
        except Exception as error:  # keep going: the processes must still go
            log(f"cleanup: crun delete: {error}")
        for pid, start in self.pids:
            kill_if_same(pid, start)


# --- Muster ------------------------------------------------------------------------------------

SERVICES = {
    "box": {"argv": SLEEP, "container": True, "label": "container (busybox sleep in the image)"},
    "plain": {"argv": SLEEP, "container": False, "label": "plain (/bin/sleep, coreutils)"},
    "plainbb": {"argv": ["/bin/busybox", "sleep", "3600"], "container": False, "label": "plain (/bin/busybox sleep)"},
}


class Muster:
    def __init__(self, res, bin_dir, image_dir, temp_parent=None):
        self.res = res
        self.temp_parent = temp_parent    # where the temp folder (state_dir, logs) goes; None: TMPDIR
        self.musterd = os.path.join(bin_dir, "musterd")
        self.musterctl = os.path.join(bin_dir, "musterctl")
        self.image_dir = image_dir

    def prepare(self):
        if self.temp_parent:
            tmp = tempfile.mkdtemp(prefix=f"{self.res.temp_prefix}-muster.", dir=self.temp_parent)
            self.res.temp_dirs.append(tmp)
        else:
            tmp = self.res.temp_dir("muster")
        root = f"muster-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.res.cgroup_roots.append(root)   # registered before musterd can create it
        services = os.path.join(tmp, "services.d")
        os.makedirs(services)
        self.socket = os.path.join(tmp, "run", "muster.sock")
        self.state_dir = os.path.join(tmp, "state")
        config = os.path.join(tmp, "musterd.toml")
        with open(config, "w") as f:
            f.write(f"""[daemon]
services_dir   = "services.d"
control_socket = "{self.socket}"
state_dir      = "{self.state_dir}"
log_dir        = "{tmp}/log"
cgroup_root    = "{root}"
instance_ports = "40000-49999"
""")
        for name, s in SERVICES.items():
            with open(os.path.join(services, name + ".toml"), "w") as f:
                f.write(f"command = {json.dumps(s['argv'])}\ninstances = 0\n\n[restart]\nstart_seconds = 0\n")
                if s["container"]:
                    f.write(f'\n[container]\nimage = "{self.image_dir}"\ntag = "{TAG}"\n')
        self.tmp = tmp
        self.cgroup_root = root
        return Process("musterd", [self.musterd, "--config", config], os.path.join(tmp, "musterd.log"),
                       stop_argv=[self.musterctl, "shutdown", "--socket", self.socket])

    def ctl(self, *args, timeout=60):
        return run_quiet([self.musterctl, args[0], "--socket", self.socket, *args[1:]], timeout=timeout)

    def instances(self, service):
        r = self.ctl("status", "--json", service)
        if r.returncode != 0:
            return None
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            return None
        return [i for s in doc["services"] if s["name"] == service for i in s["instances"]]

    def events(self):
        return read_events(os.path.join(self.state_dir, "events.log"))

    def wait_ready(self, daemon):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not daemon.alive():
                raise BenchError(f"musterd exited {daemon.proc.returncode} at start; log:\n{benchlib.file_tail(daemon.log_path)}")
            if self.instances("box") is not None and any(e["kind"] == "daemon-started" for e in self.events()):
                images = os.path.join(self.state_dir, "images")
                done = [d for d in os.listdir(images) if os.path.exists(os.path.join(images, d, "complete"))] \
                    if os.path.isdir(images) else []
                if done:
                    return
            time.sleep(0.05)
        raise BenchError(f"musterd not ready (status answering, image unpacked) within 60 s; log:\n"
                         f"{benchlib.file_tail(daemon.log_path)}")

    def scale_up(self, daemon, service, count):
        """`musterctl scale SERVICE count` on a service at 0; polls until all run. Returns the
        figures: from the command to the last `started` event (journal), first to last, polled."""
        seen = len(self.events())
        t0_wall, t0 = time.time(), time.monotonic()
        r = self.ctl("scale", service, str(count))
        if r.returncode != 0:
            raise BenchError(f"musterctl scale {service} {count} exited {r.returncode}: {r.stderr.strip()}")
        polls = 0
        while True:
            if not daemon.alive():
                raise BenchError(f"musterd exited {daemon.proc.returncode}; log:\n{benchlib.file_tail(daemon.log_path)}")
            rows = self.instances(service) or []
            polls += 1
            now = time.monotonic()
            running = [i for i in rows if i["state"] == "running"]
            if len(running) >= count:
                break
            trouble = [e for e in self.events()[seen:] if e.get("service") == service
                       and e["kind"] not in ("started", "scaled", "ready")]
            if now - t0 > START_TIMEOUT or any(e["kind"] in ("fatal", "backoff") for e in trouble):
                raise BenchError(f"muster {service}: {len(running)} of {count} running after {now - t0:.1f} s; events:\n"
                                 + "\n".join(json.dumps(e) for e in trouble[-10:])
                                 + f"\nmusterd log:\n{benchlib.file_tail(daemon.log_path)}")
            time.sleep(POLL_INTERVAL)
        polled = now - t0
        new = [e for e in self.events()[seen:] if e.get("service") == service]
        started = [e["time"] for e in new if e["kind"] == "started"]
        unexpected = [e for e in new if e["kind"] not in ("started", "scaled", "ready")]
        if len(started) != count or unexpected:
            raise BenchError(f"muster {service}: {len(started)} `started` events for {count} instances; other events: "
                             + "; ".join(json.dumps(e) for e in unexpected[:5]))
        if SERVICES[service]["container"]:
            plain = [i["name"] if "name" in i else i.get("instance") for i in running if not i.get("container")]
            if plain:
                raise BenchError(f"muster {service}: instances without a container in status: {plain[:5]}")
        return {"all_running": max(started) - t0_wall, "span": max(started) - min(started),
                "first": min(started) - t0_wall, "polled": polled, "polls": polls}

    def round(self, order):
        """A fresh musterd: its services scaled from 0 to INSTANCES one after the other, in `order`."""
        daemon = self.prepare()
        self.res.start(daemon)
        try:
            self.wait_ready(daemon)
            time.sleep(0.5)   # let start-up work settle
            out = {"order": order, "rss": {}}
            out["rss"]["idle"] = status_kib(daemon.pid)
            for service in order:
                before = status_kib(daemon.pid)
                out[service] = self.scale_up(daemon, service, INSTANCES)
                time.sleep(0.3)
                after = status_kib(daemon.pid)
                out[service]["rss_before"], out[service]["rss_after"] = before, after
                if SERVICES[service]["container"]:
                    out["containers_kib"] = du_kib(os.path.join(self.state_dir, "containers"))
                    out["images_kib"] = du_kib(os.path.join(self.state_dir, "images"))
                    out["layers"] = len(os.listdir(os.path.join(self.state_dir, "containers", service)))
            out["threads"] = len(os.listdir(f"/proc/{daemon.pid}/task"))
            keep(os.path.join(self.state_dir, "events.log"), f"muster-events-{self.tmp.rsplit('.', 1)[-1]}.log")
            r = self.ctl("shutdown")
            if r.returncode != 0:
                raise BenchError(f"musterctl shutdown exited {r.returncode}: {r.stderr.strip()}")
            try:
                code = daemon.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                raise BenchError("musterd did not exit within 60 s of shutdown")
            if code != 0:
                raise BenchError(f"musterd exited {code} after shutdown; log:\n{benchlib.file_tail(daemon.log_path)}")
            # musterd removes an ended instance's writable layer; after a clean shutdown none
            # should be left (the next start would sweep them, but this one said it was done).
            left = os.path.join(self.state_dir, "containers", "box")
            out["left_after_shutdown"] = sorted(os.listdir(left)) if os.path.isdir(left) else []
            if out["left_after_shutdown"]:
                log(f"   note: writable layers left in {left} after musterd exited: "
                    + ", ".join(out["left_after_shutdown"]))
            return out
        finally:
            daemon.stop()
            self.res.processes.remove(daemon)
            if self.cgroup_root in self.res.cgroup_roots:
                remove_cgroup_root(self.cgroup_root)
                self.res.cgroup_roots.remove(self.cgroup_root)
            keep(daemon.log_path, "musterd.log")
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.res.temp_dirs.remove(self.tmp)


class Resources(benchlib.Resources):
    """Also deletes every crun container the run launched, before anything else goes."""

    def __init__(self):
        super().__init__("bench-containers")
        self.crun = None

    def before_processes(self):
        if self.crun is not None:
            self.crun.cleanup()


# --- report --------------------------------------------------------------------------------------

def report(rounds, crun_version, busy):
    n = INSTANCES

    def per(x):
        return x / n * 1000           # ms per instance

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    rows = []   # (label, [per round], median, note)

    def row(label, values, spec=".2f", note=""):
        rows.append((label, [fmt(v, spec) for v in values], fmt(med(values), spec), note))
        return med(values)

    m = [r["muster"] for r in rounds]
    c = [r["crun"] for r in rounds]
    row("muster container, ms/instance", [per(x["box"]["all_running"]) for x in m])
    row("muster plain /bin/sleep, ms/instance", [per(x["plain"]["all_running"]) for x in m])
    row("muster plain busybox sleep, ms/instance", [per(x["plainbb"]["all_running"]) for x in m])
    ratio_plain = [x["box"]["all_running"] / x["plain"]["all_running"] for x in m]
    ratio_bb = [x["box"]["all_running"] / x["plainbb"]["all_running"] for x in m]
    goal_plain = med(ratio_plain)
    row("ratio container / plain (/bin/sleep)", ratio_plain,
        note=f"goal <= 1.5: {'MET' if goal_plain <= 1.5 else 'MISSED'}")
    row("ratio container / plain (busybox sleep)", ratio_bb)
    t = [r.get("tmpfs") for r in rounds]
    if all(t):
        row("muster container, state_dir on tmpfs, ms/instance", [per(x["box"]["all_running"]) for x in t])
        row("muster plain /bin/sleep, state_dir on tmpfs, ms/instance", [per(x["plain"]["all_running"]) for x in t])
        row("ratio container / plain (/bin/sleep), both on tmpfs", [x["box"]["all_running"] / x["plain"]["all_running"] for x in t])
        row("ratio container on tmpfs / plain on disk (/bin/sleep)",
            [tx["box"]["all_running"] / mx["plain"]["all_running"] for tx, mx in zip(t, m)])
    row("crun run --detach (cgroupfs), ms/container", [per(x["cgroups"]["elapsed"]) for x in c])
    row("crun run --detach (no cgroups), ms/container", [per(x["nocgroups"]["elapsed"]) for x in c])
    if all("parallel" in x for x in c):
        row(f"crun cgroupfs, {CRUN_PARALLEL} launchers at once, ms/container", [per(x["parallel"]["elapsed"]) for x in c])
    ratio_crun = [mx["box"]["all_running"] / cx["cgroups"]["elapsed"] for mx, cx in zip(m, c)]
    ratio_crun_nocg = [mx["box"]["all_running"] / cx["nocgroups"]["elapsed"] for mx, cx in zip(m, c)]
    goal_crun = med(ratio_crun)
    row("ratio muster container / crun (cgroupfs)", ratio_crun,
        note=f"goal <= 1.0: {'MET' if goal_crun <= 1.0 else 'MISSED'}")
    row("ratio muster container / crun (no cgroups)", ratio_crun_nocg)
    if all("parallel" in x for x in c):
        row(f"ratio muster container / crun ({CRUN_PARALLEL} at once)",
            [mx["box"]["all_running"] / cx["parallel"]["elapsed"] for mx, cx in zip(m, c)])
    row("musterd RSS before the containers, MiB", [x["box"]["rss_before"]["VmRSS"] / 1024 for x in m], ".1f")
    row("musterd RSS after the containers, MiB", [x["box"]["rss_after"]["VmRSS"] / 1024 for x in m], ".1f")
    row("musterd RSS per extra container, KiB",
        [(x["box"]["rss_after"]["VmRSS"] - x["box"]["rss_before"]["VmRSS"]) / n for x in m], ".1f")
    row("musterd RSS per extra plain instance, KiB",
        [(x["plain"]["rss_after"]["VmRSS"] - x["plain"]["rss_before"]["VmRSS"]) / n for x in m], ".1f")
    row("disk per container (<state>/containers), KiB", [x["containers_kib"] / n for x in m], ".1f")
    row("disk once: the unpacked image (<state>/images), KiB", [x["images_kib"] for x in m], ".0f")
    row("crun disk per container (bundle + state), KiB",
        [(x["cgroups"]["bundle_kib"] + x["cgroups"]["state_kib"]) / n for x in c], ".1f")

    lines = [f"containers benchmark: {n} instances each, busybox image, `{' '.join(SLEEP)}`, "
             f"{ROUNDS} round(s), {os.cpu_count()} CPUs; {crun_version}", ""]
    header = ["", *[f"round {i + 1}" for i in range(len(rounds))], "median", ""]
    table = [header] + [[label, *vals, medv, note] for label, vals, medv, note in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        lines.append("  ".join(r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i])
                               for i in range(len(widths))) + ("  " + r[-1] if r[-1] else ""))
    lines.append("")
    for i, (mx, cx) in enumerate(zip(m, c)):
        detail = [f"order {' '.join(mx['order'])}"]
        for s in ("box", "plain", "plainbb"):
            x = mx[s]
            detail.append(f"{s} first started {x['first'] * 1000:.1f} ms, span {x['span'] * 1000:.1f} ms, "
                          f"polled {x['polled'] * 1000:.0f} ms ({x['polls']} polls)")
        each = [t for t in cx["cgroups"]["each"] if t]
        detail.append(f"crun cgroupfs one `crun run` min/median/max {min(each) * 1000:.1f}/"
                      f"{statistics.median(each) * 1000:.1f}/{max(each) * 1000:.1f} ms")
        detail.append(f"{mx['layers']} writable layers; {mx['threads']} musterd threads")
        lines.append(f"round {i + 1}: " + "; ".join(detail))
    left = [(f"round {i + 1}{where}", x["left_after_shutdown"]) for where, runs in (("", m), (" (tmpfs)", t))
            for i, x in enumerate(runs) if x and x.get("left_after_shutdown")]
    if left:
        lines.append("writable layers left under <state_dir>/containers/box after `musterctl shutdown` and musterd's exit: "
                     + "; ".join(f"{label}: {', '.join(names)}" for label, names in left))
    lines.append("")
    lines.append("muster: from `musterctl scale S 50` (S at 0) to the service's last `started` event in musterd's "
                 "journal, divided by 50; crun: first `crun run --detach` to the 50th returning, divided by 50")
    lines.append(f"other work on the machine: {busy[0]:.0f}% of all CPUs busy before the run, {busy[1]:.0f}% after"
                 + (" (figures are slower and noisier than on an idle machine)" if max(busy) > 10 else ""))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", help="folder with release musterd and musterctl")
    parser.add_argument("--crun-driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crun_driver:
        return driver(args.crun_driver)
    if not args.bin_dir:
        parser.error("--bin-dir is required")
    if os.geteuid() != 0:
        sys.exit("scripts/bench/containers: run as root (namespaces, mounts, cgroups)")

    raise_interrupted_on_signals()
    res = Resources()
    try:
        for argv in ([os.path.join(args.bin_dir, "musterd"), "--version"],
                     [os.path.join(args.bin_dir, "musterctl"), "--version"], ["crun", "--version"]):
            run_quiet(argv)
        busy0 = machine_busy(2.0) * 100
        log(f"machine busy before the run: {busy0:.0f}% of all {os.cpu_count()} CPUs")
        image_dir = os.path.join(res.temp_dir("image"), "busybox")
        t = time.monotonic()
        built = run_quiet([os.path.join(ROOT, "scripts", "images", "busybox-image"), image_dir, TAG], timeout=300)
        if built.returncode != 0:
            raise BenchError(f"scripts/images/busybox-image failed: {built.stderr.strip()}")
        log(f"image built in {time.monotonic() - t:.1f} s: {image_dir}")
        crun = Crun(res, image_dir, os.path.abspath(__file__))
        res.crun = crun
        if crun.prefix:
            log("crun: hybrid host with cgroup2 controllers, which crun 1.8 refuses; crun runs in a private "
                "mount namespace without /sys/fs/cgroup/unified (v1 hierarchies only)")
        # Warm-up, not measured: crun's page cache, the mount points it makes in the shared rootfs.
        crun.run("warmup", 2)
        crun.delete()
        muster = Muster(res, args.bin_dir, image_dir)
        tmpfs = None
        if MUSTER_TMPFS:
            fs = run_quiet(["stat", "-f", "-c", "%T", TMPFS]).stdout.strip()
            if fs == "tmpfs":
                tmpfs = Muster(res, args.bin_dir, image_dir, temp_parent=TMPFS)
            else:
                log(f"{TMPFS} is not tmpfs ({fs or 'missing'}): no state_dir-on-tmpfs rounds")
        rotations = [["plain", "box", "plainbb"], ["box", "plainbb", "plain"], ["plainbb", "plain", "box"]]
        rounds = []
        for i in range(ROUNDS):
            log(f"== round {i + 1}/{ROUNDS}")
            out = {}
            crun_first = i % 2 == 1
            steps = ["crun", "muster"] if crun_first else ["muster", "crun"]
            if tmpfs:
                steps.insert(1, "tmpfs")
            for step in steps:
                if step in ("muster", "tmpfs"):
                    m = (muster if step == "muster" else tmpfs).round(rotations[i % len(rotations)])
                    out[step] = m
                    log(f"   {step}: " + ", ".join(f"{s} {m[s]['all_running'] * 1000:.0f} ms" for s in m["order"]))
                else:
                    c = {"cgroups": crun.run(f"r{i}-cg", INSTANCES)}
                    crun.delete()
                    c["nocgroups"] = crun.run(f"r{i}-nocg", INSTANCES, no_cgroups=True)
                    crun.delete()
                    if CRUN_PARALLEL > 1:
                        c["parallel"] = crun.run(f"r{i}-par", INSTANCES, parallel=CRUN_PARALLEL)
                        crun.delete()
                    out["crun"] = c
                    log("   crun: " + ", ".join(f"{k} {v['elapsed'] * 1000:.0f} ms" for k, v in c.items()))
            rounds.append(out)
        busy1 = machine_busy(2.0) * 100
        text = report(rounds, crun.version, (busy0, busy1))
        print(text, flush=True)
        if RESULTS_DIR:
            os.makedirs(RESULTS_DIR, exist_ok=True)
            with open(os.path.join(RESULTS_DIR, "results.json"), "w") as f:
                json.dump({"instances": INSTANCES, "rounds": rounds, "machine_busy_percent": [busy0, busy1]}, f, indent=2)
            with open(os.path.join(RESULTS_DIR, "summary.txt"), "w") as f:
                f.write(text + "\n")
        return 0
    except Interrupted as why:
        log(f"scripts/bench/containers: interrupted ({why}); cleaning up")
        return 130
    except BenchError as error:
        log(f"scripts/bench/containers: {error}")
        return 1
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
