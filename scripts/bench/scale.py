#!/usr/bin/env python3
"""The scale benchmark's body; run it through scripts/bench/scale, which installs what it needs and
builds the binaries. For each N (100, 500, 1000, 2000) Muster and supervisord each run the same N
copies of `sleep 100000`, as N/10 services (programs) of 10 instances (numprocs) each, one daemon
at a time, and this prints, per N and for both:

  start    launch to the last instance running, from the daemon's own log (one launch)
  rss      the daemon's VmRSS with every instance running
  idle     the daemon's utime+stime over IDLE_SECONDS (30), as % of one core
  status   hyperfine's median for one `status` (musterctl vs supervisorctl; 10 runs)
  stop     `stop all` until it returns with every instance stopped

and for Muster: `musterctl reload` with nothing changed (hyperfine median), and a reload that
changes one service's command (the call, and until its 10 new instances run). Then the ratios,
the goals of issue 19 at N = 2,000, and scale.csv / scale.svg / scale.png (gnuplot) in --out.

Cleanup (daemons, their children, temp folders, Muster's cgroup root) runs on success, failure,
Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import spawn
from benchlib import (BenchError, Interrupted, Resources, log, machine_busy, memory_kib, raise_interrupted_on_signals, status_kib,
                      run_quiet)

PER_SERVICE = 10
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "30"))
STATUS_RUNS = int(os.environ.get("STATUS_RUNS", "10"))
# supervisord's start grows faster than linearly with N (its poll loop walks every process):
# minutes at 2,000 on two cores.
START_TIMEOUT = 900.0

GOALS = {   # at the largest N
    "idle": ("idle CPU <= 0.2% of a core", lambda m, s: m["idle"]["percent"] <= 0.2),
    "status": ("status <= 30 ms", lambda m, s: m["status"]["median"] <= 0.030),
    "rss": ("RSS <= 0.5x supervisord's", lambda m, s: m["rss_kib"] <= 0.5 * s["rss_kib"]),
    "start": ("start >= 10x faster", lambda m, s: s["all_running"] >= 10 * m["all_running"]),
    "reload": ("no-op reload <= 100 ms", lambda m, s: m["reload_noop"]["median"] <= 0.100),
}


def services(n):
    return [f"s{i:04d}" for i in range(1, n // PER_SERVICE + 1)]


class Muster(spawn.Muster):
    def __init__(self, res, bin_dir, n):
        super().__init__(res, bin_dir)
        self.instances = n
        self.start_timeout = START_TIMEOUT

    def write_services(self):
        for name in services(self.instances):
            self.write_service(name, spawn.SLEEP_ARGV, PER_SERVICE)

    def ctl(self, *args, timeout=120):
        return run_quiet([self.musterctl, *args, "--socket", self.socket], timeout=timeout)

    def stop_all_command(self):
        return [self.musterctl, "stop", "all", "--socket", self.socket]

    def running_pids(self, service):
        r = self.ctl("status", service, "--json")
        if r.returncode != 0:
            return None
        doc = json.loads(r.stdout)
        return {i["pid"] for s in doc["services"] for i in s["instances"] if i["state"] == "running"}


class Supervisord(spawn.Supervisord):
    def __init__(self, res, n):
        super().__init__(res)
        self.instances = n
        self.start_timeout = START_TIMEOUT

    def minfds(self):
        # Each child: three pipes and two log files. supervisord refuses to start when its hard
        # limit is below minfds, so ask for what N needs, within what this process may give.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return min(self.instances * 8 + 1024, hard if hard != resource.RLIM_INFINITY else 1 << 20)

    def programs(self):
        return "".join(self.program(name, PER_SERVICE) for name in services(self.instances))

    program_prefix = "s0"
    # supervisorctl status of 2,000 takes seconds; poll less often than the spawn benchmark.
    poll_interval = 0.5
    status_timeout = 120

    def stop_all_command(self):
        return ["supervisorctl", "-c", self.config, "stop", "all"]


def timed(argv, timeout=600):
    t0 = time.monotonic()
    r = run_quiet(argv, timeout=timeout)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` failed ({r.returncode}): {r.stdout.strip()[-400:]} {r.stderr.strip()[-400:]}")
    return elapsed, r


def measure_reloads(muster):
    """A reload with nothing changed (hyperfine), then one that changes one service's command:
    the call, and until that service's 10 instances are new processes, running."""
    log("   no-op reload: hyperfine on `musterctl reload`")
    _, dry = timed([muster.musterctl, "reload", "--dry-run", "--socket", muster.socket])
    if "restart" in dry.stdout or "start new" in dry.stdout:
        raise BenchError(f"the no-op reload would change something:\n{dry.stdout}")
    noop = spawn.hyperfine("muster-reload", f"{muster.musterctl} reload --socket {muster.socket}", muster.tmp,
                           runs=STATUS_RUNS, warmup=2)
    changed = []
    name = services(muster.instances)[0]
    for run in range(3):
        before = muster.running_pids(name) or set()
        muster.write_service(name, ["/bin/sleep", str(100001 + run)], PER_SERVICE)
        call, r = timed([muster.musterctl, "reload", "--socket", muster.socket])
        if f"restart {name}" not in r.stdout:
            raise BenchError(f"reload did not restart {name}:\n{r.stdout}")
        t0 = time.monotonic() - call
        while True:
            pids = muster.running_pids(name) or set()
            if len(pids) == PER_SERVICE and not (pids & before):
                break
            if time.monotonic() - t0 > 120:
                raise BenchError(f"{name} not running again 120 s after its reload")
            time.sleep(0.01)
        changed.append({"call": call, "running": time.monotonic() - t0})
    return noop, {"call": statistics.median(c["call"] for c in changed),
                  "running": statistics.median(c["running"] for c in changed), "runs": changed}


