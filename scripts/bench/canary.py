"""Canary deploy benchmark: musterd's canary judged under load.

One http service (Tests/IntegrationTests/Fixtures/backend.py, 3 instances) behind musterd's proxy,
`[deploy] strategy = "canary"` (1 canary instance, canary_weight, canary_duration, max_error_rate
1%). A closed-loop load (--clients keep-alive clients, back to back) runs throughout. Two deploys:

  bad:  a version answering 500 (BEHAVIOR=fail). Prints the share of client errors during the
        run, how long the bad version served (first to last 500 a client saw), and the time from
        `musterctl deploy` to the canary ready and to the rollback (revision rolled back, canary
        out of status).
  good: a version answering 200. Prints client errors, and the time from `deploy` to the canary
        ready, to `promoted`, and to full promotion (every instance of the new revision, the
        canary gone).
  baseline: the same bad version with `strategy = "rolling"`, what a supervisor without a
        canary does (supervisord, PM2 reload, systemd units behind HAProxy): every instance is
        replaced by one that answers 500. Client errors are counted over as long a window as the
        bad canary deploy took to settle, and the run prints canary errors / rolling errors.
"""
import argparse
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BenchError, HTTPClient, Interrupted, Process, Resources, log, port_free,  # noqa: E402
                      raise_interrupted_on_signals, run_quiet, wait_until)

SERVICE = "web"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = os.path.join(ROOT, "Tests", "IntegrationTests", "Fixtures", "backend.py")


class Load:
    """Closed loop: each client sends GET / back to back; every answer is recorded."""

    def __init__(self, port, clients):
        self.port = port
        self.stopping = False
        self.lock = threading.Lock()
        self.records = []     # (monotonic time of the answer, ok)
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=20)

    def client(self):
        conn = HTTPClient(self.port, 15.0)
        while not self.stopping:
            try:
                ok = conn.get("/") == 200
            except (OSError, ValueError):
                ok = False
                conn.close()
            with self.lock:
                self.records.append((time.monotonic(), ok))
        conn.close()

    def window(self, start, end):
        with self.lock:
            return [r for r in self.records if start <= r[0] <= end]


def manifest(port, version, behavior, args, strategy="canary"):
    return f"""command = ["/usr/bin/python3", "{BACKEND}"]
instances = 3
environment = {{ BEHAVIOR = "{behavior}", VERSION = "{version}" }}
[restart]
start_seconds = 0.2
[stop]
timeout = "5s"
[proxy]
listen = ["127.0.0.1:{port}"]
protocol = "http"
drain_timeout = "5s"
[health]
check = "http"
path = "/healthz"
interval = "200ms"
rise = 1
fall = 2
[deploy]
strategy = "{strategy}"
canary_instances = 1
canary_weight = "{args.weight}%"
canary_duration = "{args.duration}s"
max_error_rate = "1%"
"""


class Muster:
    def __init__(self, res, bin_dir, tmp, base_port):
        self.musterd = os.path.join(bin_dir, "musterd")
        self.musterctl = os.path.join(bin_dir, "musterctl")
        self.res = res
        self.tmp = tmp
        root = f"muster-bench-canary-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        res.cgroup_roots.append(root)
        os.makedirs(os.path.join(tmp, "services.d"))
        self.socket = os.path.join(tmp, "run", "muster.sock")
        self.config = os.path.join(tmp, "musterd.toml")
        self.path = os.path.join(tmp, "services.d", f"{SERVICE}.toml")
        with open(self.config, "w") as f:
            f.write(f"""[daemon]
services_dir   = "services.d"
control_socket = "{self.socket}"
state_dir      = "{tmp}/state"
log_dir        = "{tmp}/log"
cgroup_root    = "{root}"
instance_ports = "{base_port}-{base_port + 63}"
""")

    def write(self, text):
        with open(self.path + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.path + ".tmp", self.path)

    def start(self):
        return self.res.start(Process("musterd", [self.musterd, "--config", self.config], os.path.join(self.tmp, "musterd.log"),
                                      [self.musterctl, "shutdown", "--socket", self.socket]))

    def ctl(self, *argv):
        r = run_quiet([self.musterctl, *argv, "--socket", self.socket])
        return r.returncode, r.stdout

    def status(self):
        code, out = self.ctl("status", "--json", SERVICE)
        if code != 0:
            return None
        return json.loads(out)["services"][0]

    def history(self):
        code, out = self.ctl("history", SERVICE, "--json")
        return json.loads(out)["revisions"] if code == 0 else []


