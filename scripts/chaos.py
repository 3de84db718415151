#!/usr/bin/env python3
"""The fault suite's body; run it through scripts/chaos, which installs what it needs and builds
release binaries into .build-chaos. Each case starts its own musterd (own temp folder, own cgroup
root, own ports) with real services behind the http proxy, puts steady load on the proxy, injects
faults, and reports the load held, the faults injected, and what was lost:

  1 kill      kill -9 of a random instance every 500 ms; target: no failed request (retries and
              readiness), p99 before and during
  2 daemon    SIGKILL of musterd mid-load, then a restart: no orphaned process, every service back
              at its saved count (one scaled with `musterctl scale` away from its manifest),
              requests lost while the daemon was down (reported; the proxy lives in musterd)
  2b socket   the same with the listener held by systemd-socket-activate (as a .socket unit holds
              it) and musterd restarted under it: no connection refused
  3 limits    a fork bomb held at pids_max, a memory hog OOM-killed in its own cgroup (event
              oom-killed) and restarted with backoff, a CPU spinner held at cpu_max; a neighbour
              service's p99 stays within 2x its baseline through all three
  4 disk      log_dir on a tiny tmpfs, filled: supervision and the proxy go on, the write error is
              reported once per file, nothing crashes, logging resumes when space returns
  5 control   reloads in a row and musterctl status calls in parallel, under load: no failed
              request, no fd or RSS growth in musterd
  6 flood     10,000 concurrent client connections against max_connections = 1,000: the rest get
              503 or a close, musterd answers status, a neighbour service still serves
  7 churn     a reload storm (1,000 reloads), a scale storm (0 <-> 50, 200 times), a connection
              storm (1 million short connections through the proxy) and a log flood (100 MB
              through one instance): musterd's RSS after each, minus before it, at most 1 MiB

The load is a paced generator (N keep-alive clients in threads, each sending at a fixed rate over
raw sockets), which records every request: a non-2xx/3xx answer, a refused connect, a reset, a
close before the answer and a timeout (5 s) are each counted as one failed request.

--short runs every case with short phases (whole run under ~3 minutes, for CI); the default runs
the long versions. Prints a table (case, load, faults, lost, p99 before and during, verdict) and
the details; exits 1 when any case misses its target. Everything it starts (each musterd and its
instances, the socket holder, tmpfs mounts, temp folders, cgroup roots) is removed on exit,
failure, Ctrl-C and SIGTERM. Loopback only.
"""
import argparse
import collections
import datetime
import json
import os
import platform
import random
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.dont_write_bytecode = True        # no __pycache__ left in the work tree
sys.path.insert(0, os.path.join(HERE, "bench"))
import benchlib  # noqa: E402
from benchlib import (BenchError, HTTPClient, Interrupted, Process, ignore_signals, log, port_free,  # noqa: E402
                      proc_stat, raise_interrupted_on_signals, read_events, run_quiet, wait_until)

PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"

# Phase lengths (seconds) and sizes, per mode.
MODES = {
    "long": {"before": 5, "kill": 30, "after": 5, "daemon_down": 1.0, "limits_phase": 10,
             "disk_phase": 8, "reloads": 100, "status_workers": 20, "status_each": 50,
             "flood": 10000, "max_connections": 1000, "flood_timeout": 90,
             "churn_reloads": 1000, "churn_scales": 200, "churn_connections": 1_000_000, "churn_log_mb": 100},
    "short": {"before": 3, "kill": 5, "after": 3, "daemon_down": 1.0, "limits_phase": 4,
              "disk_phase": 4, "reloads": 20, "status_workers": 10, "status_each": 20,
              "flood": 2000, "max_connections": 200, "flood_timeout": 45,
              "churn_reloads": 100, "churn_scales": 20, "churn_connections": 20_000, "churn_log_mb": 10},
}
# Case 5: what musterd's RSS may grow by over the storm. The event ring (1,000 entries of a few
# hundred bytes) may still be filling; anything else that grows with each reload or status call is
# a leak. Measured after a warm-up storm of the same size, so one-time allocations are in the baseline.
RSS_SLACK_KB = 256
# Case 7: what musterd's RSS may grow by over each storm (issue 19: 1 MiB).
CHURN_SLACK_KB = 1024
CLIENTS = 8          # load generator clients
RATE = 400           # requests per second over all clients


# --- helper programs the services run (written into each case's folder) ------------------------

CHATTER = """import sys, time
n = 0
while True:
    n += 1
    print(f"line {n} " + "x" * 100, flush=True)
    time.sleep(0.02)
"""

# Case 7's connection storm: COUNT connections one after another, each GET / with Connection:
# close, read to the end. Prints {"ok": n, "failed": {kind: n}} as JSON.
STORMER = """import json, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
request = b"GET / HTTP/1.1\\r\\nHost: chaos\\r\\nConnection: close\\r\\n\\r\\n"
ok, failed = 0, {}
for _ in range(count):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        kind = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/1.1 ") else "no answer"
    except OSError as error:
        kind = type(error).__name__
    if kind == "200":
        ok += 1
    else:
        failed[kind] = failed.get(kind, 0) + 1
print(json.dumps({"ok": ok, "failed": failed}))
"""

# Case 7's log flood: MB megabytes of 100-byte lines on stdout as fast as the pipe takes them,
# then a marker line, then quiet.
FLOODER = """import sys, time
mb = int(sys.argv[1])
line = b"x" * 99 + b"\\n"
block = line * 10486
out = sys.stdout.buffer
for _ in range(mb):
    out.write(block)
out.write(b"FLOOD-DONE\\n")
out.flush()
while True:
    time.sleep(60)
"""

WORKER = """import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
"""

# The web backend: HTTP/1.1 keep-alive on 127.0.0.1:$PORT. GET / answers "instance N";
# /slow?ms=N waits N ms first; /healthz answers 200. TCP_NODELAY (disable_nagle_algorithm): the
# head and the body go out as two writes, and with Nagle on, the body would wait for the client's
# delayed ACK (40 ms). SIGTERM: stop accepting, finish in-flight requests, exit 0.
BACKEND_PY = """import os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

INSTANCE = os.environ.get("MUSTER_INSTANCE", "?")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["100"])[0]) / 1000)
        body = b"ok\\n" if url.path == "/healthz" else f"instance {INSTANCE}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
sys.exit(0)
"""

# Each process starts two more and waits for them: at pids_max the forks fail (bash retries them
# with its own back-off), and the tree stays as large as the limit lets it be.
FORKBOMB = """bomb() { bomb & bomb & wait; }
bomb
"""

# Lives a little longer than start_seconds, then allocates and touches 4 MiB every 20 ms until the
# kernel's OOM killer ends it (memory_max).
MEMHOG = """import sys, time
time.sleep(float(sys.argv[1]))
chunks = []
while True:
    block = bytearray(4 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    chunks.append(block)
    print(f"holding {len(chunks) * 4} MiB", flush=True)
    time.sleep(0.02)
"""

# Two processes spinning: they would take both cores if cpu_max let them.
SPINNER = """import os
os.fork()
while True:
    pass
"""


# --- processes, resources and cleanup ----------------------------------------------------------

def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    fields = proc_stat(pid)
    return fields is not None and fields[3] != "Z"


