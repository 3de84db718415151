#!/usr/bin/env python3
"""The viewers benchmark's body; run it through scripts/bench/viewers, which installs what it
needs and builds the binaries. What watching costs the daemon: musterd with N sleeping instances
(default 20) and its dashboard listener, its own CPU (utime+stime of the musterd process, not its
instances) over --seconds in each phase:

  none        nobody watching
  top         `musterctl top` open in a tmux pane (a refresh a second)
  dashboard   the dashboard open in headless Chromium (its live feed: a tick a second)
  both        top and the dashboard

and, side by side, supervisord with the same N programs:

  supervisord        nobody watching
  supervisord-web    its web UI's status page fetched once a second (what a page that refreshes
                     itself every second costs it; supervisord has no live view)

It prints each phase's daemon CPU as a share of one core, the viewers' own CPU, and the ratios
to Muster's idle and to supervisord's. Cleanup (musterd and its instances, supervisord and its
programs, tmux, Chromium, the temp folder, Muster's cgroup root) runs on success, failure,
Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import benchlib
from benchlib import (BenchError, Interrupted, Process, Resources, log, proc_stat, raise_interrupted_on_signals,
                      run_quiet, wait_until)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    fields = proc_stat(pid)
    return (int(fields[14]) + int(fields[15])) / CLK_TCK if fields else 0.0


class Tmux:
    """A tmux server of its own (-L), killed in cleanup: tmux daemonizes out of our session."""

    def __init__(self, name):
        self.name = name
        self.server = f"muster-viewers-{uuid.uuid4().hex[:8]}"

    def start(self, command):
        r = run_quiet(["tmux", "-L", self.server, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40", command])
        if r.returncode != 0:
            raise BenchError(f"tmux: {r.stderr.strip()}")

    def pane_pids(self):
        r = run_quiet(["tmux", "-L", self.server, "list-panes", "-a", "-F", "#{pane_pid}"])
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def stop(self):
        run_quiet(["tmux", "-L", self.server, "kill-server"])


def write_muster(tmp, root, count, dashboard_port, ports):
    os.makedirs(f"{tmp}/services.d")
    with open(f"{tmp}/musterd.toml", "w") as f:
        f.write(f"""[daemon]
services_dir = "services.d"
control_socket = "run/muster.sock"
state_dir = "state"
log_dir = "log"
cgroup_root = "{root}"
instance_ports = "{ports}"
dashboard_listen = "127.0.0.1:{dashboard_port}"
""")
    with open(f"{tmp}/services.d/sleepers.toml", "w") as f:
        f.write(f'command = ["/bin/sleep", "100000"]\ninstances = {count}\n[restart]\nstart_seconds = 0.2\n[stop]\ntimeout = "2s"\n')


def write_supervisord(tmp, count, web_port):
    with open(f"{tmp}/supervisord.conf", "w") as f:
        f.write(f"""[supervisord]