def rss_split_kib(pid):
    """VmRSS in its parts (proc(5)): anonymous memory (the heap, what grows with the work) and
    file-backed pages (the binary's and libraries' code and data mapped from the page cache,
    shared with any other process mapping them)."""
    figures = status_kib(pid)
    return {key: figures[key] for key in ("RssAnon", "RssFile", "RssShmem") if key in figures}


def measure(res, target):
    log(f"== {target.name}, {target.instances} instances")
    daemon, figures = spawn.launch_until_running(res, target)
    log(f"   all {target.instances} running after {figures['all_running'] * 1000:.0f} ms (the daemon's log)")
    time.sleep(2.0)   # let start-up work (log writes, cleanup tasks) settle
    result = {"all_running": figures["all_running"], "launch": figures, "rss_kib": memory_kib(daemon.pid, "VmRSS"),
              "rss_split_kib": rss_split_kib(daemon.pid),
              "threads": spawn.thread_count(daemon.pid), "fds": len(os.listdir(f"/proc/{daemon.pid}/fd"))}
    log(f"   status: hyperfine on `{target.status_command()}`")
    result["status"] = spawn.hyperfine(f"{target.name}-{target.instances}", target.status_command(), target.tmp,
                                       runs=STATUS_RUNS, warmup=2)
    time.sleep(2.0)
    log(f"   idle CPU over {IDLE_SECONDS:g} s")
    result["idle"] = spawn.idle_cpu(daemon, IDLE_SECONDS)
    result["rss_kib_after_idle"] = memory_kib(daemon.pid, "VmRSS")
    if isinstance(target, Muster):
        result["reload_noop"], result["reload_one"] = measure_reloads(target)
    log("   stop all")
    result["stop"], _ = timed(target.stop_all_command())
    spawn.stop_daemon(res, target, daemon)
    spawn.cleanup_between(res, target)
    return result


def ms(x):
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.1f} s"