class Resources(benchlib.Resources):
    """What one case (or the whole run) created, so cleanup undoes exactly that: the shared
    cleanup, plus the cases' own scopes (cleaned first), tmpfs mounts, and the logs kept into the
    results folder. Signals are not ignored here: a case's scope is cleaned while the run goes on,
    and Ctrl-C must still stop it; main ignores them before the run's own cleanup."""

    def __init__(self, results_dir=None):
        super().__init__("muster-chaos", ignore_signals_in_cleanup=False)
        self.mounts = []
        self.children = []
        self.keep = []          # (src, dst) copied into the results folder before removal
        self.results_dir = results_dir

    def scope(self, label):
        child = Resources(os.path.join(self.results_dir, label) if self.results_dir else None)
        self.children.append(child)
        return child

    def temp_dir(self, label):
        path = super().temp_dir(label)
        os.chmod(path, 0o755)
        return path

    def before_processes(self):
        for child in self.children:
            child.cleanup()

    def before_temp_dirs(self):
        for path in reversed(self.mounts):
            r = run_quiet(["umount", path])
            if r.returncode != 0:
                run_quiet(["umount", "-l", path])
        if self.results_dir:
            for path in self.temp_dirs:
                try:
                    keep_logs(path, self.results_dir)
                except OSError as error:
                    log(f"cleanup: keeping logs of {path}: {error}")


def keep_logs(tmp, dest):
    os.makedirs(dest, exist_ok=True)
    for folder, dirs, files in os.walk(tmp):
        dirs[:] = [d for d in dirs if d not in ("run",)]
        for name in files:
            if name.endswith((".log", ".toml", ".json")) and not name.startswith("filler"):
                src = os.path.join(folder, name)
                rel = os.path.relpath(src, tmp)
                if os.path.getsize(src) > 20 << 20:
                    continue
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copy(src, os.path.join(dest, rel))


# --- HTTP: the control socket, one-off requests and the load -----------------------------------

def unix_get(path, url, timeout=5.0):
    """GET on musterd's control API over its socket; the parsed JSON, or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: muster\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        if b"transfer-encoding: chunked" in head.lower():
            body = dechunk(body)
        return json.loads(body)
    except (OSError, ValueError):
        return None


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def one_request(port, path="/", timeout=3.0):
    client = HTTPClient(port, timeout)
    try:
        return client.get(path, close=True)
    except (OSError, ValueError):
        return None
    finally:
        client.close()


def failure_kind(error):
    if isinstance(error, socket.timeout):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(error, ConnectionError):
        return "closed"
    return type(error).__name__


def percentile(sorted_values, q):
    # Not the nearest-rank percentile of autoscale.py: round() halves to even, so at 100, 300, 500...
    # values this takes one rank higher (the p99 of 100 values is the largest). The suite's verdicts
    # and docs/reliability.md's figures come from this rule; changing it is a change of its own.
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Load:
    """Paced load: `clients` keep-alive connections in threads, each sending one request every
    clients/rate seconds (and at once when it is behind). Every request is recorded as
    (sent, latency, None or why it failed); a failed one closes its connection."""

    def __init__(self, port, clients=CLIENTS, rate=RATE, path="/", timeout=5.0):
        self.port = port
        self.clients = clients
        self.interval = clients / rate
        self.rate = rate
        self.path = path
        self.timeout = timeout
        self.records = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)

    def client(self, i):
        conn = HTTPClient(self.port, self.timeout)
        next_at = self.t0 + self.interval * i / self.clients
        while not self.done.is_set():
            now = time.monotonic()
            if next_at > now and self.done.wait(next_at - now):
                break
            start = time.monotonic()
            why = None
            try:
                status = conn.get(self.path)
                if not 200 <= status < 400:
                    why = f"HTTP {status}"
            except (OSError, ValueError) as error:
                why = failure_kind(error)
                conn.close()
            end = time.monotonic()
            self.records.append((start, end - start, why))
            next_at += self.interval
            if next_at < end:
                next_at = end
        conn.close()

    def stats(self, t0=None, t1=None):
        t0 = self.t0 if t0 is None else t0
        t1 = time.monotonic() if t1 is None else t1
        records = [r for r in list(self.records) if t0 <= r[0] < t1]
        ok = sorted(r[1] for r in records if r[2] is None)
        why = collections.Counter(r[2] for r in records if r[2] is not None)
        span = max(1e-9, t1 - t0)
        return {"requests": len(records), "failed": sum(why.values()), "why": dict(why),
                "p50_ms": ms(percentile(ok, 50)), "p99_ms": ms(percentile(ok, 99)),
                "max_ms": ms(ok[-1] if ok else None), "rps": len(records) / span, "seconds": span,
                "held": len(records) / span / self.rate}


def ms(seconds):
    return None if seconds is None else seconds * 1000


# --- musterd -------------------------------------------------------------------------------------

class Muster:
    """One musterd for one case: its folder, config, manifests and cgroup root."""

    def __init__(self, res, bins, case, services, instance_ports, log_dir=None):
        self.res = res
        self.musterd = os.path.join(bins, "musterd")
        self.musterctl = os.path.join(bins, "musterctl")
        self.tmp = res.temp_dir(case)
        self.root = f"muster-chaos-{case}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        res.cgroup_roots.append(self.root)   # registered before musterd can create it
        self.socket = os.path.join(self.tmp, "run", "muster.sock")
        self.config = os.path.join(self.tmp, "musterd.toml")
        self.log_dir = log_dir or os.path.join(self.tmp, "log")
        self.state_dir = os.path.join(self.tmp, "state")
        self.log_path = os.path.join(self.tmp, "musterd.log")
        self.services_dir = os.path.join(self.tmp, "services.d")
        os.makedirs(self.services_dir)
        with open(self.config, "w") as f:
            f.write(f"""[daemon]