nodaemon=true
logfile={tmp}/supervisord.log
pidfile={tmp}/supervisord.pid
childlogdir={tmp}
[unix_http_server]
file={tmp}/supervisor.sock
[inet_http_server]
port=127.0.0.1:{web_port}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{tmp}/supervisor.sock
[program:sleepers]
command=/bin/sleep 100000
numprocs={count}
process_name=%(program_name)s_%(process_num)02d
startsecs=0
autorestart=true
""")


def measure(pid, seconds, viewers=(), poll=None):
    """The daemon's CPU over `seconds` as a share of one core, and the viewers' (pids) total."""
    before = process_cpu_seconds(pid)
    viewers_before = sum(benchlib.session_cpu_seconds(v) for v in viewers)
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        if poll:
            poll()
        time.sleep(min(1.0, max(0, deadline - time.monotonic())))
    elapsed = time.monotonic() - start
    return ((process_cpu_seconds(pid) - before) / elapsed * 100,
            (sum(benchlib.session_cpu_seconds(v) for v in viewers) - viewers_before) / elapsed * 100)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60, help="per phase (default 60)")
    parser.add_argument("--dashboard-port", type=int, default=19090)
    parser.add_argument("--supervisord-port", type=int, default=19091)
    parser.add_argument("--instance-ports", default="26000-26999")
    args = parser.parse_args()
    raise_interrupted_on_signals()
    res = Resources("muster-bench-viewers")
    results = {}
    try:
        tmp = res.temp_dir("run")
        root = f"muster-bench-viewers-{uuid.uuid4().hex[:8]}"
        res.cgroup_roots.append(root)
        write_muster(tmp, root, args.instances, args.dashboard_port, args.instance_ports)
        musterctl = os.path.join(args.bin_dir, "musterctl")
        sock = f"{tmp}/run/muster.sock"
        musterd = res.start(Process("musterd", [os.path.join(args.bin_dir, "musterd"), "--config", f"{tmp}/musterd.toml"],
                                    f"{tmp}/musterd.log", stop_argv=[musterctl, "shutdown", "--socket", sock]))

        def all_running():
            r = run_quiet([musterctl, "status", "--json", "--socket", sock])
            if r.returncode != 0:
                return False
            instances = json.loads(r.stdout)["services"][0]["instances"]
            return len(instances) == args.instances and all(i["state"] == "running" for i in instances)

        wait_until(all_running, 60, f"{args.instances} instances running under musterd")
        time.sleep(3)   # the start's own work (events, first samples) out of the way
        log(f"musterd pid {musterd.pid}: {args.instances} instances running; {args.seconds:.0f} s a phase")

        results["none"] = measure(musterd.pid, args.seconds)
        log(f"none: musterd {results['none'][0]:.3f} %")

        tmux = Tmux("top")
        res.processes.append(tmux)
        tmux.start(f"{musterctl} top --socket {sock}")
        time.sleep(2)
        results["top"] = measure(musterd.pid, args.seconds, tmux.pane_pids())
        log(f"top: musterd {results['top'][0]:.3f} %, top {results['top'][1]:.3f} %")
        tmux.stop()

        profile = res.temp_dir("chromium")
        chromium = res.start(Process("chromium", ["/usr/bin/chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                                                  "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                                                  f"http://127.0.0.1:{args.dashboard_port}/"], f"{tmp}/chromium.log"))
        time.sleep(5)   # the page loaded and its feed open
        results["dashboard"] = measure(musterd.pid, args.seconds, [chromium.pid])
        log(f"dashboard: musterd {results['dashboard'][0]:.3f} %, chromium {results['dashboard'][1]:.3f} %")

        tmux.start(f"{musterctl} top --socket {sock}")
        time.sleep(2)
        results["both"] = measure(musterd.pid, args.seconds, [chromium.pid] + tmux.pane_pids())
        log(f"both: musterd {results['both'][0]:.3f} %")
        tmux.stop()
        chromium.stop()
        musterd.stop()

        sup_tmp = res.temp_dir("supervisord")
        write_supervisord(sup_tmp, args.instances, args.supervisord_port)
        supervisord = res.start(Process("supervisord", ["/usr/bin/supervisord", "-c", f"{sup_tmp}/supervisord.conf"],
                                        f"{sup_tmp}/out.log"))

        def sup_running():
            r = run_quiet(["/usr/bin/supervisorctl", "-c", f"{sup_tmp}/supervisord.conf", "status"])
            return r.stdout.count("RUNNING") == args.instances

        wait_until(sup_running, 60, f"{args.instances} programs running under supervisord")
        time.sleep(3)
        results["supervisord"] = measure(supervisord.pid, args.seconds)
        log(f"supervisord: {results['supervisord'][0]:.3f} %")

        def fetch():
            urllib.request.urlopen(f"http://127.0.0.1:{args.supervisord_port}/", timeout=5).read()

        results["supervisord-web"] = measure(supervisord.pid, args.seconds, poll=fetch)
        log(f"supervisord-web: {results['supervisord-web'][0]:.3f} %")
    except (BenchError, Interrupted) as error:
        log(f"viewers: {error}")
        res.cleanup()
        return 1
    finally:
        res.cleanup()

    idle = results["none"][0]
    sup = results["supervisord"][0]
    print(f"\nviewers benchmark: {args.instances} sleeping instances, {args.seconds:.0f} s a phase, "
          f"daemon CPU as % of one core (utime+stime of the daemon process only)")
    print(f"{'phase':<18}{'daemon %':>10}{'viewer %':>10}{'vs idle':>9}{'vs supervisord':>16}")
    for name in ["none", "top", "dashboard", "both", "supervisord", "supervisord-web"]:
        daemon, viewer = results[name]
        base = idle if not name.startswith("supervisord") else sup
        print(f"{name:<18}{daemon:>10.3f}{viewer:>10.2f}{daemon / base if base else float('nan'):>9.2f}"
              f"{daemon / sup if sup else float('nan'):>16.2f}")
    both = results["both"][0]
    print(f"goal: musterd under 0.5 % with top and the dashboard open: {both:.3f} % "
          f"({'met' if both < 0.5 else 'NOT met'})")
    print(f"musterd watched by both / supervisord with its page fetched every second: "
          f"{both / results['supervisord-web'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
