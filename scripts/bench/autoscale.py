#!/usr/bin/env python3
"""The autoscale benchmark's body; run it through scripts/bench/autoscale, which installs what it
needs and builds the binaries. musterd runs one autoscaled service, `web`, whose instances are
scripts/bench/slow_backend.py (100 ms a request, 8 workers an instance, READY=1 over the notify
socket), behind its http proxy. A closed-loop load generator (N keep-alive clients in threads,
each sending its next request as soon as the last one is answered) drives it through phases:

  warmup     5 clients                     not counted in the baseline
  baseline   5 clients                     1 instance at target 5; gives the pre-step p99
  step       20 clients (4x, a panic)      the scaler should go to 4 at once; the step is placed
                                           at --step-phase in the scaler's 1 s tick (default random)
  low        2 clients                     scale-down, one instance a decision, to 1
  zero       no clients, every connection closed; once musterd has stopped every instance,
             one request (GET /, answered without the 100 ms wait) on a fresh connection, and
             its latency; repeated --zero-repeats times, each from zero again

The backend's own start-up is measured by starting it directly (posix_spawn, a session of its
own, a notify socket of ours): exec to READY=1, and exec to the answer to GET / sent right after
READY=1. That runs a few times before musterd starts, and twice right before each request from
zero, so both see the same machine. The activator's overhead is the median first-request latency
from zero minus the median exec-to-answer of those direct starts in the zero phase.

It reports the time from the step to the scaler's first decision, to the instances it asked for
serving, and to the p99 back under its pre-step value; the activator's overhead; the scale-down
and scale-to-zero times; and every failed request (non-200, socket error or timeout) over the
whole run. Into --out DIR it writes timeline.csv (one row a second: offered concurrency,
instances desired and serving, requests, failures, p50, p99), samples.csv (the scaler's state
every 200 ms), decisions.csv (each scaling decision from musterd's events: time, from, to,
reason), requests.csv (every request), zero.csv, timeline.svg and timeline.png (gnuplot, from
timeline.gp: load, instances with each decision marked, latency), summary.txt, results.json,
and musterd's log, event log and configs. --docs-picture PATH copies timeline.svg there too.

Cleanup (musterd and its instances, the directly started backends, the run's temp folder,
Muster's cgroup root) runs on success, failure, Ctrl-C and SIGTERM; the --out folder stays.
"""
import argparse
import bisect
import csv
import http.client
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import benchlib
from benchlib import (BenchError, HTTPClient, Interrupted, Process, file_tail, kill_if_same, log, machine_busy, median,
                      port_free, proc_stat, raise_interrupted_on_signals, read_events, run_quiet, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "slow_backend.py")
SERVICE = "web"
# musterd's autoscaler loop sleeps a tenth of metrics_interval ten times a tick, so a tick comes a
# little later than the interval each time (1.0035 s for 1 s on the 2-core test VM). Only used to
# aim the step; the report measures the real period from the decisions.
TICK_PERIOD = 1.0035

# Per mode: phase lengths (s), zero repeats, and the [autoscale] windows. --quick keeps the same
# shape with shorter windows, so the scale-down and scale-to-zero still finish inside the run.
MODES = {
    "full": {"warmup": 3, "baseline": 10, "step": 20, "low": 25, "zero_repeats": 5,
             "window": 10, "panic_window": 2, "scale_down_delay": 10, "scale_to_zero_after": 5, "startup_runs": 5},
    "quick": {"warmup": 2, "baseline": 6, "step": 12, "low": 16, "zero_repeats": 3,
              "window": 6, "panic_window": 2, "scale_down_delay": 6, "scale_to_zero_after": 3, "startup_runs": 3},
}


# --- cleanup ------------------------------------------------------------------------------------

class Resources(benchlib.Resources):
    """The shared cleanup, plus what only this benchmark has: the load and poller threads
    (stopped first: they would go on loading and polling what is being stopped) and the
    backends started directly for the start-up runs."""

    def __init__(self):
        super().__init__("bench-autoscale")
        self.spawned = {}          # pid -> starttime, for the directly started backends
        self.threads_stop = []     # callables that stop the run's threads

    def before_processes(self):
        for stop in self.threads_stop:
            try:
                stop()
            except Exception as error:
                log(f"cleanup: {error}")
        for pid, start in list(self.spawned.items()):
            kill_if_same(pid, start)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


# --- HTTP: the control socket and the load ---------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def control_get(socket_path, path, timeout=5.0):
    """GET on musterd's control API, straight over its socket (a musterctl run costs ~20 ms of
    CPU; the poller asks five times a second). None when it does not answer 200 with JSON."""
    conn = UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return json.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Load:
    """Closed-loop load: client i sends requests back to back while i < level, and closes its
    connection when it is not needed (an open idle connection is activity for scale-to-zero)."""

    def __init__(self, port, clients, path, timeout, t0):
        self.port = port
        self.clients = clients
        self.path = path
        self.timeout = timeout
        self.t0 = t0
        self.level = 0
        self.stopping = False
        self.cond = threading.Condition()
        self.records = []          # (start, end, ok, phase): seconds from t0
        self.errors = []           # (time, text), the first 50
        self.phase = "start"
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def set_level(self, level, phase):
        with self.cond:
            self.level = level
            self.phase = phase
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)

    def error(self, text):
        if len(self.errors) < 50:
            self.errors.append((time.monotonic() - self.t0, text))

    def client(self, i):
        conn = HTTPClient(self.port, self.timeout)
        while True:
            with self.cond:
                active = i < self.level and not self.stopping
            if not active:
                conn.close()
                with self.cond:
                    while not self.stopping and i >= self.level:
                        self.cond.wait()
                    if self.stopping:
                        break
                continue
            phase = self.phase
            start = time.monotonic()
            try:
                status = conn.get(self.path)
                ok = status == 200
                if not ok:
                    self.error(f"client {i}: HTTP {status}")
            except (OSError, ValueError) as e:
                ok = False
                conn.close()
                self.error(f"client {i}: {type(e).__name__}: {e}")
            end = time.monotonic()
            self.records.append((start - self.t0, end - self.t0, ok, phase))
            if not ok:
                time.sleep(0.05)     # no busy loop against a failing proxy
        conn.close()