services_dir   = "services.d"
control_socket = "{self.socket}"
state_dir      = "{self.state_dir}"
log_dir        = "{self.log_dir}"
cgroup_root    = "{self.root}"
instance_ports = "{instance_ports[0]}-{instance_ports[1]}"
""")
        for name, text in (("backend.py", BACKEND_PY), ("chatter.py", CHATTER), ("worker.py", WORKER), ("forkbomb.sh", FORKBOMB),
                           ("stormer.py", STORMER), ("flooder.py", FLOODER),
                           ("memhog.py", MEMHOG), ("spinner.py", SPINNER)):
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(text)
        for name, text in services.items():
            self.write_manifest(name, text)
        self.process = None

    def write_manifest(self, name, text):
        path = os.path.join(self.services_dir, f"{name}.toml")
        with open(path + ".new", "w") as f:
            f.write(text.replace("@TMP@", self.tmp).replace("@PYTHON@", PYTHON))
        os.rename(path + ".new", path)

    def start(self, launcher=(), pass_fds=()):
        argv = list(launcher) + [self.musterd, "--config", self.config]
        self.process = self.res.start(Process(
            "musterd", argv, self.log_path, [self.musterctl, "shutdown", "--socket", self.socket],
            pass_fds=pass_fds, stop_timeout=60, exit_timeout=30))
        return self.process

    def ctl(self, *argv, timeout=60):
        return run_quiet([self.musterctl, *argv, "--socket", self.socket], timeout=timeout)

    def status(self):
        doc = unix_get(self.socket, "/v1/status")
        return None if doc is None else {s["name"]: s for s in doc.get("services", [])}

    def instances(self, service):
        doc = self.status() or {}
        return (doc.get(service) or {}).get("instances", [])

    def ready(self, service):
        return [i for i in self.instances(service) if i.get("ready") and i.get("pid")]

    def serving(self, counts):
        """True when each service has `counts[name]` instances running (and ready, for those
        whose value is ("ready", n))."""
        doc = self.status()
        if doc is None:
            return False
        for name, want in counts.items():
            s = doc.get(name)
            if s is None:
                return False
            live = [i for i in s["instances"] if i.get("pid") and i.get("state") == "running"]
            if isinstance(want, tuple):
                live = [i for i in live if i.get("ready")]
                want = want[1]
            if len(live) != want or s.get("desired") != want:
                return False
        return True

    def wait_serving(self, counts, timeout=60):
        try:
            return wait_until(lambda: self.serving(counts), timeout,
                              f"musterd serving {counts}")
        except BenchError as error:
            raise BenchError(f"{error}; musterd log:\n{self.log_tail()}")

    def events(self):
        return read_events(os.path.join(self.state_dir, "events.log"))

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=25):
        return "".join(self.log_text().splitlines(True)[-lines:])

    def pid(self):
        return self.process.pid if self.process and self.process.alive() else None

    def shutdown(self):
        if self.process is not None:
            self.process.stop()

    def crashed(self):
        """musterd's own exit, when it died on its own (not by this suite's SIGKILL)."""
        return None if self.process is None or self.process.alive() else self.process.proc.returncode


def rss_kb(pid):
    """VmRSS, or None once the process is gone."""
    try:
        return benchlib.status_kib(pid).get("VmRSS")
    except OSError:
        return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def tcp_sockets():
    """inode -> (local port, remote port, state) of every TCP socket on the host."""
    table = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            table[parts[9]] = (int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16), parts[3])
    return table


def fd_kinds(pid, instance_ports):
    """musterd's open fds by kind. TCP connections to instance ports are the proxy's keep-alive
    pools and the health probes: their number follows the load (bounded by the requests in
    flight), so they are counted apart from the rest."""
    tcp = tcp_sockets()
    kinds = collections.Counter()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return kinds
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            entry = tcp.get(target[8:-1])
            if entry is None:
                kinds["unix socket"] += 1
            elif entry[2] == "0A":
                kinds["tcp listener"] += 1
            elif instance_ports[0] <= entry[1] <= instance_ports[1]:
                kinds["tcp to instances"] += 1
            else:
                kinds["tcp from clients"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target.split(":", 1)[1].strip("[]")] += 1
        elif target.startswith("/sys/fs/cgroup"):
            kinds["cgroup file"] += 1
        else:
            kinds["file"] += 1
    return kinds


def steady_fds(pid, instance_ports, samples=10):
    """The sample (of `samples`, 100 ms apart) with the fewest fds besides the instance
    connections, so that a probe or a musterctl connection caught in passing is not counted."""
    best = None
    for _ in range(samples):
        kinds = fd_kinds(pid, instance_ports)
        key = sum(kinds.values()) - kinds.get("tcp to instances", 0)
        if best is None or key < best[0]:
            best = (key, kinds)
        time.sleep(0.1)
    return best


def in_cgroup_root(pid, root):
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return root in f.read()
    except OSError:
        return False


def cgroup_dirs(hierarchy, root):
    base = os.path.join("/sys/fs/cgroup", hierarchy, root) if hierarchy else None
    if base is None or not os.path.isdir(base):
        return []
    return [folder for folder, _, files in os.walk(base)]


def cgroup_procs_under(path):
    pids = []
    for folder, _, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(folder, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
    return pids


def unified_root(root):
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        path = os.path.join(base, root)
        if os.path.isdir(path):
            return path
    return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# --- results -------------------------------------------------------------------------------------

class Result:
    def __init__(self, case, title):
        self.case = case
        self.title = title
        self.load = "-"
        self.faults = "-"
        self.lost = "-"
        self.p99_before = None
        self.p99_during = None
        self.misses = []        # targets missed
        self.notes = []         # the details
        self.error = None

    def miss(self, text):
        self.misses.append(text)

    def note(self, text):
        self.notes.append(text)
        log(f"  case {self.case}: {text}")

    @property
    def verdict(self):
        if self.error:
            return "ERROR"
        return "PASS" if not self.misses else "FAIL"


def fmt_ms(value):
    return "-" if value is None else (f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms")


def load_text(stats, seconds):
    return f"{RATE}/s x {seconds:.0f} s ({stats['held'] * 100:.0f}%)"


def lost_text(stats):
    why = ", ".join(f"{k} {v}" for k, v in sorted(stats["why"].items()))
    return f"{stats['failed']}/{stats['requests']}" + (f" ({why})" if why else "")


def table(results):
    header = ["case", "load (held)", "faults", "lost", "p99 before", "p99 during", "verdict"]
    rows = [[f"{r.case} {r.title}", r.load, r.faults, r.lost, fmt_ms(r.p99_before), fmt_ms(r.p99_during), r.verdict]
            for r in results]
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


# --- manifests -----------------------------------------------------------------------------------

def web_manifest(port, instances, extra_proxy="", extra="", path="/healthz", interval="100ms"):
    return f"""command = ["@PYTHON@", "-S", "@TMP@/backend.py"]
instances = {instances}
environment = {{ PYTHONUNBUFFERED = "1" }}

[restart]
start_seconds = 0
backoff_min = "100ms"
backoff_max = "1s"

[stop]
timeout = "3s"

[health]
check = "http"
path = "{path}"
interval = "{interval}"
timeout = "500ms"
rise = 1
fall = 2

[proxy]
listen = ["127.0.0.1:{port}"]
protocol = "http"
retries = 3
connect_timeout = "250ms"
queue_timeout = "10s"
drain_timeout = "2s"
{extra_proxy}
{extra}"""


# --- the cases -----------------------------------------------------------------------------------

class Run:
    def __init__(self, args, res):
        self.args = args
        self.res = res
        self.mode = MODES["short" if args.short else "long"]
        self.bins = args.bin_dir
        self.base = args.base_port
        self.path = f"/slow?ms={args.slow_ms}"

    def ports(self, case):
        """Case k: proxy listeners at base+10k .. +9, instance ports base+1000+100k .. +99."""
        proxies = list(range(self.base + 10 * case, self.base + 10 * case + 10))
        instances = (self.base + 1000 + 100 * case, self.base + 1000 + 100 * case + 99)
        return proxies, instances


def phase(load, seconds):
    t0 = time.monotonic()
    time.sleep(seconds)
    return load.stats(t0, time.monotonic())


def case_kill(run, res, r):
    m = run.mode
    (port, *_), iports = run.ports(1)
    muster = Muster(res, run.bins, "kill", {"web": web_manifest(port, 4)}, iports)
    muster.start()
    muster.wait_serving({"web": ("ready", 4)}, 60)
    load = Load(port, path=run.path).start()
    try:
        time.sleep(1)
        before = phase(load, m["before"])
        kills = 0
        t0 = time.monotonic()
        end = t0 + m["kill"]
        next_at = t0
        while time.monotonic() < end:
            candidates = [i for i in muster.instances("web") if i.get("pid") and i.get("state") in ("running", "starting")]
            if candidates:
                victim = random.choice(candidates)
                if in_cgroup_root(victim["pid"], muster.root):
                    try:
                        os.kill(victim["pid"], signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
            next_at += 0.5
            time.sleep(max(0.0, next_at - time.monotonic()))
        t1 = time.monotonic()
        during = load.stats(t0, t1)
        back = wait_until(lambda: len(muster.ready("web")) == 4, 30)
        t_back = time.monotonic() - t1
        after = phase(load, m["after"])
    finally:
        load.stop()
    total = load.stats()
    r.load = load_text(total, total["seconds"])
    r.faults = f"{kills} x kill -9 in {m['kill']} s"
    r.lost = lost_text(total)
    r.p99_before, r.p99_during = before["p99_ms"], during["p99_ms"]
    restarts = sum(i.get("restarts", 0) for i in muster.instances("web"))
    r.note(f"kill -9 every 500 ms for {m['kill']} s: {kills} kills, {restarts} restarts of web's 4 slots; "
           f"during: {during['requests']} requests, {during['failed']} failed, p50 {fmt_ms(during['p50_ms'])}, "
           f"p99 {fmt_ms(during['p99_ms'])}, max {fmt_ms(during['max_ms'])}; "
           f"all 4 ready again {t_back:.1f} s after the last kill" if back else "not all 4 ready again within 30 s")
    r.note(f"before: p99 {fmt_ms(before['p99_ms'])}; after: p99 {fmt_ms(after['p99_ms'])}, {after['failed']} failed")
    if total["failed"]:
        r.miss(f"{total['failed']} failed requests ({total['why']})")
    if not back:
        r.miss("web not back at 4 ready instances within 30 s of the last kill")
    if kills == 0:
        r.miss("no instance was killed")
    if muster.crashed() is not None:
        r.miss(f"musterd exited ({muster.crashed()})")
    muster.shutdown()


def orphans(muster, markers):
    """Processes of the case's services (found by their command line, which names the case's
    folder) that are not in the daemon's status, and processes in its cgroup tree that are not."""
    doc = muster.status() or {}
    known = {i["pid"] for s in doc.values() for i in s["instances"] if i.get("pid")}
    stray = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        line = cmdline(pid)
        if any(mark in line for mark in markers) and pid not in known and alive(pid):
            stray.append((pid, line.strip()))
    tree = unified_root(muster.root)
    in_tree = [p for p in (cgroup_procs_under(tree) if tree else []) if p not in known]
    # A process in the tree may be an instance's child; none of these services fork.
    return stray, in_tree, known


