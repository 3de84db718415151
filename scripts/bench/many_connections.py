"""The proxy benchmark's many-connections run (scripts/bench/proxy --many 20000): what a proxy
costs per connection it holds, and how it serves that many at once.

For one proxy target at a time:

  held   In a freshly started proxy of its own (memory another target freed in the same
         process would be reused and hide the cost), `hold` opens N keep-alive connections from
         127.0.0.2 (a source address of their own, so the load's ports from 127.0.0.1 never
         compete with them), sends one GET on each and reads its answer, then leaves them idle.
         The proxy's VmRSS before and with all N open gives its memory per idle connection.
         Then that proxy is stopped.
  load   On the main run's proxies, in interleaved rounds, `load` runs several wrk processes
         (started a second apart, one thread each, N/loaders connections each, --timeout 10s, the
         kernel's ListenOverflows counted), so N connections are
         busy together: req/s is their sum, p50 the median of their p50s, p99 the highest of
         their p99s (the worst loader, not an average of percentiles). The proxy's peak RSS
         during the load (VmHWM, reset through clear_refs before it) and its CPU are read too.

Kernel memory for the sockets (their buffers live in the kernel) is not in either proxy's RSS and
is the same for both; what is compared is what the proxy process itself keeps per connection.
"""
import errno
import math
import os
import resource
import selectors
import socket
import statistics
import time

from benchlib import BenchError, Process, log, memory_kib

IP_BIND_ADDRESS_NO_PORT = 24   # linux/in.h: the port is chosen at connect, per destination
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# How many connects (and first requests) may be under way at once: well under the listen backlog
# (somaxconn 4096), so no SYN is dropped and retried a second later.
WINDOW = 1000
STAGGER = 1.0


