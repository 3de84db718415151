#!/usr/bin/env python3
"""The spawn benchmark's body; run it through scripts/bench/spawn, which installs what it needs
and builds the binaries. Muster and supervisord each bring INSTANCES (200) copies of
`sleep 100000` to running, one daemon at a time, and this prints:

  start   time from launching the daemon (under setsid) to all instances reported running by
          the daemon's own status command (median of START_RUNS launches)
  rss     the daemon process's VmRSS from /proc/PID/status with every instance running
  status  hyperfine's median for one `status` command (-N, 3 warm-ups, 30 runs)
  idle    the daemon's utime+stime growth over IDLE_SECONDS, as % of one core

Cleanup (daemons, their children, temp folders, Muster's cgroup root) runs on success, failure,
Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid

from benchlib import (BenchError, Interrupted, Resources, kill_if_same, log, machine_busy, memory_kib, proc_stat,
                      raise_interrupted_on_signals, remove_cgroup_root, run_quiet)

INSTANCES = int(os.environ.get("INSTANCES", "200"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))
START_RUNS = max(1, int(os.environ.get("START_RUNS", "3")))
RESULTS_DIR = os.environ.get("RESULTS_DIR") or None
START_TIMEOUT = 180.0
MUSTER_POLL_INTERVAL = 0.050
CLK_TCK = os.sysconf("SC_CLK_TCK")
SLEEP_ARGV = ["/bin/sleep", "100000"]

TARGETS = {
    "start": "all running >= 20x sooner",
    "spawn": "spawn span <= 1.3x forkcost",
    "rss": "RSS <= supervisord's",
    "status": "status >= 20x faster",
    "idle": "idle CPU < 0.1% of a core",
}


# --- /proc helpers ---------------------------------------------------------------------------

def cpu_ticks(pid):
    fields = proc_stat(pid)
    if fields is None:
        raise BenchError(f"pid {pid} is gone")
    return int(fields[14]) + int(fields[15])


def threads_runtime_ns(pid):
    """Sum of every thread's on-CPU time from /proc/PID/task/*/schedstat (nanoseconds): the same
    quantity as utime+stime, without the 10 ms tick granularity."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return total


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def processes_where(predicate):
    """(pid, starttime) of processes whose stat fields satisfy predicate."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = proc_stat(int(name))
        if fields and predicate(fields):
            found.append((int(name), fields[22]))
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except (FileNotFoundError, ProcessLookupError):
        return None


# --- the daemons under test ------------------------------------------------------------------

class Daemon:
    """One launched daemon: its Popen, and the children it started (pid, start time)."""

    def __init__(self, name, argv, log_path, shutdown_argv):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.shutdown_argv = shutdown_argv
        self.proc = None
        self.children = set()

    @property
    def pid(self):
        return self.proc.pid

    def launch(self):
        with open(self.log_path, "ab") as out:
            # start_new_session: the child calls setsid(2) before exec, as `setsid CMD` does, so
            # the daemon and its children get their own session and scheduler autogroup instead of
            # sharing this terminal's.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def record_children(self):
        if not self.alive():
            return
        pid = str(self.pid)
        for child in processes_where(lambda f: f[4] == pid or f[6] == pid):
            if child[0] != self.pid:
                self.children.add(child)

    def stop(self):
        if self.proc is None:
            return
        self.record_children()
        if self.alive():
            try:
                asked = subprocess.run(self.shutdown_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, timeout=30).returncode == 0
            except subprocess.TimeoutExpired:
                asked = False
            if not asked and self.alive():
                # Not answering yet (still starting) or no longer: SIGTERM is the same graceful
                # shutdown for both daemons.
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"cleanup: {self.name} still running 30 s after shutdown; SIGTERM")
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"cleanup: {self.name} still running; SIGKILL")
                    self.proc.kill()
                    self.proc.wait()
        # Whatever survived: children seen earlier (checked by start time, so never a reused pid)
        # and, for supervisord, anything still in its session.
        leftovers = set(self.children)
        sid = str(self.pid)
        leftovers |= set(processes_where(lambda f: f[6] == sid))
        for pid, start in leftovers:
            kill_if_same(pid, start)


# --- small helpers ---------------------------------------------------------------------------

def wait_gone(daemon, timeout=60):
    try:
        daemon.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{daemon.name} did not exit within {timeout} s of shutdown")
    return daemon.proc.returncode


def hyperfine(label, command, workdir, runs=30, warmup=3):
    path = os.path.join(workdir, f"hyperfine-{label}.json")
    result = run_quiet(["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs), "--style", "basic",
                        "--export-json", path, command], timeout=600)
    if result.returncode != 0:
        raise BenchError(f"hyperfine on `{command}` failed:\n{result.stdout}{result.stderr}")
    with open(path) as f:
        data = json.load(f)["results"][0]
    keep(path)
    return {"median": data["median"], "mean": data["mean"], "stddev": data["stddev"],
            "min": data["min"], "max": data["max"]}


def idle_cpu(daemon, seconds):
    """utime+stime growth over `seconds`, as % of one core; plus the same from schedstat."""
    ticks0, ns0, t0 = cpu_ticks(daemon.pid), threads_runtime_ns(daemon.pid), time.monotonic()
    time.sleep(seconds)
    ticks1, ns1, t1 = cpu_ticks(daemon.pid), threads_runtime_ns(daemon.pid), time.monotonic()
    elapsed = t1 - t0
    return {"percent": (ticks1 - ticks0) / CLK_TCK / elapsed * 100, "ticks": ticks1 - ticks0,
            "schedstat_percent": (ns1 - ns0) / 1e9 / elapsed * 100, "seconds": elapsed}


def keep(path, name=None):
    if RESULTS_DIR and os.path.exists(path):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        shutil.copy(path, os.path.join(RESULTS_DIR, name or os.path.basename(path)))


# --- Muster ----------------------------------------------------------------------------------

class Muster:
    name = "muster"
    instances = INSTANCES
    start_timeout = START_TIMEOUT

    def __init__(self, res, bin_dir):
        self.res = res
        self.musterd = os.path.join(bin_dir, "musterd")
        self.musterctl = os.path.join(bin_dir, "musterctl")

    def prepare(self):
        tmp = self.res.temp_dir("muster")
        root = f"muster-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.res.cgroup_roots.append(root)   # registered before musterd can create it
        self.services_dir = os.path.join(tmp, "services.d")
        os.makedirs(self.services_dir)
        self.socket = os.path.join(tmp, "run", "muster.sock")
        self.state_dir = os.path.join(tmp, "state")
        self.config = os.path.join(tmp, "musterd.toml")
        with open(self.config, "w") as f:
            f.write(f"""[daemon]