def case_daemon(run, res, r, socket_held=False):
    m = run.mode
    (port, *_), iports = run.ports(2 if not socket_held else 3)
    services = {
        "web": web_manifest(port, 2),
        "worker": """command = ["@PYTHON@", "-S", "@TMP@/worker.py"]
instances = 2
[restart]
start_seconds = 0
[stop]
timeout = "3s"
""",
    }
    muster = Muster(res, run.bins, "daemon" if not socket_held else "socket", services, iports)
    markers = [os.path.join(muster.tmp, "backend.py"), os.path.join(muster.tmp, "worker.py")]
    holder = None
    stopfile = os.path.join(muster.tmp, "stop-loop")
    if socket_held:
        # systemd-socket-activate binds the port and execs the shell, which keeps the socket (fd 3)
        # and runs musterd again whenever it dies, as systemd's Restart=always would; each musterd
        # gets LISTEN_PID = its own pid, so sd_listen_fds accepts fd 3.
        loop = ('while :; do sh -c \'export LISTEN_PID=$$; exec "$@"\' sh "$@"; '
                f'[ -e {stopfile} ] && exit 0; sleep {m["daemon_down"]}; done')
        launcher = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=web", "/bin/sh", "-c", loop, "sh"]
        holder = muster.start(launcher)
        # Stopping it: first the loop's stop file, so that it does not start musterd again.
        holder.stop_argv = ["/bin/sh", "-c", f'touch {stopfile}; exec "$@"', "sh", *holder.stop_argv]

        def musterd_pid():
            kids = children_of(holder.pid)
            inner = [c for c in kids if "musterd" in cmdline(c)]
            return inner[0] if inner else None
        # systemd-socket-activate starts its program at the first connection.
        wait_until(lambda: one_request(port, timeout=1.0) is not None or musterd_pid(), 20,
                   "systemd-socket-activate starting musterd")
    else:
        muster.start()

        def musterd_pid():
            return muster.pid()
    muster.wait_serving({"web": ("ready", 2), "worker": 2}, 60)
    r1 = muster.ctl("scale", "web", "3")
    if r1.returncode != 0:
        raise BenchError(f"musterctl scale web 3 failed: {r1.stderr or r1.stdout}")
    muster.wait_serving({"web": ("ready", 3), "worker": 2}, 30)
    load = Load(port, path=run.path).start()
    try:
        time.sleep(1)
        before = phase(load, m["before"])
        old = {i["pid"]: proc_stat(i["pid"])[22] for s in (muster.status() or {}).values()
               for i in s["instances"] if i.get("pid") and proc_stat(i["pid"])}
        victim = musterd_pid()
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        if not socket_held:
            muster.process.proc.wait()
        wait_until(lambda: not alive(victim), 10, "the killed musterd gone")
        left_running = sum(1 for pid, start in old.items() if (proc_stat(pid) or {}).get(22) == start)
        if socket_held:
            wait_until(lambda: musterd_pid() not in (None, victim), 30, "the loop restarting musterd")
            t_restart = time.monotonic()
        else:
            time.sleep(m["daemon_down"])
            t_restart = time.monotonic()
            muster.start()
        muster.wait_serving({"web": ("ready", 3), "worker": 2}, 60)
        t_back = time.monotonic()
        time.sleep(0.5)
        stray, in_tree, known = orphans(muster, markers)
        # (A killed instance is a zombie until init reaps it: not running, so not an orphan.)
        old_left = [pid for pid, start in old.items()
                    if (proc_stat(pid) or {}).get(22) == start and alive(pid) and pid not in known]
        t_after = time.monotonic()
        after = phase(load, m["after"])
    finally:
        load.stop()
    down = load.stats(t_kill, t_back)
    total = load.stats()
    stopped_events = [e for e in muster.events() if e.get("kind") == "orphan-stopped"]
    r.load = load_text(total, total["seconds"])
    r.faults = "SIGKILL musterd" + (", restarted by the socket holder" if socket_held else f", restart after {m['daemon_down']:g} s")
    r.lost = lost_text(total)
    r.p99_before, r.p99_during = before["p99_ms"], down["p99_ms"]
    r.note(f"{left_running} instance processes outlived the killed musterd; the new one stopped them "
           f"({len(stopped_events)} orphan-stopped events): orphans after the restart {len(stray)} "
           f"(by command line), {len(in_tree)} in the cgroup tree outside status, {len(old_left)} old pids left")
    r.note(f"back at saved counts (web 3 ready, scaled from the manifest's 2; worker 2) "
           f"{t_back - t_restart:.2f} s after musterd was started again, {t_back - t_kill:.2f} s after the kill")
    r.note(f"from the kill until back: {down['requests']} requests, {down['failed']} failed {down['why'] or ''}; "
           f"after: {after['failed']} failed of {after['requests']}")
    if stray or in_tree or old_left:
        r.miss(f"orphans: {stray[:5]} {in_tree[:5]} {old_left[:5]}")
    late = load.stats(t_after, time.monotonic())
    if late["failed"] or before["failed"]:
        r.miss(f"requests failed while musterd was up: before {before['failed']}, after {late['failed']}")
    if socket_held:
        refused = total["why"].get("refused", 0)
        r.note(f"the held socket: {refused} connects refused; "
               + ("socket-adopted events: %d" % sum(1 for e in muster.events() if e.get("kind") == "socket-adopted")))
        if refused:
            r.miss(f"{refused} connections refused with the socket held")
    return muster


def neighbour_phase(load, seconds, sample=None, every=0.25, probe=None, fast=None, name=None):
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        if sample:
            sample()
        time.sleep(every)
    if probe is not None:
        fast[name] = probe.stats(t0, time.monotonic())
    return load.stats(t0, time.monotonic())