def deploy_and_follow(muster, load, version, behavior, args, port):
    """Deploys `version` and polls until the canary is decided and settled; returns the figures."""
    before = {i["pid"] for i in muster.status()["instances"]}
    muster.write(manifest(port, version, behavior, args))
    sent = time.monotonic()
    sent_wall = time.time()
    code, out = muster.ctl("deploy", SERVICE)
    if code != 0:
        raise BenchError(f"musterctl deploy failed: {out}")
    decided_at = settled_at = None
    outcome = None
    deadline = sent + args.duration + args.settle_timeout
    while time.monotonic() < deadline:
        s = muster.status()
        now = time.monotonic()
        canary = s.get("canary") if s else None
        if outcome is None:
            last = muster.history()[-1]
            if not last["outcome"].startswith("canary"):
                outcome, decided_at = last["outcome"], now
        if outcome is not None and canary is None:
            new = all(i["ready"] and i["pid"] not in before for i in s["instances"])
            if outcome != "promoted" or new:
                settled_at = now
                break
        time.sleep(0.05)
    if settled_at is None:
        with open(os.path.join(muster.tmp, "musterd.log"), errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        raise BenchError(f"the canary of version {version} was not settled within {deadline - sent:.0f} s "
                         f"(outcome {outcome}); status: {json.dumps(muster.status())[:1500]}\nmusterd log:\n{tail}")
    # The canary's own moments, from musterd's events (a poller can miss a ready-to-rolled-back
    # spell shorter than its period).
    _, out = muster.ctl("events", "--json")
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    def at(kind):
        times = [e["time"] - sent_wall for e in events if e.get("kind") == kind and e["time"] >= sent_wall]
        return times[0] if times else None
    ready_at = at("canary-ready")
    decided = at("canary-promoted" if outcome == "promoted" else "canary-rolled-back")
    time.sleep(1.0)
    window = load.window(sent, time.monotonic())
    failed = [t for t, ok in window if not ok]
    return {
        "outcome": outcome, "requests": len(window), "failed": len(failed),
        "ready": ready_at if ready_at is not None else float("nan"),
        "decided": decided if decided is not None else decided_at - sent, "settled": settled_at - sent,
        "bad_served": (failed[-1] - failed[0]) if len(failed) > 1 else 0.0,
    }


def rolling_bad_deploy(muster, load, version, args, port, window):
    """Deploys a bad `version` with strategy rolling; client errors over `window` s from deploy."""
    before = {i["pid"] for i in muster.status()["instances"]}
    muster.write(manifest(port, version, "fail", args, strategy="rolling"))
    sent = time.monotonic()
    code, out = muster.ctl("deploy", SERVICE)
    if code != 0:
        raise BenchError(f"musterctl deploy failed: {out}")
    wait_until(lambda: (s := muster.status()) is not None and len(s["instances"]) == 3
               and all(i["ready"] and i["pid"] not in before for i in s["instances"]), 60,
               f"3 ready instances of version {version} (rolling)")
    replaced = time.monotonic() - sent
    time.sleep(max(0.0, sent + window - time.monotonic()))
    records = load.window(sent, sent + window)
    return {"requests": len(records), "failed": sum(1 for _, ok in records if not ok), "replaced": replaced}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (default 8)")
    parser.add_argument("--weight", type=float, default=10, help="canary_weight in percent (default 10)")
    parser.add_argument("--duration", type=float, default=10, help="canary_duration in seconds (default 10)")
    parser.add_argument("--settle-timeout", type=float, default=120, help="s after canary_duration for the deploy to settle")
    parser.add_argument("--base-port", type=int, default=23000, help="instances BASE..BASE+63, proxy BASE+100")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/bench/canary: run as root (musterd creates cgroups)")
    raise_interrupted_on_signals()
    res = Resources("bench-canary")
    port = args.base_port + 100
    load = None
    try:
        if not port_free(port):
            raise BenchError(f"port {port} is in use (pick another --base-port)")
        tmp = res.temp_dir("run")
        os.chmod(tmp, 0o755)
        muster = Muster(res, args.bin_dir, tmp, args.base_port)
        muster.write(manifest(port, 1, "ok", args))
        muster.start()
        wait_until(lambda: (s := muster.status()) is not None and sum(i["ready"] for i in s["instances"]) == 3, 60,
                   "3 ready instances of web")
        load = Load(port, args.clients)
        load.start()
        time.sleep(2)
        log(f"load: {args.clients} closed-loop clients; canary_weight {args.weight:g}%, canary_duration {args.duration:g}s, max_error_rate 1%")
        bad = deploy_and_follow(muster, load, 2, "fail", args, port)
        good = deploy_and_follow(muster, load, 3, "ok", args, port)
        rolling = rolling_bad_deploy(muster, load, 4, args, port, bad["settled"] + 1.0)
        load.stop()
        load = None
        print(f"bad version (answers 500): {bad['outcome']}")
        print(f"  client errors: {bad['failed']} of {bad['requests']} requests ({100 * bad['failed'] / max(1, bad['requests']):.2f}%)"
              f" from deploy to settled")
        print(f"  the bad version served for {bad['bad_served']:.2f} s (first to last 500 a client saw)")
        print(f"  deploy → canary ready {bad['ready']:.2f} s, → rolled back {bad['decided']:.2f} s, → canary gone {bad['settled']:.2f} s")
        print(f"good version: {good['outcome']}")
        print(f"  client errors: {good['failed']} of {good['requests']} requests")
        print(f"  deploy → canary ready {good['ready']:.2f} s, → promoted {good['decided']:.2f} s, "
              f"→ fully promoted (3 new instances, canary gone) {good['settled']:.2f} s")
        bad_share = bad["failed"] / max(1, bad["requests"])
        rolling_share = rolling["failed"] / max(1, rolling["requests"])
        print(f"baseline, the bad version with strategy rolling (no canary): every instance replaced in {rolling['replaced']:.2f} s")
        print(f"  client errors: {rolling['failed']} of {rolling['requests']} requests ({100 * rolling_share:.2f}%)"
              f" over the same {bad['settled'] + 1.0:.2f} s window, and they go on until someone rolls back")
        ratio = bad_share / rolling_share if rolling_share > 0 else float("nan")
        print(f"ratio canary / rolling client errors: {ratio:.3f} ({bad['failed']} vs {rolling['failed']} failed requests)")
    except (BenchError, Interrupted) as error:
        log(f"scripts/bench/canary: {error}")
        return 1
    finally:
        if load is not None:
            load.stop()
        res.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