class Poller:
    """The scaler's state every `every` seconds, from GET /v1/services/web/autoscale."""

    def __init__(self, socket_path, t0, every=0.2):
        self.socket_path = socket_path
        self.t0 = t0
        self.every = every
        self.samples = []   # (t, desired, current, panicking, load_last, queued)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.done.set()
        self.thread.join(timeout=10)

    def latest(self):
        return self.samples[-1] if self.samples else None

    def run(self):
        next_at = time.monotonic()
        while not self.done.is_set():
            doc = control_get(self.socket_path, f"/v1/services/{SERVICE}/autoscale", timeout=2.0)
            if doc is not None:
                load = doc.get("load") or {}
                self.samples.append((time.monotonic() - self.t0, doc.get("desired"), doc.get("current"),
                                     bool(doc.get("panicking")), load.get("last"), doc.get("queued")))
            next_at += self.every
            self.done.wait(max(0.0, next_at - time.monotonic()))


# --- the backend's own start-up -----------------------------------------------------------------

def find_tick(muster, before, timeout):
    """Monotonic time of the scaler's first tick whose sample differs from `before`, to ~10 ms."""
    deadline = time.monotonic() + timeout
    last_old = time.monotonic()
    while time.monotonic() < deadline:
        asked = time.monotonic()
        doc = muster.report()
        answered = time.monotonic()
        if doc is not None and (doc.get("load") or {}).get("last") != before:
            return (last_old + (asked + answered) / 2) / 2
        last_old = (asked + answered) / 2
        time.sleep(0.01)
    return None


def backend_argv(python, workers):
    return [python, "-S", BACKEND, "--notify", "--workers", str(workers)]


def measure_backend_startup(res, python, workers, tmp, ports, runs):
    """Starts the backend directly `runs` times: ms from posix_spawn to READY=1 on a notify socket
    of ours, and to the answer to GET / sent right after READY=1 (what musterd's proxy does)."""
    ready_ms, first_ms = [], []
    for k in range(runs):
        port = next((p for p in ports if port_free(p)), None)
        if port is None:
            raise BenchError("no free port for the backend start-up runs")
        path = os.path.join(tmp, f"notify-{k}.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(path)
        env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "NOTIFY_SOCKET": path, "LANG": "C.UTF-8"}
        try:
            t0 = time.monotonic()
            pid = os.posix_spawn(python, backend_argv(python, workers), env, setsid=True)
            fields = proc_stat(pid)
            if fields:
                res.spawned[pid] = fields[22]
            readable, _, _ = select.select([notify], [], [], 10)
            if not readable:
                raise BenchError(f"the backend sent no READY=1 within 10 s (port {port})")
            t_ready = time.monotonic()
            notify.recv(4096)
            status = HTTPClient(port, 5).get("/", close=True)
            t_first = time.monotonic()
            if status != 200:
                raise BenchError(f"the backend answered GET / with {status}")
            ready_ms.append((t_ready - t0) * 1e3)
            first_ms.append((t_first - t0) * 1e3)
        finally:
            notify.close()
            os.unlink(path)
            for p, start in list(res.spawned.items()):
                kill_if_same(p, start, signal.SIGTERM)
                try:
                    os.waitpid(p, 0)
                except ChildProcessError:
                    pass
                del res.spawned[p]
        time.sleep(0.2)
    return ready_ms, first_ms


# --- musterd -----------------------------------------------------------------------------------