def case_limits(run, res, r):
    m = run.mode
    (port, *_), iports = run.ports(4)
    services = {
        "web": web_manifest(port, 2),
        "bomb": """command = ["/bin/bash", "@TMP@/forkbomb.sh"]
instances = 0
[restart]
start_seconds = 0
[stop]
timeout = "1s"
[resources]
pids_max = 64
""",
        "hog": """command = ["@PYTHON@", "-S", "@TMP@/memhog.py", "0.6"]
instances = 0
[restart]
start_seconds = 0.5
backoff_min = "200ms"
backoff_max = "5s"
[resources]
memory_max = "64M"
""",
        "spin": """command = ["@PYTHON@", "-S", "@TMP@/spinner.py"]
instances = 0
[restart]
start_seconds = 0
[stop]
timeout = "1s"
[resources]
cpu_max = 0.5
""",
    }
    muster = Muster(res, run.bins, "limits", services, iports)
    muster.start()
    muster.wait_serving({"web": ("ready", 2)}, 60)
    load = Load(port, path=run.path).start()
    # A light probe of the trivial path (GET /, answered at once): shown, not judged.
    probe = Load(port, clients=2, rate=100, path="/").start()
    fast = {}
    phases = {}
    try:
        time.sleep(1)
        base = neighbour_phase(load, m["before"], probe=probe, fast=fast, name="baseline")
        phases["baseline"] = base

        # Fork bomb.
        pids_seen = {"max": 0, "limit": None, "refused": 0}

        def sample_bomb():
            for inst in muster.instances("bomb"):
                if not inst.get("pid"):
                    continue
                for folder in cgroup_dirs("pids", muster.root):
                    if "/bomb" in folder and os.path.exists(os.path.join(folder, "pids.current")):
                        cur = read_text(os.path.join(folder, "pids.current"))
                        lim = read_text(os.path.join(folder, "pids.max"))
                        ev = read_text(os.path.join(folder, "pids.events")) or ""
                        if cur and cur.isdigit():
                            pids_seen["max"] = max(pids_seen["max"], int(cur))
                        if lim and lim.isdigit():
                            pids_seen["limit"] = int(lim)
                        for line in ev.splitlines():
                            if line.startswith("max "):
                                pids_seen["refused"] = max(pids_seen["refused"], int(line.split()[1]))
        muster.ctl("scale", "bomb", "1")
        phases["fork bomb"] = neighbour_phase(load, m["limits_phase"], sample_bomb, probe=probe, fast=fast, name="fork bomb")
        sample_bomb()
        bomb_state = [i.get("state") for i in muster.instances("bomb")]
        muster.ctl("scale", "bomb", "0")
        wait_until(lambda: not any(i.get("pid") for i in muster.instances("bomb")), 20)

        # Memory hog.
        t_hog = time.time()
        muster.ctl("scale", "hog", "1")
        phases["memory hog"] = neighbour_phase(load, m["limits_phase"], probe=probe, fast=fast, name="memory hog")
        hog = muster.instances("hog")
        muster.ctl("scale", "hog", "0")
        wait_until(lambda: not any(i.get("pid") for i in muster.instances("hog")), 20)
        events = [e for e in muster.events() if e.get("service") == "hog" and e.get("time", 0) >= t_hog - 1]
        ooms = [e for e in events if e.get("kind") == "oom-killed"]
        backoffs = [e["message"] for e in events if e.get("kind") == "backoff"]
        ctl_ooms = 0
        for line in muster.ctl("events", "--json").stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("kind") == "oom-killed" and e.get("service") == "hog":
                ctl_ooms += 1

        # CPU spinner.
        muster.ctl("scale", "spin", "1")
        wait_until(lambda: any(i.get("pid") for i in muster.instances("spin")), 10)
        spin_group = next(i for i in muster.instances("spin") if i.get("pid"))["cgroup"]

        def spin_usage():
            # usage_usec of the instance's cgroup2 group (cpu.stat works there without the controller)
            text = read_text(os.path.join(spin_group or "", "cpu.stat")) or ""
            line = next((x for x in text.splitlines() if x.startswith("usage_usec ")), None)
            return (int(line.split()[1]) / 1e6 if line else 0.0), time.monotonic()
        time.sleep(0.5)
        cpu0 = spin_usage()
        phases["cpu spinner"] = neighbour_phase(load, m["limits_phase"], probe=probe, fast=fast, name="cpu spinner")
        cpu1 = spin_usage()
        spin_cores = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
        muster.ctl("scale", "spin", "0")
    finally:
        probe.stop()
        load.stop()
    total = load.stats()
    r.load = load_text(total, total["seconds"])
    r.faults = "fork bomb, memory hog, cpu spinner"
    r.lost = lost_text(total)
    r.p99_before = base["p99_ms"]
    worst = max((p for k, p in phases.items() if k != "baseline"), key=lambda s: s["p99_ms"] or 0)
    r.p99_during = worst["p99_ms"]
    r.note(f"neighbour web p99 (GET {run.path}): " + ", ".join(f"{k} {fmt_ms(s['p99_ms'])} ({s['failed']} failed)" for k, s in phases.items()))
    r.note("neighbour p99 of the trivial GET / (100/s probe, not judged): "
           + ", ".join(f"{k} {fmt_ms(s['p99_ms'])}" for k, s in fast.items()))
    for name, s in phases.items():
        if name != "baseline" and s["p99_ms"] is not None and base["p99_ms"] is not None and s["p99_ms"] > 2 * base["p99_ms"]:
            r.miss(f"neighbour p99 during the {name} {fmt_ms(s['p99_ms'])} > 2 x baseline {fmt_ms(base['p99_ms'])}")
    r.note(f"fork bomb: pids.current peaked at {pids_seen['max']} with pids.max {pids_seen['limit']}; "
           f"{pids_seen['refused']} forks refused (pids.events max); instance state {bomb_state}")
    if pids_seen["limit"] != 64 or pids_seen["max"] > 64 or pids_seen["max"] == 0:
        r.miss(f"fork bomb not held at pids_max 64 (peak {pids_seen['max']}, limit {pids_seen['limit']})")
    restarts = sum(i.get("restarts", 0) for i in hog)
    r.note(f"memory hog (memory_max 64M): {len(ooms)} oom-killed events ({ctl_ooms} in musterctl events), "
           f"{restarts} restarts, backoff: {'; '.join(backoffs[:6]) or 'none'}"
           + (f"; first: {ooms[0]['message']}" if ooms else ""))
    if not ooms or not ctl_ooms:
        r.miss("no oom-killed event for the memory hog")
    if restarts < 1:
        r.miss("the memory hog was not restarted")
    r.note(f"cpu spinner (2 processes, cpu_max 0.5): {spin_cores:.3f} cores used (cgroup cpu.stat)")
    if spin_cores > 0.5 * 1.05 or spin_cores == 0:
        r.miss(f"cpu spinner used {spin_cores:.2f} cores > cpu_max 0.5")
    if total["failed"] or probe.stats()["failed"]:
        r.miss(f"{total['failed'] + probe.stats()['failed']} failed requests on the neighbour")
    if muster.crashed() is not None:
        r.miss(f"musterd exited ({muster.crashed()})")
    muster.shutdown()