def fit_descriptor_limit(asked, loaders):
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (every process the benchmark
    starts inherits it) and returns how many connections fit, with a note when fewer than asked.
    A tcp proxy holds two descriptors a connection (client and instance) in one process, Muster's
    proxy leaves a sixteenth of the limit to the rest of musterd (DescriptorReserve), and raising
    the hard limit needs CAP_SYS_RESOURCE, which not every host grants (the 2-core VMs this
    project is measured on have a hard limit of 20,000 and no CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard == resource.RLIM_INFINITY:
        return asked, None
    step = 500 * loaders // math.gcd(500, loaders)
    fits = (hard - max(256, hard // 16) - 500) // 2 // step * step
    if asked <= fits:
        return asked, None
    return fits, (f"{asked} connections asked, {fits} run: the hard descriptor limit here is {hard} and cannot be raised "
                  f"(no CAP_SYS_RESOURCE); a tcp proxy holds 2 descriptors a connection, and Muster's keeps "
                  f"{max(256, hard // 16)} for the rest of musterd")


def reset_peak_rss(pid):
    """Writing 5 to clear_refs resets VmHWM to the current RSS (proc(5))."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def hold(port, count, source="127.0.0.2", timeout=120):
    """Opens `count` connections to 127.0.0.1:port, one GET answered on each; returns the open
    sockets. Raises BenchError when a connection fails or the whole takes over `timeout` s."""
    selector = selectors.DefaultSelector()
    held = []
    under_way = 0
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(held) < count:
            while started < count and under_way < WINDOW:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((source, 0))
                code = s.connect_ex(("127.0.0.1", port))
                if code not in (0, errno.EINPROGRESS):
                    s.close()
                    raise BenchError(f"connection {started + 1} of {count} to port {port}: {os.strerror(code)}")
                selector.register(s, selectors.EVENT_WRITE, [b"", False])
                started += 1
                under_way += 1
            if time.monotonic() > deadline:
                raise BenchError(f"only {len(held)} of {count} connections to port {port} answered in {timeout} s")
            for key, _ in selector.select(timeout=1.0):
                s = key.fileobj
                state = key.data
                if not state[1]:
                    code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise BenchError(f"connect to port {port} after {len(held)} held: {os.strerror(code)}")
                    s.send(REQUEST)
                    state[1] = True
                    selector.modify(s, selectors.EVENT_READ, state)
                    continue
                data = s.recv(4096)
                if not data:
                    raise BenchError(f"port {port} closed a connection before answering (after {len(held)} held)")
                state[0] += data
                if b"\r\n\r\n" in state[0] and state[0].endswith(b"ok\n"):
                    if not state[0].startswith(b"HTTP/1.1 200"):
                        raise BenchError(f"port {port} answered {state[0][:40]!r}")
                    selector.unregister(s)
                    held.append(s)
                    under_way -= 1
    except BaseException:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        for s in held:
            s.close()
        raise
    finally:
        selector.close()
    return held


def measure_held(port, count, pid):
    """The proxy's RSS before and with `count` idle connections, and the difference per connection."""
    time.sleep(1.0)
    before = memory_kib(pid, "VmRSS")
    t0 = time.monotonic()
    sockets = hold(port, count)
    opened = time.monotonic() - t0
    time.sleep(1.0)   # the proxy has handed every answer on; what it keeps now is per connection
    with_held = memory_kib(pid, "VmRSS")
    for s in sockets:
        s.close()
    return {"held": len(sockets), "open_seconds": opened, "rss_before_kib": before, "rss_held_kib": with_held,
            "bytes_per_connection": (with_held - before) * 1024 / len(sockets)}


def listen_overflows():
    """TcpExt ListenOverflows from /proc/net/netstat: connections a full accept queue dropped
    (the client retries after a second, and that second shows as latency)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["ListenOverflows"])
    return 0


def paced_script(tmp, connections, rate):
    """A wrk script that has each connection wait a random 0.5-1.5 times connections/rate between
    an answer and its next request, so that together they offer about `rate` requests a second.
    wrk times a request from when it is sent, so the wait is not in the latency."""
    path = os.path.join(tmp, f"paced-{connections}-{rate}.lua")
    mean_ms = connections * 1000.0 / rate
    with open(path, "w") as f:
        f.write(f"function delay()\n  return math.random({int(mean_ms * 0.5)}, {int(mean_ms * 1.5)})\nend\n")
    return path


def load(res, tmp, label, port, connections, loaders, duration, process, parse_wrk, rate=None):
    """`loaders` wrk processes together against port, started STAGGER s apart: each opens its
    connections at once, and all of them together would overflow the listen backlog (somaxconn,
    4096 here) and put the kernel's retry second into the first requests' latency. With `rate`,
    the connections are paced to offer that many requests a second in all. Returns the combined
    figures."""
    pid = process.pid
    per_loader = connections // loaders
    reset_peak_rss(pid)
    cpu0 = process.cpu_seconds()
    overflows0 = listen_overflows()
    t0 = time.monotonic()
    runs = []
    for i in range(loaders):
        if i:
            time.sleep(STAGGER)
        runs.append(res.start(Process(
            f"wrk-{label}-{i}", ["wrk", "-t1", f"-c{per_loader}", f"-d{duration}s", "--timeout", "10s", "--latency"]
            + (["-s", paced_script(tmp, connections, rate)] if rate else []) + [f"http://127.0.0.1:{port}/"],
            os.path.join(tmp, f"wrk-{label}-{i}.log"))))
    outputs = []
    for run in runs:
        try:
            run.proc.wait(timeout=duration + 90)
        except Exception:
            raise BenchError(f"{run.name} still running {duration + 90} s after it started")
        res.processes.remove(run)
        with open(run.log_path) as f:
            text = f.read()
        if run.proc.returncode != 0:
            raise BenchError(f"{run.name} failed ({run.proc.returncode}):\n{text}")
        outputs.append(parse_wrk(text))
    elapsed = time.monotonic() - t0
    return {
        "rps": sum(o["rps"] for o in outputs),
        "p50_ms": statistics.median(o["p50_ms"] for o in outputs),
        "p99_ms": max(o["p99_ms"] for o in outputs),
        "errors": sum(o["non2xx"] + o["socket_errors"] for o in outputs),
        "peak_rss_kib": memory_kib(pid, "VmHWM"),
        "cpu_percent": (process.cpu_seconds() - cpu0) / elapsed * 100,
        "listen_overflows": listen_overflows() - overflows0,
        "loaders": outputs,
    }


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(name, pid, quiet, timeout=60):
    """Waits until the proxy holds about as many descriptors as when the run began: Muster and
    HAProxy both keep a burst's idle connections to the instances for some seconds (and purge
    them by halves every 5 s), and musterd serves http and tcp from one process, so a target
    loaded right after the other mode would start with the last one's leftovers."""
    deadline = time.monotonic() + timeout
    while open_descriptors(pid) > quiet + 100 and time.monotonic() < deadline:
        time.sleep(0.5)
    left = open_descriptors(pid)
    if left > quiet + 100:
        log(f"many {name}: still {left} descriptors open after {timeout} s (quiet: {quiet})")


def run(res, tmp, targets, fresh, count, loaders, duration, rounds, parse_wrk, rate):
    """targets: name -> (port, Process) of the main run, loaded in interleaved rounds; fresh:
    name -> a function starting that proxy afresh, whose idle memory per connection is measured
    once and which is stopped again. Returns name -> {"held": ..., "loads": [...]}."""
    results = {name: {"held": None, "loads": [], "paced": []} for name in targets}
    for name, start in fresh.items():
        port, process = start()
        try:
            held = measure_held(port, count, process.pid)
        finally:
            process.stop()
            res.processes.remove(process)
        results[name]["held"] = held
        log(f"many {name:<14} {held['held']} held (opened in {held['open_seconds']:.1f} s): "
            f"RSS {held['rss_before_kib'] / 1024:.1f} -> {held['rss_held_kib'] / 1024:.1f} MiB, "
            f"{held['bytes_per_connection']:.0f} B per connection")
    quiet = {name: open_descriptors(process.pid) for name, (_, process) in targets.items()}
    for round_number in range(1, rounds + 1):
        for name, (port, process) in targets.items():
            settle(name, process.pid, quiet[name])
            loaded = load(res, tmp, f"{name}-{round_number}", port, count, loaders, duration, process, parse_wrk)
            log(f"many round {round_number} {name:<14} {loaded['rps']:>9.0f} req/s  p50 {loaded['p50_ms']:.1f} ms  "
                f"p99 {loaded['p99_ms']:.1f} ms  errors {loaded['errors']}  peak RSS {loaded['peak_rss_kib'] / 1024:.1f} MiB  "
                f"cpu {loaded['cpu_percent']:.0f}%  listen overflows {loaded['listen_overflows']}")
            results[name]["loads"].append(loaded)
            settle(name, process.pid, quiet[name])
            paced = load(res, tmp, f"{name}-{round_number}-paced", port, count, loaders, duration, process, parse_wrk, rate)
            log(f"many round {round_number} {name:<14} paced at {rate}/s: {paced['rps']:>7.0f} req/s  p50 {paced['p50_ms']:.1f} ms  "
                f"p99 {paced['p99_ms']:.1f} ms  errors {paced['errors']}  cpu {paced['cpu_percent']:.0f}%")
            results[name]["paced"].append(paced)
    return results


def report(results, count, loaders, rate):
    lines = [f"{count} connections ({loaders} wrk processes of {count // loaders} connections each, a second apart; "
             f"idle memory from {count} held keep-alive connections in a fresh proxy)",
             f"{'':<16}{'':>12}{'all out (closed loop)':^52}{'paced at ' + str(rate) + ' req/s in all':^36}",
             f"{'target':<16}{'B/idle conn':>12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'peak RSS MiB':>13}{'CPU %':>6}{'errors':>7}"
             f"{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}"]
    med = {}
    for name, result in results.items():
        runs, paced = result["loads"], result["paced"]
        if not runs or not paced or not result["held"]:
            lines.append(f"{name:<16}{'(not measured)':>30}")
            continue
        m = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "peak_rss_kib", "cpu_percent")}
        m.update({"paced_" + k: statistics.median(r[k] for r in paced) for k in ("rps", "p50_ms", "p99_ms")})
        m["bytes_per_connection"] = result["held"]["bytes_per_connection"]
        m["errors"] = sum(r["errors"] for r in runs)
        m["paced_errors"] = sum(r["errors"] for r in paced)
        med[name] = m
        lines.append(f"{name:<16}{m['bytes_per_connection']:>12.0f}{m['rps']:>9.0f}{m['p50_ms']:>9.1f}{m['p99_ms']:>9.1f}"
                     f"{m['peak_rss_kib'] / 1024:>13.1f}{m['cpu_percent']:>6.0f}{m['errors']:>7}"
                     f"{m['paced_rps']:>9.0f}{m['paced_p50_ms']:>9.1f}{m['paced_p99_ms']:>9.1f}{m['paced_errors']:>7}")
    lines.append("")
    ratios = {}
    for mode in ("http", "tcp"):
        a, b = f"muster-{mode}", f"haproxy-{mode}"
        if a not in med or b not in med:
            lines.append(f"Muster {mode} / HAProxy {mode} at {count}: (not measured)")
            continue
        r = {"bytes_per_connection": med[a]["bytes_per_connection"] / med[b]["bytes_per_connection"]
             if med[b]["bytes_per_connection"] > 0 else None,
             "rps": med[a]["rps"] / med[b]["rps"], "p99": med[a]["p99_ms"] / med[b]["p99_ms"],
             "paced_p99": med[a]["paced_p99_ms"] / med[b]["paced_p99_ms"]}
        ratios[f"muster_{mode}/haproxy_{mode}"] = r
        memory = f"{r['bytes_per_connection']:5.2f}x" if r["bytes_per_connection"] is not None else "  n/a"
        lines.append(f"Muster {mode} / HAProxy {mode} at {count}: memory per idle connection {memory}   req/s {r['rps']:5.2f}x   "
                     f"p99 all out {r['p99']:5.2f}x   p99 paced {r['paced_p99']:5.2f}x")
        goals = [("memory <= 1.0x", r["bytes_per_connection"] is not None and r["bytes_per_connection"] <= 1.0),
                 ("req/s >= 1.0x", r["rps"] >= 1.0), ("p99 paced <= 1.0x", r["paced_p99"] <= 1.0),
                 ("p99 all out <= 1.0x", r["p99"] <= 1.0)]
        lines.append("    goals: " + ", ".join(f"{g} {'met' if ok else 'MISSED'}" for g, ok in goals))
    lines.append("p99 all out is taken with the machine saturated (4 wrk processes, the proxy and 4-8 nginx on 2 cores), "
                 "where a starved wrk process adds its own wait; paced, each proxy has room and p99 is its own.")
    return "\n".join(lines), med, ratios