services_dir   = "services.d"
control_socket = "{self.socket}"
state_dir      = "{self.state_dir}"
log_dir        = "{tmp}/log"
cgroup_root    = "{root}"
instance_ports = "40000-49999"
""")
        self.write_services()
        self.tmp = tmp
        self.cgroup_root = root
        return Daemon("musterd", [self.musterd, "--config", self.config], os.path.join(tmp, "musterd.log"),
                      [self.musterctl, "shutdown", "--socket", self.socket])

    def write_services(self):
        self.write_service("sleep", SLEEP_ARGV, self.instances)

    def write_service(self, name, argv, instances):
        with open(os.path.join(self.services_dir, name + ".toml"), "w") as f:
            f.write(f"command = {json.dumps(argv)}\ninstances = {instances}\n\n[restart]\nstart_seconds = 0\n")

    def count_running(self):
        """Instances reported running, or None when the daemon does not answer yet."""
        r = run_quiet([self.musterctl, "status", "--json", "--socket", self.socket])
        if r.returncode != 0:
            return None
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            return None
        return sum(1 for s in doc["services"] for i in s["instances"] if i["state"] == "running")

    poll_interval = MUSTER_POLL_INTERVAL

    def status_command(self):
        # `musterctl --socket S status` is refused (exit 2: --socket before the verb is parsed as
        # the default `shell` subcommand's option), so the option goes after the verb.
        return f"{self.musterctl} status --socket {self.socket}"

    def cli_start_command(self):
        # The CLI's own start and exit, no daemon asked: what every status call pays first.
        return f"{self.musterctl} --version"

    def cli_binary(self):
        return self.musterctl

    def breakdown(self, launched_wall):
        """From the daemon's journal (state_dir/events.log, wall-clock stamps in µs): when it
        was ready to start services, and when it reported the first and last 'started'."""
        path = os.path.join(self.state_dir, "events.log")
        started, ready = [], None
        try:
            with open(path) as f:
                for line in f:
                    event = json.loads(line)
                    if event["kind"] == "daemon-started" and ready is None:
                        ready = event["time"]
                    elif event["kind"] == "started":
                        started.append(event["time"])
        except FileNotFoundError:
            return {}
        if not started:
            return {}
        out = {"first_started": min(started) - launched_wall, "last_started": max(started) - launched_wall,
               "started_events": len(started)}
        # With start_seconds = 0 an instance is running the moment it has started.
        out["last_running"] = out["last_started"]
        if ready is not None:
            out["daemon_started"] = ready - launched_wall
        return out

    def finish(self, daemon):
        r = run_quiet(daemon.shutdown_argv)
        if r.returncode != 0:
            raise BenchError(f"musterctl shutdown failed ({r.returncode}): {r.stderr.strip()}")
        code = wait_gone(daemon)
        if code != 0:
            raise BenchError(f"musterd exited {code} after shutdown; log: {daemon.log_path}")


# --- supervisord -----------------------------------------------------------------------------

class Supervisord:
    name = "supervisord"
    instances = INSTANCES
    start_timeout = START_TIMEOUT
    poll_interval = 0.050

    def __init__(self, res):
        self.res = res

    def prepare(self):
        tmp = self.res.temp_dir("supervisord")
        os.makedirs(os.path.join(tmp, "childlogs"))
        self.config = os.path.join(tmp, "supervisord.conf")
        with open(self.config, "w") as f:
            # Everything private to this run: socket, pid file, logs.
            f.write(f"""[unix_http_server]