def report(rows):
    header = ["N", "start muster", "start sup", "x", "RSS muster", "RSS sup", "x", "idle muster", "idle sup",
              "status muster", "status sup", "x", "stop muster", "stop sup", "x", "reload no-op", "reload 1 svc"]
    table = [header]
    for n, m, s in rows:
        table.append([str(n), ms(m["all_running"]), ms(s["all_running"]), f"{s['all_running'] / m['all_running']:.1f}",
                      f"{m['rss_kib'] / 1024:.1f} MiB", f"{s['rss_kib'] / 1024:.1f} MiB", f"{m['rss_kib'] / s['rss_kib']:.2f}",
                      f"{m['idle']['percent']:.3f}%", f"{s['idle']['percent']:.3f}%",
                      ms(m["status"]["median"]), ms(s["status"]["median"]), f"{s['status']['median'] / m['status']['median']:.1f}",
                      ms(m["stop"]), ms(s["stop"]), f"{s['stop'] / m['stop']:.1f}",
                      ms(m["reload_noop"]["median"]),
                      f"{ms(m['reload_one']['call'])} / {ms(m['reload_one']['running'])}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"scale benchmark: N x `{' '.join(spawn.SLEEP_ARGV)}` as N/{PER_SERVICE} services of {PER_SERVICE}, "
             f"{os.cpu_count()} CPUs; x = supervisord/muster (RSS: muster/supervisord); idle over {IDLE_SECONDS:g} s; "
             f"status median of {STATUS_RUNS}; reload 1 svc = the call / until its {PER_SERVICE} new instances run", ""]
    for r in table:
        lines.append("  ".join(r[i].rjust(widths[i]) for i in range(len(r))))
    n, m, s = rows[-1]
    lines.append("")
    lines.append(f"goals at N = {n}:")
    met = {}
    for key, (text, check) in GOALS.items():
        met[key] = bool(check(m, s))
        lines.append(f"  {text}: {'MET' if met[key] else 'MISSED'}")
    lines.append(f"goals met: {sum(met.values())} of {len(met)}")
    for n, m, s in rows:
        ma, sa = m["rss_split_kib"], s["rss_split_kib"]
        lines.append(f"N={n}: RSS = anonymous + file-backed: musterd {ma['RssAnon'] / 1024:.1f} + {ma['RssFile'] / 1024:.1f} MiB, "
                     f"supervisord {sa['RssAnon'] / 1024:.1f} + {sa['RssFile'] / 1024:.1f} MiB "
                     f"(anonymous {ma['RssAnon'] / sa['RssAnon']:.2f}x)")
        lines.append(f"N={n}: musterd {m['threads']} threads, {m['fds']} descriptors, RSS {m['rss_kib_after_idle'] / 1024:.1f} MiB "
                     f"after idle; supervisord {s['fds']} descriptors; muster status mean {ms(m['status']['mean'])} "
                     f"+- {ms(m['status']['stddev'])}; reload no-op min {ms(m['reload_noop']['min'])}")
    return "\n".join(lines), met


def plot(rows, out):
    csv = os.path.join(out, "scale.csv")
    with open(csv, "w") as f:
        f.write("n,start_muster_s,start_supervisord_s,rss_muster_mib,rss_supervisord_mib,idle_muster_pct,"
                "idle_supervisord_pct,status_muster_ms,status_supervisord_ms,stop_muster_s,stop_supervisord_s,"
                "reload_noop_ms,reload_one_running_s\n")
        for n, m, s in rows:
            f.write(f"{n},{m['all_running']:.4f},{s['all_running']:.4f},{m['rss_kib'] / 1024:.2f},{s['rss_kib'] / 1024:.2f},"
                    f"{m['idle']['percent']:.4f},{s['idle']['percent']:.4f},{m['status']['median'] * 1000:.2f},"
                    f"{s['status']['median'] * 1000:.2f},{m['stop']:.4f},{s['stop']:.4f},"
                    f"{m['reload_noop']['median'] * 1000:.2f},{m['reload_one']['running']:.4f}\n")
    sizes = [n for n, _, _ in rows]
    gp = os.path.join(out, "scale.gp")
    with open(gp, "w") as f:
        f.write(f"""# gnuplot scale.gp draws scale.svg from scale.csv; gnuplot -e "fmt='png'" scale.gp draws scale.png
if (!exists("fmt")) fmt = 'svg'
if (fmt eq 'svg') {{
    set terminal svg size 1200,800 noenhanced font 'sans,11' background rgb 'white'
    set output 'scale.svg'
}} else {{
    set terminal pngcairo size 1200,800 noenhanced font ',10'
    set output 'scale.png'
}}
set datafile separator ','
set multiplot layout 2,2 title 'Muster and supervisord 4.2 with N sleeping programs (2-core VM; log scales)' font ',12'
set grid
set logscale xy
set xrange [{min(sizes) * 0.8:g}:{max(sizes) * 1.25:g}]
set xlabel 'instances (N)'
set key top left
set title 'time to all running'
set ylabel 'seconds'
plot 'scale.csv' using 1:2 with linespoints lw 2 title 'muster', '' using 1:3 with linespoints lw 2 title 'supervisord'
set title 'daemon RSS'
set ylabel 'MiB'
plot 'scale.csv' using 1:4 with linespoints lw 2 title 'muster', '' using 1:5 with linespoints lw 2 title 'supervisord'
set title 'status command (median)'
set ylabel 'ms'
plot 'scale.csv' using 1:8 with linespoints lw 2 title 'musterctl status', '' using 1:9 with linespoints lw 2 title 'supervisorctl status', '' using 1:12 with linespoints lw 2 title 'musterctl reload (no-op)'
set title 'idle daemon CPU'
set ylabel '% of one core'
plot 'scale.csv' using 1:($6 > 0 ? $6 : 0.001) with linespoints lw 2 title 'muster', '' using 1:($7 > 0 ? $7 : 0.001) with linespoints lw 2 title 'supervisord'
unset multiplot
""")
    notes = []
    if shutil.which("gnuplot") is None:
        return ["gnuplot not installed: no scale.svg"]
    for fmt in ("svg", "png"):
        r = subprocess.run(["gnuplot", "-e", f"fmt='{fmt}'", "scale.gp"], cwd=out, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            notes.append(f"gnuplot ({fmt}) failed: {r.stderr.strip()}")
    return notes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="folder with release musterd and musterctl")
    parser.add_argument("--sizes", default=os.environ.get("SIZES", "100,500,1000,2000"),
                        help="comma-separated N, each a multiple of 10 (default 100,500,1000,2000)")
    parser.add_argument("--out", help="folder for scale.csv, scale.svg, scale.png, results.json")
    parser.add_argument("--docs-picture", help="also copy scale.svg here (docs/scale.svg)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/bench/scale: run as root (musterd creates cgroups)")
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if not sizes or any(n < PER_SERVICE or n % PER_SERVICE for n in sizes):
        sys.exit(f"scripts/bench/scale: --sizes must be multiples of {PER_SERVICE}, like 100,500,1000,2000")
    out = args.out or os.path.join("/tmp", "muster-bench-scale-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    spawn.RESULTS_DIR = out

    # Both daemons inherit this soft limit: 2,000 supervisord children need ~17,000 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    raise_interrupted_on_signals()
    res = Resources("bench-scale")
    try:
        for argv in ([os.path.join(args.bin_dir, "musterd"), "--version"], [os.path.join(args.bin_dir, "musterctl"), "--version"],
                     ["supervisord", "--version"], ["supervisorctl", "--help"]):
            run_quiet(argv)
        version = run_quiet(["supervisord", "--version"]).stdout.strip()
        busy0 = machine_busy(2.0) * 100
        log(f"supervisord {version}; musterd from {args.bin_dir}; sizes {sizes}; idle window {IDLE_SECONDS:g} s; "
            f"machine busy before the run: {busy0:.0f}%")
        rows = []
        for n in sizes:
            m = measure(res, Muster(res, args.bin_dir, n))
            s = measure(res, Supervisord(res, n))
            rows.append((n, m, s))
        text, met = report(rows)
        busy1 = machine_busy(2.0) * 100
        text += f"\nother work on the machine: {busy0:.0f}% of all CPUs busy before the run, {busy1:.0f}% after"
        notes = plot(rows, out)
        text += f"\noutput: {out}/scale.csv, scale.svg, scale.png, results.json" + (f" ({'; '.join(notes)})" if notes else "")
        if args.docs_picture and os.path.exists(os.path.join(out, "scale.svg")):
            shutil.copy(os.path.join(out, "scale.svg"), args.docs_picture)
            text += f"\ncopied scale.svg to {args.docs_picture}"
        print(text, flush=True)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"sizes": sizes, "per_service": PER_SERVICE, "idle_seconds": IDLE_SECONDS, "supervisord_version": version,
                       "rows": [{"n": n, "muster": m, "supervisord": s} for n, m, s in rows], "met": met,
                       "machine_busy_percent": [busy0, busy1]}, f, indent=2)
        with open(os.path.join(out, "summary.txt"), "w") as f:
            f.write(text + "\n")
        return 0
    except Interrupted as why:
        log(f"scripts/bench/scale: interrupted ({why}); cleaning up")
        return 130
    except BenchError as error:
        log(f"scripts/bench/scale: {error}")
        return 1
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