class Muster:
    def __init__(self, res, bin_dir, tmp, instance_ports, proxy_port, command, mode, args):
        self.res = res
        self.musterd = os.path.join(bin_dir, "musterd")
        self.musterctl = os.path.join(bin_dir, "musterctl")
        self.tmp = tmp
        root = f"muster-bench-autoscale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.res.cgroup_roots.append(root)   # registered before musterd can create it
        os.makedirs(os.path.join(tmp, "services.d"))
        self.socket = os.path.join(tmp, "run", "muster.sock")
        self.config = os.path.join(tmp, "musterd.toml")
        self.manifest = os.path.join(tmp, "services.d", f"{SERVICE}.toml")
        with open(self.config, "w") as f:
            f.write(f"""[daemon]
services_dir     = "services.d"
control_socket   = "{self.socket}"
state_dir        = "{tmp}/state"
log_dir          = "{tmp}/log"
cgroup_root      = "{root}"
instance_ports   = "{instance_ports[0]}-{instance_ports[-1]}"
metrics_interval = "{args.metrics_interval}"
""")
        with open(self.manifest, "w") as f:
            f.write(f"""name = "{SERVICE}"
command = {json.dumps(command)}
instances = 1

[restart]
start_seconds = 0

[proxy]
listen = ["127.0.0.1:{proxy_port}"]
protocol = "http"
queue_timeout = "10s"

[health]
check = "notify"

[autoscale]
min = 0
max = 10
metric = "concurrency"
target = {args.target}
window = "{mode['window']}s"
panic_window = "{mode['panic_window']}s"
panic_threshold = 2.0
scale_down_delay = "{mode['scale_down_delay']}s"
max_scale_down = 1
scale_to_zero_after = "{mode['scale_to_zero_after']}s"
""")

    def start(self):
        self.process = self.res.start(Process(
            "musterd", [self.musterd, "--config", self.config], os.path.join(self.tmp, "musterd.log"),
            [self.musterctl, "shutdown", "--socket", self.socket]))
        return self.process

    def ctl_json(self, *argv, lines=False):
        r = run_quiet([self.musterctl, *argv, "--socket", self.socket])
        if r.returncode != 0:
            raise BenchError(f"musterctl {' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        try:
            if lines:
                return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
            return json.loads(r.stdout)
        except ValueError as error:
            raise BenchError(f"musterctl {' '.join(argv)} printed no JSON ({error}): {r.stdout[:300]}")

    def service_status(self):
        doc = control_get(self.socket, f"/v1/status?service={SERVICE}")
        if doc is None:
            return None
        return next((s for s in doc.get("services", []) if s.get("name") == SERVICE), None)

    def report(self):
        return control_get(self.socket, f"/v1/services/{SERVICE}/autoscale")

    def live_instances(self):
        """Instances that have a process (any state but stopped); None when status fails."""
        s = self.service_status()
        if s is None:
            return None
        return [i for i in s.get("instances", []) if i.get("pid")]

    def events_file(self):
        return read_events(os.path.join(self.tmp, "state", "events.log"))

    def log_tail(self, lines=20):
        return file_tail(os.path.join(self.tmp, "musterd.log"), lines)


# --- analysis ------------------------------------------------------------------------------------

def percentile(values, q):
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


SCALE_RE = re.compile(r"^\S+: (\d+) → (\d+), (.*)$")


def autoscale_events(events, offset):
    """(t from t0, from, to, reason) of each autoscaled event of the service."""
    found = []
    for e in events:
        if e.get("kind") == "autoscaled" and e.get("service") == SERVICE:
            m = SCALE_RE.match(e.get("message", ""))
            if m:
                found.append((e["time"] - offset, int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def kind_times(events, kind, offset):
    return [e["time"] - offset for e in events if e.get("kind") == kind and e.get("service") == SERVICE]


def p99_recovery(records, step_t, end_t, threshold, hold=2.0, grid=0.1):
    """The first T after the step at which the p99 of the requests completed in (T-1, T] is at
    most `threshold` and stays so for `hold` s more (checked every `grid` s); None if never."""
    done = sorted((end, (end - start) * 1e3) for start, end, ok, _ in records if ok and step_t <= end <= end_t)
    ends = [d[0] for d in done]
    def p99_at(t):
        lo, hi = bisect.bisect_right(ends, t - 1.0), bisect.bisect_right(ends, t)
        window = [d[1] for d in done[lo:hi]]
        return percentile(window, 99) if window else None

    t = step_t + 1.0
    while t + hold <= end_t:
        value = p99_at(t)
        if value is not None and value <= threshold:
            checks = [p99_at(t + k * grid) for k in range(1, int(hold / grid) + 1)]
            if all(c is not None and c <= threshold for c in checks):
                return t - step_t
        t += grid
    return None


def write_outputs(out, records, samples, levels, zero_rows, duration):
    buckets = int(math.ceil(duration))
    per = [[] for _ in range(buckets + 1)]
    failed = [0] * (buckets + 1)
    for start, end, ok, _ in records:
        if end <= 0:
            continue                                         # the warmup before t0
        b = min(buckets, int(math.ceil(end)) - 1)            # (b, b+1]
        if ok:
            per[b].append((end - start) * 1e3)
        else:
            failed[b] += 1

    def level_during(b):
        # Phases start on whole seconds, so one level holds for the whole bucket (b, b+1].
        value = 0
        for t, level, _ in levels:
            if t <= b + 0.5:
                value = level
        return value

    def state_at(t):
        value = (None, None, None, None)
        for s in samples:
            if s[0] <= t:
                value = (s[1], s[2], s[3], s[4])
            else:
                break
        return value

    with open(os.path.join(out, "timeline.csv"), "w") as f:
        f.write("time_s,offered_concurrency,instances_desired,instances_serving,requests,failed,p50_ms,p99_ms,panicking,scaler_load\n")
        for b in range(buckets):
            desired, serving, panicking, load = state_at(b + 1)
            lat = per[b]
            p50 = f"{percentile(lat, 50):.1f}" if lat else ""
            p99 = f"{percentile(lat, 99):.1f}" if lat else ""
            f.write(f"{b + 1},{level_during(b)},{'' if desired is None else desired},{'' if serving is None else serving},"
                    f"{len(lat) + failed[b]},{failed[b]},{p50},{p99},{'' if panicking is None else int(panicking)},"
                    f"{'' if load is None else f'{load:.2f}'}\n")
    with open(os.path.join(out, "samples.csv"), "w") as f:
        f.write("time_s,instances_desired,instances_serving,panicking,scaler_load,queued\n")
        for t, desired, current, panicking, load, queued in samples:
            f.write(f"{t:.3f},{desired},{current},{int(panicking)},{'' if load is None else f'{load:.2f}'},{queued}\n")
    with open(os.path.join(out, "levels.csv"), "w") as f:
        f.write("time_s,offered_concurrency,phase\n")
        for t, level, phase in levels:
            f.write(f"{t:.3f},{level},{phase}\n")
        f.write(f"{duration:.3f},{levels[-1][1] if levels else 0},end\n")
    with open(os.path.join(out, "requests.csv"), "w") as f:
        f.write("start_s,end_s,latency_ms,ok,phase\n")
        for start, end, ok, phase in records:
            f.write(f"{start:.4f},{end:.4f},{(end - start) * 1e3:.2f},{int(ok)},{phase}\n")
    with open(os.path.join(out, "zero.csv"), "w") as f:
        f.write("sent_s,latency_ms,to_activator_ms,activator_to_started_ms,started_to_ready_ms,ready_to_answer_ms\n")
        for z in zero_rows:
            f.write(",".join("" if v is None else f"{v:.3f}" for v in
                             (z["sent"], z["latency_ms"], z.get("to_activator_ms"), z.get("to_started_ms"),
                              z.get("to_ready_ms"), z.get("to_answer_ms"))) + "\n")


DECISION_LOAD_RE = re.compile(r"^\S+ ([^\s,]+) over ([^\s,]+)")


def decision_kind(reason):
    """A word for the picture: what made the scaler decide."""
    if "(activator)" in reason:
        return "activator"
    if "(panic)" in reason:
        return "panic"
    if "scale to zero" in reason:
        return "idle"
    if "outside the bounds" in reason:
        return "bounds"
    return "window"


DECISION_IDLE_RE = re.compile(r"^idle for ([^\s,]+)")


def decision_label(a, b, reason):
    """"1→4 panic: 20.0 over 2s", "4→3 2.0 over 6s", "1→0 idle 5s", "0→1 activator" (no commas:
    decisions.csv is read by gnuplot with ',' as the separator)."""
    kind = decision_kind(reason)
    m = DECISION_LOAD_RE.match(reason)
    idle = DECISION_IDLE_RE.match(reason)
    if kind == "panic" and m:
        text = f"panic: {m.group(1)} over {m.group(2)}"
    elif kind == "window" and m:
        text = f"{m.group(1)} over {m.group(2)}"
    elif kind == "idle" and idle:
        text = f"idle {idle.group(1)}"
    else:
        text = kind
    return f"{a}→{b} {text}".replace(",", ";")


def write_decisions(out, decisions):
    """decisions.csv. The picture's label column names a decision the first time its text comes
    up: the repeats from zero (1 → 0 idle, 0 → 1 activator, five times) have only their point."""
    seen = set()
    with open(os.path.join(out, "decisions.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["time_s", "from", "to", "kind", "label", "reason"])
        for t, a, b, why in decisions:
            label = decision_label(a, b, why)
            w.writerow([f"{t:.3f}", a, b, decision_kind(why), "" if label in seen else label, why])
            seen.add(label)


DECISION_COLOURS = {"panic": "#d62728", "window": "#1f77b4", "idle": "#7f7f7f", "activator": "#9467bd", "bounds": "#000000"}
DECISION_TITLES = {"panic": "panic (load over panic_window)", "window": "load over window", "idle": "idle, to zero",
                   "activator": "activator (a request at zero)", "bounds": "outside min/max"}


def plot(out, marks, decisions, samples, levels, request_ms, title):
    """timeline.gp, and from it timeline.svg (gnuplot's svg terminal, no cairo needed) and
    timeline.png: the load (offered clients, the scaler's load, req/s), the instances (desired,
    serving) with each scaling decision marked (a line, a point at the new count and a label
    with from → to and the reason), and the latency. None when both were drawn, else a note."""
    gp = os.path.join(out, "timeline.gp")
    arrows = "\n".join(f"set arrow from {t:.2f}, graph 0 to {t:.2f}, graph 1 nohead dt 2 lc rgb '#888888'"
                       for t, _ in marks)
    labels = "\n".join(f"set label '{name}' at {t + 0.3:.2f}, graph 0.92 font ',9' tc rgb '#555555'" for t, name in marks)
    # The decisions' lines in the instances panel only, tagged so they can be taken off again.
    decision_arrows = "\n".join(
        f"set arrow {100 + k} from {t:.3f}, graph 0 to {t:.3f}, graph 1 nohead dt 3 lw 1 lc rgb '{DECISION_COLOURS[decision_kind(why)]}' back"
        for k, (t, _, _, why) in enumerate(decisions))
    unset_decision_arrows = "\n".join(f"unset arrow {100 + k}" for k in range(len(decisions)))
    top = max([b for _, _, b, _ in decisions] + [s[1] or 0 for s in samples] + [s[2] or 0 for s in samples] + [1])
    kinds = [k for k in DECISION_COLOURS if any(decision_kind(why) == k for _, _, _, why in decisions)]
    decision_points = "".join(
        f"     'decisions.csv' using 1:(strcol(4) eq '{k}' ? $3 : NaN) with points pt 7 ps 0.9 lc rgb '{DECISION_COLOURS[k]}' "
        f"title 'decision: {DECISION_TITLES[k]}', \\\n" for k in kinds)
    # A client of the closed loop sends 1000 / request_ms requests a second at best, so the
    # right axis is scaled to match: req/s under the offered line is the latency showing.
    per_client = 1000.0 / request_ms
    # Linked axes do not autoscale: room above the highest level for the phase labels.
    load_top = max([level for _, level, _ in levels] + [s[4] or 0 for s in samples] + [1]) * 1.25
    with open(gp, "w") as f:
        f.write(f"""# gnuplot {os.path.basename(gp)}: draws timeline.svg from the CSVs next to it;
# gnuplot -e "fmt='png'" {os.path.basename(gp)} draws timeline.png
if (!exists("fmt")) fmt = 'svg'
set encoding utf8
if (fmt eq 'svg') {{
    set terminal svg size 1200,1050 noenhanced font 'sans,11' background rgb 'white'
    set output 'timeline.svg'
}} else {{
    set terminal pngcairo size 1200,1050 noenhanced font ',10'
    set output 'timeline.png'
}}
set datafile separator ','
set key autotitle columnhead
set multiplot layout 3,1 title '{title}' font ',12'
set grid
set xrange [0:*]
set autoscale xfixmax
set lmargin 10
set rmargin 10
set offsets 0, 0, graph 0.08, 0
# Empty fields (a second with no answer) as NaN, so the latency lines break there.
gaps(f) = "< awk -F, -v OFS=, '{{for (i = 1; i <= NF; i++) if ($i == \\"\\") $i = \\"NaN\\"; print}}' ".f
{arrows}
{labels}
set ylabel 'concurrency'
set y2label 'requests per second'
set y2tics
set yrange [0:{load_top:g}]
set link y2 via y * {per_client:g} inverse y / {per_client:g}
set key top right
plot 'levels.csv' using 1:2 with steps lw 2 lc rgb '#1f77b4' title 'offered (clients)', \\
     'samples.csv' using 1:5 with lines lw 1 lc rgb '#ff7f0e' title 'scaler load (last tick)', \\
     gaps('timeline.csv') using ($1-0.5):5 axes x1y2 with points pt 6 ps 0.6 lc rgb '#17becf' title 'req/s per 1 s (right axis: {per_client:g} a client at {request_ms} ms)'
unset label
unset link y2
unset y2label
unset y2tics
set ylabel 'instances'
set yrange [-0.3:{top + 2}]
set key top left vertical maxrows 3 width 2
set offsets 0, 0, 0, 0
set ytics 0, 1
{decision_arrows}
plot 'samples.csv' using 1:2 with steps lw 5 lc rgb '#f4a6a6' title 'desired', \\
     'samples.csv' using 1:3 with steps lw 2 lc rgb '#2ca02c' title 'serving (ready)', \\
{decision_points}     'decisions.csv' using 1:3:5 with labels left offset 0.5,0.75 font ',9' tc rgb '#333333' notitle
{unset_decision_arrows}
set key top right vertical maxrows auto width 0
set ytics autofreq
set offsets 0, 0, graph 0.08, 0
set ylabel 'latency (ms)'
set xlabel 'time since the load started (s)'
set yrange [0:*]
plot gaps('timeline.csv') using ($1-0.5):8 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#9467bd' title 'p99 per 1 s', \\
     gaps('timeline.csv') using ($1-0.5):7 with lines lw 1 lc rgb '#8c564b' title 'p50 per 1 s', \\
     'zero.csv' using 1:2 with points pt 9 ps 1.5 lc rgb '#e377c2' title 'first request from zero'
unset multiplot
""")
    if not shutil.which("gnuplot"):
        return "gnuplot not installed; timeline.gp is there to draw it"
    notes = []
    r = subprocess.run(["gnuplot", os.path.basename(gp)], cwd=out, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        notes.append(f"gnuplot (svg) failed: {r.stderr.strip()}")
    if run_quiet(["gnuplot", "-e", "set terminal pngcairo"], timeout=30).returncode != 0:
        # A gnuplot without cairo: the gd png terminal instead.
        with open(gp) as f:
            text = f.read().replace("set terminal pngcairo size 1200,1050 noenhanced font ',10'",
                                    "set terminal png size 1200,1050 noenhanced")
        with open(gp, "w") as f:
            f.write(text)
    r = subprocess.run(["gnuplot", "-e", "fmt='png'", os.path.basename(gp)], cwd=out, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        notes.append(f"gnuplot (png) failed: {r.stderr.strip()}")
    return "; ".join(notes) or None


# --- the run -----------------------------------------------------------------------------------

def ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def fmt(value, unit="", digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="folder with release musterd and musterctl")
    parser.add_argument("--quick", action="store_true", help="shorter phases and windows (about 1 minute)")
    parser.add_argument("--out", help="folder for the CSVs, pictures and logs (default: a new /tmp/muster-bench-autoscale-<time>)")
    parser.add_argument("--docs-picture", metavar="PATH",
                        help="also copy timeline.svg to PATH (through scripts/bench/autoscale, relative to the repository), "
                             "e.g. docs/autoscale-timeline.svg")
    parser.add_argument("--baseline", type=int, default=5, help="clients before the step (default 5)")
    parser.add_argument("--step", type=int, default=20, help="clients during the step (default 20)")
    parser.add_argument("--low", type=int, default=2, help="clients after the step, for the scale-down (default 2)")
    parser.add_argument("--target", type=float, default=5, help="[autoscale] target concurrency (default 5)")
    parser.add_argument("--request-ms", type=int, default=100, help="backend time per request (default 100)")
    parser.add_argument("--workers", type=int, default=8, help="requests one instance serves at a time (default 8)")
    parser.add_argument("--zero-repeats", type=int, help="first requests from zero (default 5, --quick 3)")
    parser.add_argument("--startup-runs", type=int, help="direct backend starts before musterd runs, for information (default 5, --quick 3); two more run before each request from zero")
    parser.add_argument("--step-phase", type=float,
                        help="where the step lands in the scaler's tick, as a share of metrics_interval after a tick "
                             "(0 to 1; default random): a step late in a tick is averaged with the old load at that tick")
    parser.add_argument("--metrics-interval", default="1s", help="musterd.toml metrics_interval (default 1s)")
    parser.add_argument("--p99-slack", type=float, default=0.10,
                        help="the p99 counts as back once at most pre-step p99 x (1 + this) (default 0.10)")
    parser.add_argument("--base-port", type=int, default=22000,
                        help="instances use BASE..BASE+63, the proxy BASE+100 (default 22000)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/bench/autoscale: run as root (musterd creates cgroups)")
    mode = dict(MODES["quick" if args.quick else "full"])
    if args.zero_repeats is not None:
        mode["zero_repeats"] = args.zero_repeats
    if args.startup_runs is not None:
        mode["startup_runs"] = args.startup_runs

    raise_interrupted_on_signals()

    out = args.out or os.path.join("/tmp", "muster-bench-autoscale-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    instance_ports = list(range(args.base_port, args.base_port + 64))
    proxy_port = args.base_port + 100
    direct_ports = list(range(args.base_port + 200, args.base_port + 264))
    res = Resources()
    muster = None
    tmp = None
    try:
        if not port_free(proxy_port):
            raise BenchError(f"port {proxy_port} is in use (pick another --base-port)")
        tmp = res.temp_dir("run")
        os.chmod(tmp, 0o755)

        # A build that just finished (the wrapper's) or other work skews every figure: wait up to
        # 30 s for the machine to calm down, then go on with a warning.
        busy_before = machine_busy()
        calm_deadline = time.monotonic() + 30
        while busy_before > 0.15 and time.monotonic() < calm_deadline:
            busy_before = machine_busy()
        if busy_before > 0.15:
            log(f"scripts/bench/autoscale: warning: the machine is {busy_before:.0%} busy before the run; "
                "start-up and latency figures will be noisy")
        # 1. The backend's own start-up, before musterd runs.
        log(f"backend start-up: {mode['startup_runs']} direct starts of {python} -S slow_backend.py")
        ready_ms, first_ms = measure_backend_startup(res, python, args.workers, tmp, direct_ports, mode["startup_runs"])
        log(f"  exec → READY=1 median {median(ready_ms):.1f} ms, exec → first answer median {median(first_ms):.1f} ms")

        # 2. musterd with the one autoscaled service.
        muster = Muster(res, args.bin_dir, tmp, instance_ports, proxy_port, backend_argv(python, args.workers), mode, args)
        process = muster.start()
        try:
            wait_until(lambda: (muster.report() or {}).get("current") == 1, 30, "musterd serving 1 ready instance of web")
        except BenchError as error:
            raise BenchError(f"{error}; musterd {'running' if process.alive() else 'exited'}; log:\n{muster.log_tail()}")
        # The contract's musterctl views, once, so a broken one shows before the load.
        ctl_report = muster.ctl_json("autoscale", SERVICE, "--json")
        missing = [k for k in ("service", "metric", "target", "min", "max", "tolerance", "window_seconds",
                               "panic_window_seconds", "panic_threshold", "scale_down_delay_seconds",
                               "scale_to_zero_after_seconds", "interval_seconds", "desired", "current", "paused",
                               "panicking", "load", "queued", "last_reason", "decisions") if k not in ctl_report]
        contract_notes = []
        if missing:
            contract_notes.append(f"musterctl autoscale --json lacks {missing}")

        # 3. The load. Load and Poller keep monotonic times; t0 (the warmup's start) comes once
        # the scaler's tick is found, and everything is counted from it afterwards.
        interval = float(ctl_report.get("interval_seconds") or 1.0)
        load = Load(proxy_port, max(args.baseline, args.step, args.low), f"/work?ms={args.request_ms}", 30.0, 0.0)
        poller = Poller(muster.socket, 0.0)
        res.threads_stop += [load.stop, poller.stop]
        load.start()
        # Where the step lands in the scaler's tick decides whether the first tick after it sees
        # enough of it, so it is placed on purpose: the tick is found from the first sample that
        # shows the warmup's load, and later ticks are taken to follow every TICK_PERIOD.
        before = ((muster.report() or {}).get("load") or {}).get("last")
        load.set_level(args.baseline, "warmup")
        tick = find_tick(muster, before, 3 * interval + 1)
        if tick is None:
            raise BenchError(f"the scaler's load sample never changed from {before} after the load started")
        period = interval * TICK_PERIOD
        step_phase = args.step_phase if args.step_phase is not None else random.random()
        earliest = time.monotonic() + 0.05 + mode["warmup"] + mode["baseline"]
        ticks_ahead = math.ceil((earliest - tick - step_phase * period) / period)
        t0 = tick + (ticks_ahead + step_phase) * period - mode["warmup"] - mode["baseline"]
        offset = time.time() - time.monotonic() + t0     # unix time of t0
        poller.start()
        levels = []
        marks = []
        elapsed = 0.0
        phases = [("warmup", args.baseline, mode["warmup"]), ("baseline", args.baseline, mode["baseline"]),
                  ("step", args.step, mode["step"]), ("low", args.low, mode["low"])]
        phase_at = {}
        for name, level, seconds in phases:
            # Phases start on whole seconds from t0, so the per-second buckets line up with them.
            delay = t0 + elapsed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            load.set_level(level, name)
            now = time.monotonic() - t0
            phase_at[name] = now
            levels.append((now, level, name))
            if name in ("step", "low"):
                marks.append((now, f"{name} → {level}"))
            s = poller.latest()
            log(f"t={now:5.1f}s {name:<8} {level:>2} clients  (desired {s[1] if s else '?'}, serving {s[2] if s else '?'})")
            elapsed += seconds
        time.sleep(max(0.0, t0 + elapsed - time.monotonic()))

        # 4. Scale to zero, then single requests from zero.
        load.set_level(0, "zero")
        idle_from = time.monotonic() - t0
        levels.append((idle_from, 0, "zero"))
        marks.append((idle_from, "idle"))
        log(f"t={idle_from:5.1f}s idle: waiting for 0 instances (scale_to_zero_after {mode['scale_to_zero_after']}s)")
        zero_wait = mode["scale_to_zero_after"] + mode["window"] + 30
        zero_rows = []
        zero_client = HTTPClient(proxy_port, 30.0)
        near_ready, near_first = [], []
        for k in range(mode["zero_repeats"]):
            try:
                wait_until(lambda: muster.live_instances() == [] and (muster.report() or {}).get("desired") == 0,
                           zero_wait, "musterd at 0 instances of web", step=0.1)
            except BenchError as error:
                s = poller.latest()
                raise BenchError(f"{error} (desired {s[1] if s else '?'}, serving {s[2] if s else '?'}; "
                                 f"last reason: {(muster.report() or {}).get('last_reason')})")
            time.sleep(0.3)   # the stopped instance's exit and cgroup removal are over
            # The backend's own start-up in the same conditions, right before the request (on
            # ports musterd does not hand out).
            r, f = measure_backend_startup(res, python, args.workers, tmp, direct_ports, 2)
            near_ready += r
            near_first += f
            time.sleep(0.2)
            sent = time.monotonic()
            try:
                status = zero_client.get("/", close=True)
                ok = status == 200
                if not ok:
                    load.error(f"from zero #{k + 1}: HTTP {status}")
            except (OSError, ValueError) as e:
                ok = False
                load.error(f"from zero #{k + 1}: {type(e).__name__}: {e}")
            zero_client.close()
            done = time.monotonic()
            load.records.append((sent, done, ok, "zero"))
            zero_rows.append({"sent": sent - t0, "done": done - t0, "latency_ms": (done - sent) * 1e3, "ok": ok})
            log(f"t={sent - t0:5.1f}s from zero #{k + 1}: {(done - sent) * 1e3:.1f} ms{'' if ok else ' (FAILED)'}; "
                f"direct start just before: {', '.join(f'{x:.1f}' for x in f)} ms")
        duration = time.monotonic() - t0 + 0.5
        time.sleep(0.5)
        load.stop()
        poller.stop()
        # From here on, seconds from t0. Requests before t0 (the warmup before the tick was found)
        # count for failures only.
        load.records = [(a - t0, b - t0, ok, ph) for a, b, ok, ph in load.records]
        load.errors = [(t - t0, text) for t, text in load.errors]
        poller.samples = [(t - t0, *rest) for t, *rest in poller.samples if t >= t0]

        # 5. What musterd says happened.
        try:
            events = muster.ctl_json("events", "--json", lines=True)
        except BenchError as error:
            contract_notes.append(f"musterctl events --json: {error}")
            events = []
        if not any(e.get("kind") == "autoscaled" for e in events):
            contract_notes.append("musterctl events --json had no autoscaled event; used state_dir/events.log")
            events = muster.events_file()
        final_report = muster.ctl_json("autoscale", SERVICE, "--json")
        final_status = muster.ctl_json("status", "--json")

        scaled = autoscale_events(events, offset)
        ready_t = kind_times(events, "ready", offset)
        started_t = kind_times(events, "started", offset)
        records = load.records

        # The step.
        step_t, low_t = phase_at["step"], phase_at["low"]
        base_lat = [(e - s) * 1e3 for s, e, ok, ph in records if ok and phase_at["baseline"] <= e < step_t]
        pre_p99 = percentile(base_lat, 99)
        serving_before = next((s[2] for s in reversed(poller.samples) if s[0] <= step_t), None)
        ups = [x for x in scaled if step_t <= x[0] < low_t and x[2] > x[1]]
        first_decision = ups[0] if ups else None
        peak = max((x[2] for x in ups), default=None)
        peak_decision = next((x for x in ups if x[2] == peak), None)
        # What the step asks for: ceil(clients / target) within [min, max]. A first tick that saw
        # only part of the step may decide fewer; the step is answered by the decision to this.
        needed = min(int(final_report.get("max") or 10), max(int(final_report.get("min") or 0),
                                                               math.ceil(args.step / args.target - 1e-9)))
        needed_decision = next((x for x in ups if x[2] >= needed), None)
        needed_s = needed_decision[0] - step_t if needed_decision else None
        new_ready = [t for t in ready_t if step_t <= t < low_t]
        new_needed = (peak - serving_before) if (peak is not None and serving_before is not None) else None
        first_serving = new_ready[0] - step_t if new_ready else None
        all_serving = new_ready[new_needed - 1] - step_t if new_needed and len(new_ready) >= new_needed else None
        threshold = pre_p99 * (1 + args.p99_slack)
        recovery = p99_recovery(records, step_t, low_t, threshold)
        step_peak_p99 = max((percentile([(e - s) * 1e3 for s, e, ok, _ in records if ok and step_t + k < e <= step_t + k + 1], 99)
                             for k in range(int(low_t - step_t))), default=float("nan"))
        late_step = [(e - s) * 1e3 for s, e, ok, _ in records if ok and (step_t + low_t) / 2 <= e < low_t]

        # Scale-down after the step, and to zero.
        downs = [x for x in scaled if low_t <= x[0] < idle_from and x[2] < x[1]]
        down_to_one = next((x[0] - low_t for x in downs if x[2] <= 1), None)
        last_busy = max((e for s, e, ok, ph in records if ph != "zero" and e <= idle_from + 30), default=idle_from)
        last_busy = max(last_busy, idle_from)
        to_zero = next((x for x in scaled if x[0] >= idle_from - 0.5 and x[2] == 0), None)

        # From zero: the request's way through the activator, from the events.
        for z in zero_rows:
            act = next((x[0] for x in scaled if z["sent"] - 0.05 <= x[0] <= z["done"] and x[1] == 0 and x[2] > 0), None)
            st = next((t for t in started_t if z["sent"] - 0.05 <= t <= z["done"]), None)
            rd = next((t for t in ready_t if z["sent"] - 0.05 <= t <= z["done"]), None)
            z["to_activator_ms"] = (act - z["sent"]) * 1e3 if act is not None else None
            z["to_started_ms"] = (st - act) * 1e3 if st is not None and act is not None else None
            z["to_ready_ms"] = (rd - st) * 1e3 if rd is not None and st is not None else None
            z["to_answer_ms"] = (z["done"] - rd) * 1e3 if rd is not None else None
        zero_lat = [z["latency_ms"] for z in zero_rows if z["ok"]]
        # Against the direct starts made in the zero phase: the same machine state as the
        # requests from zero (the VM's start-up times drift by 10 ms over a run).
        cold = median(near_first)
        overhead = median(zero_lat) - cold if zero_lat else None
        overhead_max = max(zero_lat) - cold if zero_lat else None

        total = len(records)
        failed = sum(1 for r in records if not r[2])

        busy_after = machine_busy()

        # Files.
        write_outputs(out, records, poller.samples, levels, zero_rows, duration)
        write_decisions(out, scaled)
        plot_note = plot(out, marks, scaled, poller.samples, levels, args.request_ms,
                         f"musterd autoscaler: {args.baseline} → {args.step} → {args.low} → 0 clients, target {args.target:g} per instance, "
                         f"{args.request_ms} ms a request, {args.workers} workers an instance ({'--quick' if args.quick else 'full'} run, "
                         f"{time.strftime('%Y-%m-%d')})")
        if args.docs_picture:
            svg = os.path.join(out, "timeline.svg")
            if os.path.exists(svg):
                os.makedirs(os.path.dirname(os.path.abspath(args.docs_picture)), exist_ok=True)
                shutil.copy(svg, args.docs_picture)
            else:
                contract_notes.append(f"no timeline.svg to copy to {args.docs_picture}")

        def verdict(ok):
            return "MET" if ok else "MISSED"

        decision_s = first_decision[0] - step_t if first_decision else None
        # Which tick decided, from the decisions themselves: the ticks' period is measured from
        # the gaps between tick decisions (not the activator's), and the tick before the step
        # lies a whole number of periods before the first decision.
        tick_times = [t for t, _, _, why in scaled if "activator" not in why and "outside the bounds" not in why]
        gaps = [(b - a) / round((b - a) / interval) for a, b in zip(tick_times, tick_times[1:])
                if round((b - a) / interval) >= 1]
        measured_period = median(gaps) if gaps else period
        tick_note = ""
        step_after_tick = None
        nth = None
        if decision_s is not None:
            nth = max(1, math.ceil(decision_s / measured_period - 1e-6))
            step_after_tick = nth * measured_period - decision_s
            tick_note = (f"; the step came {step_after_tick:.2f} s after a tick (aimed at {step_phase * period:.2f}), "
                         f"decided at the {ordinal(nth)} tick after it")
        rows = [
            ("step", f"{args.baseline} → {args.step} clients (target {args.target:g}, panic_threshold 2)", "", ""),
            ("  first decision", fmt(decision_s, " s") + (f"  ({first_decision[1]} → {first_decision[2]}{', panic' if '(panic)' in first_decision[3] else ''})" if first_decision else "  (none)"),
             "< 1 s", verdict(decision_s is not None and decision_s < 1.0)),
            ("", f"metrics_interval {interval:g}s, ticks every {measured_period:.4f} s{tick_note}", "", ""),
            (f"  decision to the {needed} it needs", fmt(needed_s, " s") + (f"  ({needed_decision[1]} → {needed_decision[2]})" if needed_decision else f"  (never; peak {peak})"),
             "< 1 s", verdict(needed_s is not None and needed_s < 1.0)),
            ("  first new instance serving", fmt(first_serving, " s"), "", ""),
            ("  all new instances serving", fmt(all_serving, " s") + (f"  ({serving_before} → {peak})" if peak else ""), "", ""),
            ("  p99 back under pre-step", fmt(recovery, " s") + f"  (pre-step p99 {pre_p99:.1f} ms, +{args.p99_slack:.0%} = {threshold:.1f} ms;"
             f" worst 1 s p99 in the step {step_peak_p99:.1f} ms; 2nd half of the step {percentile(late_step, 99):.1f} ms)", "", ""),
            ("scale-down", f"{args.step} → {args.low} clients", "", ""),
            ("  down to 1 instance", fmt(down_to_one, " s") + "  (" + ", ".join(f"{x[1]}→{x[2]} at +{x[0] - low_t:.1f}" for x in downs) + ")"
             + f"  window {mode['window']}s + scale_down_delay {mode['scale_down_delay']}s", "", ""),
            ("  to zero after the last request", fmt(to_zero[0] - last_busy if to_zero else None, " s") + f"  (scale_to_zero_after {mode['scale_to_zero_after']}s)", "", ""),
            ("backend start-up (direct)", f"exec → READY=1 median {median(near_ready):.1f} ms; exec → first answer median {cold:.1f} ms, "
             f"max {max(near_first):.1f} ms ({len(near_first)} starts in the zero phase)", "", ""),
            ("", f"before musterd: exec → READY=1 {median(ready_ms):.1f} ms, → first answer {median(first_ms):.1f} ms ({len(first_ms)} starts)", "", ""),
            ("first request from zero", f"median {fmt(median(zero_lat), ' ms', 1)}, max {fmt(max(zero_lat) if zero_lat else None, ' ms', 1)} ({len(zero_lat)} of {len(zero_rows)} ok)", "", ""),
            ("  activator overhead", f"median {fmt(overhead, ' ms', 1)}, max {fmt(overhead_max, ' ms', 1)}", "< 50 ms",
             verdict(overhead is not None and overhead < 50 and len(zero_lat) == len(zero_rows))),
            ("  musterd's own share", "median {} ms: request → activator decision, → instance started, and ready → answered, from its events".format(
                fmt(median([z["to_activator_ms"] + z["to_started_ms"] + z["to_answer_ms"] for z in zero_rows
                            if None not in (z.get("to_activator_ms"), z.get("to_started_ms"), z.get("to_answer_ms"))]), "", 1)), "", ""),
            ("  where it goes (median)", "request → activator decision {} ms, → started {} ms, → ready {} ms, → answered {} ms".format(
                *(fmt(median([z[k] for z in zero_rows if z.get(k) is not None]), "", 1)
                  for k in ("to_activator_ms", "to_started_ms", "to_ready_ms", "to_answer_ms"))), "", ""),
            ("failed requests", f"{failed} of {total}", "0", verdict(failed == 0)),
        ]
        width = max(len(r[0]) for r in rows) + 2
        lines = [f"{'figure':<{width}}{'value':<60}{'target':<10}result"]
        for name, value, target, result in rows:
            if len(value) > 58 and target:
                lines.append(f"{name:<{width}}{value}")
                lines.append(f"{'':<{width}}{'':<60}{target:<10}{result}")
            else:
                lines.append(f"{name:<{width}}{value:<60}{target:<10}{result}".rstrip())
        lines.append("")
        lines.append(f"machine busy (all CPUs, 1 s): {busy_before:.0%} before the run, {busy_after:.0%} after"
                     + ("  -- other work was running: figures are noisy" if max(busy_before, busy_after) > 0.15 else ""))
        if load.errors:
            lines.append("")
            lines.append("failures (first ones, t from the load's start):")
            lines += [f"  t={t:.2f}s {text}" for t, text in load.errors[:10]]
        if contract_notes:
            lines.append("")
            lines += [f"note: {n}" for n in contract_notes]
        lines.append("")
        lines.append("scaler decisions (t from the load's start):")
        lines += [f"  t={t:6.2f}s {a} → {b}, {why}" for t, a, b, why in scaled]
        lines.append("")
        lines.append(f"output: {out}/timeline.csv, decisions.csv, timeline.svg, timeline.png" + (f" ({plot_note})" if plot_note else ""))
        if args.docs_picture and os.path.exists(os.path.join(out, "timeline.svg")):
            lines.append(f"picture copied to {args.docs_picture}")
        text = "\n".join(lines)

        with open(os.path.join(out, "summary.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({
                "mode": "quick" if args.quick else "full", "phases": phases, "phase_start_s": phase_at, "idle_from_s": idle_from,
                "autoscale": {k: mode[k] for k in ("window", "panic_window", "scale_down_delay", "scale_to_zero_after")},
                "target": args.target, "request_ms": args.request_ms, "workers": args.workers,
                "step": {"first_decision_s": decision_s, "first_decision": first_decision, "step_phase": step_phase,
                         "step_after_tick_s": step_after_tick, "deciding_tick": nth, "tick_period_s": measured_period, "peak": peak,
                         "peak_decision_s": peak_decision[0] - step_t if peak_decision else None,
                         "needed": needed, "needed_decision_s": needed_s,
                         "first_serving_s": first_serving, "all_serving_s": all_serving, "serving_before": serving_before,
                         "pre_step_p99_ms": pre_p99, "p99_threshold_ms": threshold, "p99_recovery_s": recovery,
                         "worst_step_p99_ms": step_peak_p99, "late_step_p99_ms": percentile(late_step, 99)},
                "scale_down": {"down_to_one_s": down_to_one, "decisions": downs,
                               "to_zero_s": to_zero[0] - last_busy if to_zero else None},
                "backend_startup": {"before_musterd": {"ready_ms": ready_ms, "first_answer_ms": first_ms},
                                    "zero_phase": {"ready_ms": near_ready, "first_answer_ms": near_first}},
                "from_zero": zero_rows, "activator_overhead_ms": {"median": overhead, "max": overhead_max},
                "requests": total, "failed": failed, "errors": load.errors,
                "machine_busy": {"before": busy_before, "after": busy_after},
                "decisions": scaled, "contract_notes": contract_notes,
                "final_autoscale_report": final_report,
                "final_status_autoscale": [s.get("autoscale") for s in final_status.get("services", [])],
            }, f, indent=2, default=str)
        for src, name in ((muster.config, "musterd.toml"), (muster.manifest, f"{SERVICE}.toml"),
                          (os.path.join(tmp, "musterd.log"), "musterd.log"),
                          (os.path.join(tmp, "state", "events.log"), "events.log")):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(out, name))
        print(text, flush=True)
        return 0
    except Interrupted as why:
        log(f"scripts/bench/autoscale: interrupted ({why}); cleaning up")
        return 130
    except BenchError as error:
        log(f"scripts/bench/autoscale: {error}")
        if muster is not None and tmp is not None:
            for src, name in ((os.path.join(tmp, "musterd.log"), "musterd.log"),
                              (os.path.join(tmp, "state", "events.log"), "events.log")):
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(out, name))
            log(f"scripts/bench/autoscale: musterd's log and events are in {out}")
        return 1
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