def case_disk(run, res, r):
    m = run.mode
    (port, *_), iports = run.ports(5)
    log_dir = res.temp_dir("disk-logs")
    r1 = run_quiet(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "chaos-logs", log_dir])
    if r1.returncode != 0:
        raise BenchError(f"mount -t tmpfs failed: {r1.stderr.strip()}")
    res.mounts.append(log_dir)
    services = {
        "web": web_manifest(port, 2),
        "chatter": """command = ["@PYTHON@", "-S", "@TMP@/chatter.py"]
[restart]
start_seconds = 0
[logs]
max_bytes = "10M"
""",
    }
    muster = Muster(res, run.bins, "disk", services, iports, log_dir=log_dir)
    muster.start()
    muster.wait_serving({"web": ("ready", 2), "chatter": 1}, 60)
    chat_log = os.path.join(log_dir, "chatter", "0.log")
    load = Load(port, path=run.path).start()
    try:
        time.sleep(1)
        before = phase(load, m["before"])
        # Fill the file system.
        filler = os.path.join(log_dir, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        t_full = time.monotonic()
        full_size = os.path.getsize(chat_log) if os.path.exists(chat_log) else 0
        time.sleep(1)
        status_ok = muster.ctl("status").returncode == 0
        # Supervision goes on: the service whose log cannot be written is killed, and restarted
        # (its start opens the file again). (web is not killed here: case 1 covers that.)
        chatter = next((i for i in muster.instances("chatter") if i.get("pid")), None)
        chatter_ok = False
        if chatter and in_cgroup_root(chatter["pid"], muster.root):
            os.kill(chatter["pid"], signal.SIGKILL)
            chatter_ok = bool(wait_until(lambda: any(i.get("pid") and i["pid"] != chatter["pid"] and i.get("state") == "running"
                                                     for i in muster.instances("chatter")), 15))
        time.sleep(max(0.0, m["disk_phase"] - (time.monotonic() - t_full)))
        t_free = time.monotonic()
        during = load.stats(t_full, t_free)
        grew_while_full = (os.path.getsize(chat_log) if os.path.exists(chat_log) else 0) - full_size
        os.unlink(filler)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]

        def resumed():
            try:
                with open(chat_log, errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                return False
            return any(line[:23] > stamp for line in lines[-20:])
        resumed_at = wait_until(resumed, 10)
        t_resumed = time.monotonic() - t_free
        phase(load, 2)
    finally:
        load.stop()
    total = load.stats()
    text = muster.log_text()
    reports = collections.Counter()
    recovered = collections.Counter()
    for line in text.splitlines():
        if "cannot write " in line:
            path = line.split("cannot write ", 1)[1].split(":", 1)[0]
            reports[path] += 1
        if "works again" in line and "writing " in line:
            recovered[line.split("writing ", 1)[1].split(" works again")[0]] += 1
    r.load = load_text(total, total["seconds"])
    r.faults = f"log tmpfs full {m['disk_phase']} s, kill -9 chatter"
    r.lost = lost_text(total)
    r.p99_before, r.p99_during = before["p99_ms"], during["p99_ms"]
    r.note(f"write errors reported in musterd's log: {dict(reports) or 'none'}; recoveries: {dict(recovered) or 'none'}")
    r.note(f"while full: chatter's log grew {grew_while_full} bytes; chatter killed (kill -9) and restarted: {chatter_ok}; "
           f"musterctl status answered: {status_ok}; {during['failed']} of {during['requests']} requests failed")
    r.note(f"after freeing: new lines in chatter/0.log after {t_resumed:.2f} s" if resumed_at else
           "after freeing: no new line in chatter/0.log within 10 s")
    if total["failed"]:
        r.miss(f"{total['failed']} failed requests")
    if not reports:
        r.miss("no write error reported")
    elif any(v != 1 for v in reports.values()):
        r.miss(f"write errors not reported once per file: {dict(reports)}")
    if not resumed_at:
        r.miss("logging did not resume")
    if not chatter_ok:
        r.miss("a killed instance was not replaced while the disk was full")
    if not status_ok:
        r.miss("musterctl status failed while the disk was full")
    if muster.crashed() is not None:
        r.miss(f"musterd exited ({muster.crashed()})")
    muster.shutdown()


def case_control(run, res, r):
    m = run.mode
    (port, *_), iports = run.ports(6)
    worker = """command = ["@PYTHON@", "-S", "@TMP@/worker.py"]
instances = {n}
[restart]
start_seconds = 0
[stop]
timeout = "2s"
"""
    muster = Muster(res, run.bins, "control", {"web": web_manifest(port, 3), "worker": worker.format(n=1)}, iports)
    muster.start()
    muster.wait_serving({"web": ("ready", 3), "worker": 1}, 60)
    pid = muster.pid()
    load = Load(port, path=run.path).start()
    failures = collections.Counter()
    lock = threading.Lock()

    def reloads(count):
        n = 1
        for k in range(count):
            n = 2 if n == 1 else 1     # each reload scales the worker 1 <-> 2
            muster.write_manifest("worker", worker.format(n=n))
            res1 = muster.ctl("reload")
            if res1.returncode != 0:
                with lock:
                    failures[f"reload exit {res1.returncode}: {(res1.stderr or res1.stdout).strip()[:120]}"] += 1
        return n

    def statuses(count):
        for _ in range(count):
            res1 = muster.ctl("status")
            if res1.returncode != 0:
                with lock:
                    failures[f"status exit {res1.returncode}: {(res1.stderr or res1.stdout).strip()[:120]}"] += 1

    def storm(n_reloads, workers, each):
        threads = [threading.Thread(target=statuses, args=(each,)) for _ in range(workers)]
        for t in threads:
            t.start()
        final = reloads(n_reloads)
        for t in threads:
            t.join()
        return final

    try:
        time.sleep(1)
        before = phase(load, m["before"])
        # A warm-up storm of the same size, so what musterd allocates once (pools, caches, the
        # allocator's arenas for that many threads) is in the baseline.
        storm(m["reloads"], m["status_workers"], m["status_each"])
        muster.wait_serving({"web": ("ready", 3), "worker": 1}, 30)
        time.sleep(2)
        rss0, fds0, (core0, kinds0) = rss_kb(pid), fd_count(pid), steady_fds(pid, iports)
        t0 = time.monotonic()
        final = storm(m["reloads"], m["status_workers"], m["status_each"])
        t1 = time.monotonic()
        during = load.stats(t0, t1)
        muster.wait_serving({"web": ("ready", 3), "worker": final}, 30)
        time.sleep(3)
        rss1, fds1, (core1, kinds1) = rss_kb(pid), fd_count(pid), steady_fds(pid, iports)
        after = phase(load, 2)
    finally:
        load.stop()
    total = load.stats()
    reloaded = sum(1 for e in muster.events() if e.get("kind") == "reloaded")
    r.load = load_text(total, total["seconds"])
    r.faults = f"{m['reloads']} reloads + {m['status_workers'] * m['status_each']} status in {t1 - t0:.0f} s"
    r.lost = lost_text(total)
    r.p99_before, r.p99_during = before["p99_ms"], during["p99_ms"]
    r.note(f"musterd RSS {rss0} kB -> {rss1} kB ({(rss1 - rss0):+d} kB); open fds {fds0} -> {fds1}, of which "
           f"not connections to instances {core0} -> {core1} (before and after the storm, each after the same "
           f"settle; a warm-up storm of the same size before)")
    r.note(f"fds before: {dict(sorted(kinds0.items()))}; after: {dict(sorted(kinds1.items()))}")
    r.note(f"{reloaded} reloaded events; musterctl failures: {dict(failures) or 'none'}; "
           f"requests during the storm {during['requests']}, failed {during['failed']}; after {after['failed']} failed")
    if total["failed"]:
        r.miss(f"{total['failed']} failed requests")
    if failures:
        r.miss(f"musterctl failures: {dict(failures)}")
    if core1 > core0:
        r.miss(f"fd growth {core0} -> {core1} (besides connections to instances): {dict(kinds0)} -> {dict(kinds1)}")
    if rss1 - rss0 > RSS_SLACK_KB:
        r.miss(f"RSS growth {rss0} -> {rss1} kB (+{rss1 - rss0} kB, {(rss1 - rss0) / m['reloads']:.1f} kB a reload; "
               f"allowed {RSS_SLACK_KB} kB)")
    if muster.crashed() is not None:
        r.miss(f"musterd exited ({muster.crashed()})")
    muster.shutdown()


def flood(port, count, timeout):
    """Opens `count` connections at once; on each, GET / (keep-alive). Returns the outcome per
    connection and the sockets answered 200, which stay open (the caller closes them)."""
    sel = selectors.DefaultSelector()
    outcome = collections.Counter()
    held = []
    request = b"GET / HTTP/1.1\r\nHost: chaos\r\n\r\n"
    pending = 0
    started = 0
    deadline = time.monotonic() + timeout
    state = {}

    def finish(sock, kind, keep=False):
        nonlocal pending
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        outcome[kind] += 1
        pending -= 1
        state.pop(sock, None)
        if keep:
            held.append(sock)
        else:
            sock.close()

    while (started < count or pending) and time.monotonic() < deadline:
        # Open in bursts of 500 between event-loop turns, as fast as the loop allows.
        burst = 0
        while started < count and burst < 500:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            started += 1
            burst += 1
            if err not in (0, 115):       # EINPROGRESS
                outcome[f"connect errno {err}"] += 1
                s.close()
                continue
            pending += 1
            state[s] = b""
            sel.register(s, selectors.EVENT_WRITE, "connect")
        for key, events in sel.select(timeout=0.05):
            s = key.fileobj
            if key.data == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(s, "refused" if err == 111 else f"connect errno {err}")
                    continue
                try:
                    s.send(request)
                except OSError:
                    finish(s, "reset before the request")
                    continue
                sel.modify(s, selectors.EVENT_READ, "read")
            else:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    finish(s, "reset")
                    continue
                except OSError:
                    finish(s, "reset")
                    continue
                if not chunk:
                    finish(s, "closed without an answer" if not state.get(s) else "closed mid-answer")
                    continue
                state[s] += chunk
                data = state[s]
                if b"\r\n\r\n" in data:
                    code = data.split(b" ", 2)[1].decode(errors="replace")
                    if code == "200":
                        finish(s, "200 (held open)", keep=True)
                    else:
                        finish(s, code)
    unresolved = pending
    for s in list(state):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
    sel.close()
    if unresolved:
        outcome["no answer by the deadline"] += unresolved
    return outcome, held


def case_flood(run, res, r):
    m = run.mode
    (port, nport, *_), iports = run.ports(7)
    services = {
        "web": web_manifest(port, 2, extra_proxy=f"max_connections = {m['max_connections']}"),
        "neighbour": web_manifest(nport, 1),
    }
    muster = Muster(res, run.bins, "flood", services, iports)
    muster.start()
    muster.wait_serving({"web": ("ready", 2), "neighbour": ("ready", 1)}, 60)
    pid = muster.pid()
    limits = read_text(f"/proc/{pid}/limits") or ""
    nofile = next((line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")), ["?", "?"])
    load = Load(nport, path=run.path).start()
    held = []
    try:
        time.sleep(1)
        before = phase(load, m["before"])
        t0 = time.monotonic()
        outcome, held = flood(port, m["flood"], m["flood_timeout"])
        t_flood = time.monotonic() - t0
        # With every connection open: musterd answers status, the neighbour serves, the full web
        # service refuses one more.
        s0 = time.monotonic()
        st = muster.ctl("status", timeout=30)
        status_s = time.monotonic() - s0
        extra = one_request(port, timeout=5)
        neighbour_direct = one_request(nport, timeout=5)
        time.sleep(2)
        during = load.stats(t0, time.monotonic())
        conns = (muster.status() or {}).get("web", {}).get("proxy") or {}
        for s in held:
            s.close()
        n_held = len(held)
        held = []
        t_release = time.monotonic()
        after_ok = wait_until(lambda: one_request(port, timeout=2) == 200, 15)
        after_s = time.monotonic() - t_release
        phase(load, 2)
    finally:
        for s in held:
            s.close()
        load.stop()
    total = load.stats()
    alive_after = muster.crashed() is None and muster.ctl("status").returncode == 0
    r.load = load_text(total, total["seconds"]) + " on neighbour"
    r.faults = f"{m['flood']} conns vs max {m['max_connections']}"
    accepted = outcome.get("200 (held open)", 0)
    rejected = sum(v for k, v in outcome.items() if k != "200 (held open)")
    r.lost = lost_text(total)
    r.p99_before, r.p99_during = before["p99_ms"], during["p99_ms"]
    r.note(f"{m['flood']} connections opened in {t_flood:.1f} s: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcome.items()))
           + f"; served and held {accepted}, turned away {rejected}")
    r.note(f"with them open: musterctl status exit {st.returncode} in {status_s * 1000:.0f} ms; one more request to web: "
           f"{extra}; neighbour direct request: {neighbour_direct}; web proxy status: {json.dumps(conns)[:200]}")
    r.note(f"after closing them: web answered 200 again after {after_s:.2f} s; musterd up and answering: {alive_after}; "
           f"musterd nofile limit {nofile[0]}/{nofile[1]}; neighbour p99 during {fmt_ms(during['p99_ms'])}")
    if accepted > m["max_connections"]:
        r.miss(f"{accepted} connections served > max_connections {m['max_connections']}")
    if accepted == 0:
        r.miss("no connection served")
    if outcome.get("no answer by the deadline"):
        r.miss(f"{outcome['no answer by the deadline']} connections got no answer within {m['flood_timeout']} s")
    if st.returncode != 0:
        r.miss(f"musterctl status failed during the flood: {st.stderr.strip()[:200]}")
    if neighbour_direct != 200 or total["failed"]:
        r.miss(f"the neighbour failed: {total['failed']} requests, one-off {neighbour_direct}")
    if not after_ok:
        r.miss("web did not serve again after the flood")
    if not alive_after:
        r.miss("musterd not answering after the flood")
    r.n_held = n_held
    muster.shutdown()


def case_churn(run, res, r):
    """Issue 19's flat memory under churn: a reload storm, a scale storm, a connection storm and
    a log flood, one after another against one musterd; its RSS after each, minus before it."""
    m = run.mode
    (port, *_), iports = run.ports(7)
    sleeper = """command = ["/bin/sleep", "100000"]
instances = {n}
[restart]
start_seconds = 0
[stop]
timeout = "2s"
"""
    muster = Muster(res, run.bins, "churn", {"web": web_manifest(port, 4), "sleeper": sleeper.format(n=1),
                                             "scaled": sleeper.format(n=0)}, iports)
    muster.start()
    muster.wait_serving({"web": ("ready", 4), "sleeper": 1}, 60)
    pid = muster.pid()
    rows = []

    def settle():
        time.sleep(3)
        return rss_kb(pid)

    def reload_storm(count):
        n = 1
        for _ in range(count):
            n = 2 if n == 1 else 1
            muster.write_manifest("sleeper", sleeper.format(n=n))
            done = muster.ctl("reload")
            if done.returncode != 0:
                raise BenchError(f"reload failed: {(done.stderr or done.stdout).strip()[:200]}")
        muster.wait_serving({"sleeper": n}, 30)

    def scale_storm(cycles):
        for _ in range(cycles):
            for count in (50, 0):
                done = muster.ctl("scale", "scaled", str(count))
                if done.returncode != 0:
                    raise BenchError(f"scale failed: {(done.stderr or done.stdout).strip()[:200]}")
                wait_until(lambda: len([i for i in muster.instances("scaled") if i.get("state") == "running"]) == count
                           and len(muster.instances("scaled")) == count, 60, f"scaled at {count}")

    def connection_storm(total):
        procs = 4
        each = total // procs
        runs = [subprocess.Popen([PYTHON, "-S", os.path.join(muster.tmp, "stormer.py"), str(port), str(each)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        ok, failed = 0, collections.Counter()
        for p in runs:
            out, _ = p.communicate(timeout=3600)
            doc = json.loads(out)
            ok += doc["ok"]
            failed.update(doc["failed"])
        return ok, failed

    def log_flood(mb):
        muster.write_manifest("flood", f"""command = ["@PYTHON@", "-S", "@TMP@/flooder.py", "{mb}"]
[restart]
start_seconds = 0
""")
        done = muster.ctl("reload")
        if done.returncode != 0:
            raise BenchError(f"reload (flood) failed: {(done.stderr or done.stdout).strip()[:200]}")
        wait_until(lambda: "FLOOD-DONE" in muster.ctl("logs", "flood:0", "-n", "3").stdout, 600, "the flood's last line in its log")

    try:
        # A warm-up of each storm at a tenth of its size: what musterd allocates once (pools,
        # the event ring filling, the allocator's arenas) goes into the baseline.
        reload_storm(max(10, m["churn_reloads"] // 10))
        scale_storm(max(2, m["churn_scales"] // 10))
        connection_storm(max(2000, m["churn_connections"] // 10))
        start = settle()
        for label, body, size in (
                (f"reload storm ({m['churn_reloads']} reloads)", reload_storm, m["churn_reloads"]),
                (f"scale storm (0 <-> 50, {m['churn_scales']} times)", scale_storm, m["churn_scales"]),
                (f"connection storm ({m['churn_connections']:,} short connections)", connection_storm, m["churn_connections"]),
                (f"log flood ({m['churn_log_mb']} MB through one instance)", log_flood, m["churn_log_mb"])):
            before = settle()
            t0 = time.monotonic()
            outcome = body(size)
            elapsed = time.monotonic() - t0
            after = settle()
            rows.append((label, before, after, elapsed))
            r.note(f"{label}: {elapsed:.0f} s; musterd RSS {before} kB -> {after} kB ({after - before:+d} kB)"
                   + (f"; {outcome[0]} answered 200, failed {dict(outcome[1]) or 'none'}" if isinstance(outcome, tuple) else ""))
            if after - before > CHURN_SLACK_KB:
                r.miss(f"{label}: RSS grew {after - before} kB (allowed {CHURN_SLACK_KB} kB)")
            if isinstance(outcome, tuple) and outcome[1]:
                r.miss(f"{label}: {sum(outcome[1].values())} connections failed: {dict(outcome[1])}")
        end = rss_kb(pid)
        r.note(f"all four: musterd RSS {start} kB -> {end} kB ({end - start:+d} kB)")
    finally:
        if muster.crashed() is not None:
            r.miss(f"musterd exited ({muster.crashed()})")
    r.load = "-"
    r.faults = f"{m['churn_reloads']} reloads, {m['churn_scales']}x 0<->50, {m['churn_connections']:,} connections, {m['churn_log_mb']} MB log"
    r.lost = "-"
    muster.shutdown()


CASES = [
    ("1", "kill -9", case_kill),
    ("2", "musterd SIGKILL", lambda run, res, r: case_daemon(run, res, r, False).shutdown()),
    ("2b", "musterd SIGKILL, held socket", lambda run, res, r: case_daemon(run, res, r, True).shutdown()),
    ("3", "fork/mem/cpu", case_limits),
    ("4", "log disk full", case_disk),
    ("5", "reload+status storm", case_control),
    ("6", "connection flood", case_flood),
    ("7", "churn", case_churn),
]


def machine_text():
    cpus = os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        model = "?"
    return f"{platform.node()}: Linux {platform.release()}, {cpus} cores ({model})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="folder with release musterd and musterctl")
    parser.add_argument("--short", action="store_true", help="short versions of every case (CI)")
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES),
                        help="comma-separated subset: " + ", ".join(f"{c[0]} ({c[1]})" for c in CASES))
    parser.add_argument("--base-port", type=int, default=0,
                        help="first port of the run's block (default: a free block chosen at random in 30000-44000)")
    parser.add_argument("--slow-ms", type=int, default=10,
                        help="the load's requests are GET /slow?ms=N (default 10: a request that waits 10 ms, as on a "
                             "database; longer means more in flight at each kill)")
    parser.add_argument("--results-dir", help="keep each case's musterd log, events and configs there")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/chaos: run as root (cgroups, tmpfs mounts)")

    raise_interrupted_on_signals()

    # Case 6 holds thousands of sockets here, and musterd (which inherits this limit) as many.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not args.base_port:
        # Below the kernel's ephemeral range: a listen port picked inside it can be taken, by the
        # time its case runs, by the local end of some outgoing connection (the load's own, the
        # proxy's to its instances), and the bind fails with EADDRINUSE.
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                ephemeral_low = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            ephemeral_low = 32768
        for _ in range(50):
            base = random.randrange(10000, max(10100, ephemeral_low - 2000), 100)
            if all(port_free(p, reuse_addr=False) for p in range(base, base + 80)):
                args.base_port = base
                break
        else:
            sys.exit("scripts/chaos: no free block of ports found")
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in {k for k, _, _ in CASES}]
    if unknown:
        sys.exit(f"scripts/chaos: unknown case(s) {unknown}")
    mode = "short" if args.short else "long"
    started = datetime.datetime.now().astimezone()
    log(f"scripts/chaos: {mode} run, cases {','.join(wanted)}, ports from {args.base_port}, "
        f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    res = Resources(args.results_dir)
    results = []
    code = 0
    try:
        run = Run(args, res)
        for key, title, body in CASES:
            if key not in wanted:
                continue
            r = Result(key, title)
            results.append(r)
            log(f"scripts/chaos: case {key}: {title}")
            t0 = time.monotonic()
            scope = res.scope(f"case-{key}")
            try:
                body(run, scope, r)
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as error:
                r.error = f"{type(error).__name__}: {error}"
                r.miss(r.error)
                log(f"  case {key}: error: {r.error}")
            finally:
                scope.cleanup()
            log(f"  case {key}: {r.verdict} in {time.monotonic() - t0:.0f} s" + (f": {'; '.join(r.misses)}" if r.misses else ""))
        text = [f"scripts/chaos{' --short' if args.short else ''}: {started.strftime('%Y-%m-%d %H:%M %Z')}, {machine_text()}",
                "", table(results), ""]
        for r in results:
            for n in r.notes:
                text.append(f"  {r.case}: {n}")
            for miss in r.misses:
                text.append(f"  {r.case}: MISSED: {miss}")
        failed = [r.case for r in results if r.verdict != "PASS"]
        text.append("")
        text.append(f"{len(results) - len(failed)} passed, {len(failed)} failed" + (f" (cases {', '.join(failed)})" if failed else ""))
        print("\n".join(text), flush=True)
        if args.results_dir:
            os.makedirs(args.results_dir, exist_ok=True)
            with open(os.path.join(args.results_dir, "summary.txt"), "w") as f:
                f.write("\n".join(text) + "\n")
        code = 1 if failed else 0
    except Interrupted as why:
        log(f"scripts/chaos: interrupted ({why}); cleaning up")
        code = 130
    except BenchError as error:
        log(f"scripts/chaos: {error}")
        code = 1
    finally:
        ignore_signals()
        res.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