file={tmp}/supervisor.sock

[supervisord]
logfile={tmp}/supervisord.log
pidfile={tmp}/supervisord.pid
childlogdir={tmp}/childlogs
nodaemon=true
minfds={self.minfds()}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{tmp}/supervisor.sock
{self.programs()}""")
        self.tmp = tmp
        daemon = Daemon("supervisord", ["supervisord", "-n", "-c", self.config], os.path.join(tmp, "stdout.log"),
                        ["supervisorctl", "-c", self.config, "shutdown"])
        return daemon

    def minfds(self):
        # 200 children with three pipes and two log files each need more than the default 1024.
        return 4096

    def programs(self):
        return self.program("sleep", self.instances)

    @staticmethod
    def program(name, numprocs):
        return f"""
[program:{name}]
command={" ".join(SLEEP_ARGV)}
numprocs={numprocs}
process_name=%(program_name)s_%(process_num)d
startsecs=0
autostart=true
"""

    # What the programs' process names start with in `supervisorctl status` ("sleep:sleep_0").
    program_prefix = "sleep:"
    status_timeout = 30

    def count_running(self):
        r = run_quiet(["supervisorctl", "-c", self.config, "status"], timeout=self.status_timeout)
        lines = [l.split() for l in r.stdout.splitlines()]
        if not any(len(l) >= 2 and l[0].startswith(self.program_prefix) for l in lines):
            return None
        return sum(1 for l in lines if len(l) >= 2 and l[1] == "RUNNING")

    def status_command(self):
        return f"supervisorctl -c {self.config} status"

    def cli_start_command(self):
        # supervisorctl has no --version; -h starts the interpreter, parses, prints and exits.
        return "supervisorctl -h"

    def cli_binary(self):
        return shutil.which("supervisorctl") or "/usr/bin/supervisorctl"

    def breakdown(self, launched_wall):
        """From supervisord.log (millisecond stamps): first 'spawned:', last 'entered RUNNING'."""
        import datetime
        spawned, running = [], []
        try:
            with open(os.path.join(self.tmp, "supervisord.log")) as f:
                for line in f:
                    parts = line.split(" ", 3)
                    if len(parts) < 4:
                        continue
                    try:
                        stamp = datetime.datetime.strptime(parts[0] + " " + parts[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    except ValueError:
                        continue
                    if parts[3].startswith("spawned:"):
                        spawned.append(stamp)
                    elif "entered RUNNING state" in parts[3]:
                        running.append(stamp)
        except FileNotFoundError:
            return {}
        out = {}
        if spawned:
            out["first_started"] = min(spawned) - launched_wall
            out["last_started"] = max(spawned) - launched_wall
            out["started_events"] = len(spawned)
        if running:
            out["last_running"] = max(running) - launched_wall
        return out

    def finish(self, daemon):
        r = run_quiet(daemon.shutdown_argv)
        if r.returncode != 0:
            raise BenchError(f"supervisorctl shutdown failed ({r.returncode}): {r.stdout.strip()} {r.stderr.strip()}")
        code = wait_gone(daemon)
        if code != 0:
            raise BenchError(f"supervisord exited {code} after shutdown; log: {daemon.log_path}")


# --- one daemon's measurements ---------------------------------------------------------------

def launch_until_running(res, target):
    """Launches the daemon and polls its status until every instance runs. Returns the daemon
    (still running) and the figures of this launch."""
    daemon = target.prepare()
    res.processes.append(daemon)
    t0 = time.monotonic()
    wall0 = time.time()
    daemon.launch()
    polls = 0
    answered = None
    while True:
        if not daemon.alive():
            raise BenchError(f"{daemon.name} exited with {daemon.proc.returncode} before all instances ran; "
                             f"log: {daemon.log_path}")
        running = target.count_running()
        now = time.monotonic()
        polls += 1
        if running is not None and answered is None:
            answered = now - t0
        if running is not None and running >= target.instances:
            break
        if now - t0 > target.start_timeout:
            raise BenchError(f"{daemon.name}: only {running} of {target.instances} running after {target.start_timeout:.0f} s")
        if target.poll_interval:
            time.sleep(target.poll_interval)
    figures = {"all_running": now - t0, "first_answer": answered, "polls": polls}
    figures.update(target.breakdown(wall0))
    # The daemons' own logs say when the last instance reached running, to the millisecond, without
    # the lag of the polling loop (a supervisorctl call alone takes ~150 ms): that is the figure
    # compared. The polled time stays in the details.
    figures["all_running_polled"] = figures["all_running"]
    if "last_running" in figures:
        figures["all_running"] = figures["last_running"]
    daemon.record_children()
    return daemon, figures


def stop_daemon(res, target, daemon):
    target.finish(daemon)
    daemon.stop()   # nothing left to shut down; kills any leftover child
    res.processes.remove(daemon)


def measure(res, target):
    log(f"== {target.name}")
    launches = []
    for run in range(START_RUNS):
        daemon, figures = launch_until_running(res, target)
        launches.append(figures)
        log(f"   launch {run + 1}/{START_RUNS}: all {INSTANCES} running after {figures['all_running'] * 1000:.0f} ms "
            f"({figures['polls']} polls)")
        if run < START_RUNS - 1:
            stop_daemon(res, target, daemon)
            cleanup_between(res, target)
    time.sleep(1.0)   # let start-up work (log writes, cleanup tasks) settle
    result = {"launches": launches,
              "all_running": statistics.median(l["all_running"] for l in launches),
              "rss_kib_after_start": memory_kib(daemon.pid, "VmRSS"),
              "threads": thread_count(daemon.pid),
              "children": len(daemon.children)}
    log(f"   status latency: hyperfine on `{target.status_command()}`")
    result["status"] = hyperfine(target.name, target.status_command(), target.tmp)
    log(f"   CLI start alone: hyperfine on `{target.cli_start_command()}`")
    result["cli_start"] = hyperfine(target.name + "-cli", target.cli_start_command(), target.tmp)
    result["cli_bytes"] = os.path.getsize(target.cli_binary())
    result["rss_kib"] = memory_kib(daemon.pid, "VmRSS")
    time.sleep(2.0)
    log(f"   idle CPU over {IDLE_SECONDS:g} s")
    result["idle"] = idle_cpu(daemon, IDLE_SECONDS)
    result["rss_kib_after_idle"] = memory_kib(daemon.pid, "VmRSS")
    stop_daemon(res, target, daemon)
    cleanup_between(res, target)
    return result


def cleanup_between(res, target):
    """After a launch, removes its temp folder and (for Muster) its cgroup root right away."""
    if getattr(target, "cgroup_root", None) in res.cgroup_roots:
        remove_cgroup_root(target.cgroup_root)
        res.cgroup_roots.remove(target.cgroup_root)
    if target.tmp in res.temp_dirs:
        for name in ("musterd.log", "supervisord.log", "state/events.log"):
            keep(os.path.join(target.tmp, name), f"{target.name}-{os.path.basename(name)}")
        shutil.rmtree(target.tmp, ignore_errors=True)
        res.temp_dirs.remove(target.tmp)


# --- the floor: scripts/bench/forkcost.c --------------------------------------------------------

def forkcost(res, n, runs=3):
    """The kernel's floor for n spawns the way Muster's shim makes them (forkcost mode d: a
    vfork-style clone, a fresh cgroup2 leaf each, setsid, execve of sleep): each of `runs` times
    in seconds; None where it cannot run (no gcc, or no hybrid cgroup2 mount at /sys/fs/cgroup/unified)."""
    if shutil.which("gcc") is None or not os.path.isdir("/sys/fs/cgroup/unified"):
        return None
    tmp = res.temp_dir("forkcost")
    binary = os.path.join(tmp, "forkcost")
    built = run_quiet(["gcc", "-O2", "-o", binary, os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkcost.c")], timeout=120)
    if built.returncode != 0:
        log(f"   forkcost: gcc failed: {built.stderr.strip()[:200]}")
        return None
    times = []
    for _ in range(runs):
        r = run_quiet([binary, "d", str(n), "30"], timeout=120)
        # "mode d, ballast 30 MiB: 200 spawns in 104.9 ms = 0.52 ms each"
        if r.returncode != 0 or " spawns in " not in r.stdout:
            log(f"   forkcost: {r.stdout.strip()} {r.stderr.strip()}")
            return None
        times.append(float(r.stdout.split(" spawns in ")[1].split(" ms")[0]) / 1000)
    return times


# --- report ----------------------------------------------------------------------------------

def report(m, s, floor=None):
    def ms(x):
        return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.2f} s"

    def mib(k):
        return f"{k / 1024:.1f} MiB"

    start_ratio = s["all_running"] / m["all_running"]
    rss_ratio = s["rss_kib"] / m["rss_kib"]
    status_ratio = s["status"]["median"] / m["status"]["median"]
    idle_ratio = (s["idle"]["percent"] / m["idle"]["percent"]) if m["idle"]["percent"] > 0 \
        else (float("inf") if s["idle"]["percent"] > 0 else float("nan"))
    # Muster's spawning alone: its log's first to last `started`, against forkcost's 200 spawns.
    spans = [l["last_started"] - l["first_started"] for l in m["launches"] if "first_started" in l]
    span = statistics.median(spans) if spans else None
    spawn_ratio = span / floor if span and floor else None
    met = {
        "start": start_ratio >= 20,
        "spawn": spawn_ratio is not None and spawn_ratio <= 1.3,
        "rss": m["rss_kib"] <= s["rss_kib"],
        "status": status_ratio >= 20,
        "idle": m["idle"]["percent"] < 0.1,
    }
    rows = [
        ("all running", ms(m["all_running"]), ms(s["all_running"]), f"{start_ratio:.1f}x", "start"),
        ("spawn span / forkcost", ms(span) if span else "-", ms(floor) if floor else "-",
         f"{spawn_ratio:.2f}x" if spawn_ratio else "-", "spawn"),
        ("daemon RSS", mib(m["rss_kib"]), mib(s["rss_kib"]), f"{rss_ratio:.2f}x", "rss"),
        ("status (median)", ms(m["status"]["median"]), ms(s["status"]["median"]), f"{status_ratio:.1f}x", "status"),
        (f"idle CPU ({m['idle']['seconds']:.0f} s)", f"{m['idle']['percent']:.3f}%", f"{s['idle']['percent']:.3f}%",
         "-" if idle_ratio != idle_ratio else "inf" if idle_ratio == float("inf") else f"{idle_ratio:.1f}x", "idle"),
    ]
    lines = [f"spawn benchmark: {INSTANCES} x `{' '.join(SLEEP_ARGV)}`, {os.cpu_count()} CPUs, "
             f"start = median of {START_RUNS} launch(es)", ""]
    header = ("", "muster", "supervisord", "sup/muster", "target")
    table = [header] + [(r[0], r[1], r[2], r[3], f"{TARGETS[r[4]]}: {'MET' if met[r[4]] else 'MISSED'}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        lines.append("  ".join(row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(4))
                     + "  " + row[4])
    lines.append("")
    for label, r in (("muster", m), ("supervisord", s)):
        each = ", ".join(f"{l['all_running'] * 1000:.0f}" for l in r["launches"])
        detail = [f"launches {each} ms"]
        first = r["launches"][-1]
        if "first_started" in first:
            detail.append(f"last launch: first child started {first['first_started'] * 1000:.0f} ms, "
                          f"last {first['last_started'] * 1000:.0f} ms after launch (daemon's log)")
        if first.get("first_answer") is not None:
            detail.append(f"status first answered {first['first_answer'] * 1000:.0f} ms after launch")
        detail.append(f"RSS {mib(r['rss_kib_after_start'])} right after start, {mib(r['rss_kib_after_idle'])} after idle")
        detail.append(f"status mean {ms(r['status']['mean'])} +- {ms(r['status']['stddev'])}")
        detail.append(f"CLI start alone {ms(r['cli_start']['median'])} ({r['cli_start']['median'] / r['status']['median'] * 100:.0f}% of a status), "
                      f"CLI file {r['cli_bytes'] / 1e6:.1f} MB")
        detail.append(f"idle {r['idle']['ticks']} ticks; schedstat {r['idle']['schedstat_percent']:.4f}%")
        detail.append(f"{r['threads']} threads")
        lines.append(f"{label}: " + "; ".join(detail))
    lines.append("")
    lines.append(f"targets met: {sum(met.values())} of {len(met)}"
                 + ("" if all(met.values()) else " (missed: " + ", ".join(TARGETS[k] for k, v in met.items() if not v) + ")"))
    lines.append("spawn span: Muster's first to last `started` (its log), against forkcost.c mode d "
                 "(vfork-style clone into a fresh cgroup2 leaf, setsid, execve; the supervisord column), muster/forkcost")
    return "\n".join(lines), {"ratios": {"start": start_ratio, "rss": rss_ratio, "status": status_ratio,
                                         "idle": idle_ratio, "spawn": spawn_ratio}, "met": met}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="folder with release musterd and musterctl")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/bench/spawn: run as root (musterd creates cgroups)")

    raise_interrupted_on_signals()

    res = Resources("bench-spawn")
    try:
        # Warm the page cache for both, so neither pays for a cold first exec.
        for argv in ([os.path.join(args.bin_dir, "musterd"), "--version"],
                     [os.path.join(args.bin_dir, "musterctl"), "--version"],
                     ["supervisord", "--version"], ["supervisorctl", "--help"]):
            run_quiet(argv)
        version = run_quiet(["supervisord", "--version"]).stdout.strip()
        log(f"supervisord {version}; musterd from {args.bin_dir}; {INSTANCES} instances; "
            f"idle window {IDLE_SECONDS:g} s; {START_RUNS} launch(es) each")
        busy0 = machine_busy(2.0) * 100   # in %
        log(f"machine busy before the run: {busy0:.0f}% of all {os.cpu_count()} CPUs")
        # The floor is taken right before Muster's launches and again after supervisord's, and
        # the median of both sets is the figure: once, minutes away from Muster's own, it drifted
        # with whatever else the machine did in between.
        log(f"== forkcost.c mode d, {INSTANCES} spawns (3 runs before the daemons, 3 after)")
        before = forkcost(res, INSTANCES)
        m = measure(res, Muster(res, args.bin_dir))
        s = measure(res, Supervisord(res))
        after = forkcost(res, INSTANCES) if before else None
        floor = statistics.median(before + after) if before and after else None
        text, summary = report(m, s, floor)
        if floor:
            text += (f"\nforkcost runs: before {', '.join(f'{t * 1000:.1f}' for t in before)} ms; "
                     f"after {', '.join(f'{t * 1000:.1f}' for t in after)} ms")
        summary["forkcost_seconds"] = floor
        summary["forkcost_runs"] = {"before": before, "after": after}
        busy1 = machine_busy(2.0) * 100
        text += f"\nother work on the machine: {busy0:.0f}% of all CPUs busy before the run, {busy1:.0f}% after"
        if max(busy0, busy1) > 10:
            text += " (figures are slower and noisier than on an idle machine)"
        summary["machine_busy_percent"] = [busy0, busy1]
        print(text, flush=True)
        if RESULTS_DIR:
            os.makedirs(RESULTS_DIR, exist_ok=True)
            with open(os.path.join(RESULTS_DIR, "results.json"), "w") as f:
                json.dump({"instances": INSTANCES, "idle_seconds": IDLE_SECONDS, "start_runs": START_RUNS,
                           "supervisord_version": version, "muster": m, "supervisord": s, **summary}, f, indent=2)
            with open(os.path.join(RESULTS_DIR, "summary.txt"), "w") as f:
                f.write(text + "\n")
        return 0
    except Interrupted as why:
        log(f"scripts/bench/spawn: interrupted ({why}); cleaning up")
        return 130
    except BenchError as error:
        log(f"scripts/bench/spawn: {error}")
        return 1
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
