#!/usr/bin/env python3
"""The proxy benchmark's body; run it through scripts/bench/proxy, which installs what it needs
and builds the binaries. wrk (-t2 -c64 --latency) loads each target in turn, in interleaved
rounds, and this prints the median req/s, p50 and p99 per target and the ratios:

  direct        one nginx backend, no proxy
  muster-http   musterd's [proxy] protocol = "http" over its 4 nginx instances
  haproxy-http  HAProxy 2.6 mode http, balance roundrobin, http-reuse always, over the same 4
  nginx-proxy   nginx as a reverse proxy with upstream keepalive, over the same 4
  muster-tcp    musterd's [proxy] protocol = "tcp" over 4 more instances (a second service)
  haproxy-tcp   HAProxy mode tcp over the same 4 as haproxy-http
  muster-http-watched   (--viewers) muster-http again, with the dashboard open in headless
                Chromium and `musterctl top` open in tmux while wrk runs: what watching costs

With --many N (scripts/bench/many_connections.py): Muster and HAProxy, http and tcp, each hold N
idle keep-alive connections in a fresh process (memory per connection), then take N busy ones
from several wrk processes, all out and paced at --many-rate requests a second. N is cut to what
the host's descriptor limit allows (2 descriptors a tcp connection), and said so.

The backends are nginx (`return 200 "ok\\n"`, access_log off, worker_processes 1), started by
musterd as the instances of two services. Each instance picks its generated config by port
(`nginx-{port}.conf`): ports come from `instance_ports`, so every port in that range has a config
and it does not matter which slot gets which. HAProxy, nginx-proxy and `direct` use the ports
musterd reports for the http service's instances. Every process under test runs in its own
session (setsid), so the kernel's autogroup scheduling does not lump it with wrk.

With --peers-only (or when musterd cannot be started), the script starts the 4 nginx backends
itself and measures the peers only. When musterd runs but does not serve a [proxy] listener, its
targets are reported as missing and the peers are still measured.

Cleanup (musterd and its instances, HAProxy, nginx, temp folders, Muster's cgroup root) runs on
success, failure, Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import re
import resource
import shutil
import socket
import sys
import time
import uuid

import many_connections
from benchlib import (BenchError, Interrupted, Process, Resources, file_tail, log, median, port_free,
                      raise_interrupted_on_signals, run_quiet, wait_until)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


# --- helpers ---------------------------------------------------------------------------------

def http_ok(port, timeout=1.0):
    """True when GET / on 127.0.0.1:port answers 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# --- configs ---------------------------------------------------------------------------------

def nginx_backend_conf(tmp, port):
    # Room for the many-connections run: in tcp mode each of the 4 backends gets a quarter of them
    # (nginx is bounded by the descriptor limit it inherits, whichever is lower), and a backlog
    # as deep as the proxies' own (somaxconn): nginx's default of 511 overflows when thousands of
    # connections open at once, and the dropped SYNs come back a second later as latency.
    # multi_accept: a proxy opens a connection per request in flight, thousands at once when a
    # load starts, and nginx's default of one accept per turn of its loop left the last of them
    # waiting seconds in the accept queue while the loop served the connections it had.
    return f"""worker_processes 1;
daemon off;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-{port}.error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body-{port};
    proxy_temp_path {tmp}/proxy-{port};
    fastcgi_temp_path {tmp}/fastcgi-{port};
    uwsgi_temp_path {tmp}/uwsgi-{port};
    scgi_temp_path {tmp}/scgi-{port};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def nginx_proxy_conf(tmp, listen, backends):
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
    return f"""worker_processes auto;
daemon off;
pid {tmp}/nginx-proxy.pid;
error_log {tmp}/nginx-proxy.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body-proxy;
    proxy_temp_path {tmp}/proxy-proxy;
    fastcgi_temp_path {tmp}/fastcgi-proxy;
    uwsgi_temp_path {tmp}/uwsgi-proxy;
    scgi_temp_path {tmp}/scgi-proxy;
    keepalive_requests 1000000;
    upstream backends {{
{servers}
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen} reuseport;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def haproxy_maxconn():
    """Room for the many-connections run within the descriptor limit HAProxy inherits: it needs
    two a connection (client and server side) and refuses to start when maxconn asks for more
    than it can raise its limit to."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 50000 if hard == resource.RLIM_INFINITY else max(1000, min(50000, (hard - 500) // 2))


def haproxy_conf(http_port, tcp_port, backends):
    servers = "\n".join(f"    server b{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    maxconn = haproxy_maxconn()
    return f"""global
    maxconn {maxconn}

defaults
    maxconn {maxconn}
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend http_in
    mode http
    bind 127.0.0.1:{http_port}
    default_backend http_out

backend http_out
    mode http
    balance roundrobin
    http-reuse always
{servers}

frontend tcp_in
    mode tcp
    bind 127.0.0.1:{tcp_port}
    default_backend tcp_out

backend tcp_out
    mode tcp
    balance roundrobin
{servers}
"""


# --- Muster ----------------------------------------------------------------------------------

class Muster:
    """musterd with a service of 4 nginx instances behind an http proxy on http_port and one behind
    a tcp proxy on tcp_port (either left out when its port is None)."""

    def __init__(self, res, bin_dir, tmp, instance_ports, http_port, tcp_port, dashboard_port=None):
        self.res = res
        self.dashboard_port = dashboard_port
        self.musterd = os.path.join(bin_dir, "musterd")
        self.musterctl = os.path.join(bin_dir, "musterctl")
        self.tmp = tmp
        self.http_port = http_port
        self.tcp_port = tcp_port
        root = f"muster-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.res.cgroup_roots.append(root)   # registered before musterd can create it
        os.makedirs(os.path.join(tmp, "services.d"))
        self.socket = os.path.join(tmp, "run", "muster.sock")
        self.config = os.path.join(tmp, "musterd.toml")
        with open(self.config, "w") as f:
            f.write(f"""[daemon]
services_dir   = "services.d"
control_socket = "{self.socket}"
state_dir      = "{tmp}/state"
log_dir        = "{tmp}/log"
cgroup_root    = "{root}"
instance_ports = "{instance_ports[0]}-{instance_ports[-1]}"
""" + (f'dashboard_listen = "127.0.0.1:{dashboard_port}"\n' if dashboard_port else ""))
        command = [NGINX, "-p", f"{tmp}/", "-c", f"{tmp}/nginx-{{port}}.conf"]
        for name, protocol, port in (("bench-http", "http", http_port), ("bench-tcp", "tcp", tcp_port)):
            if port is None:
                continue
            with open(os.path.join(tmp, "services.d", f"{name}.toml"), "w") as f:
                f.write(f"""command = {json.dumps(command)}
instances = 4

[restart]
start_seconds = 0

[health]
check = "tcp"

[proxy]
listen = ["127.0.0.1:{port}"]
protocol = "{protocol}"
max_connections = 50000
""")

    def start(self):
        self.process = self.res.start(Process(
            "musterd", [self.musterd, "--config", self.config], os.path.join(self.tmp, "musterd.log"),
            [self.musterctl, "shutdown", "--socket", self.socket]))
        return self.process

    def status(self):
        r = run_quiet([self.musterctl, "status", "--json", "--socket", self.socket])
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def ready_ports(self, service):
        doc = self.status()
        if doc is None:
            return []
        for s in doc.get("services", []):
            if s.get("name") == service:
                return sorted(i["port"] for i in s.get("instances", [])
                              if i.get("state") == "running" and i.get("port") and i.get("ready", True))
        return []

    def open_connections(self):
        """Per service, the sum of the instances' `connections` (the proxy's in-flight count)."""
        doc = self.status() or {}
        return {s["name"]: sum(i.get("connections") or 0 for i in s.get("instances", []))
                for s in doc.get("services", [])}

    def log_tail(self, lines=20):
        return file_tail(os.path.join(self.tmp, "musterd.log"), lines)


def write_backend_confs(tmp, instance_ports):
    for port in instance_ports:
        with open(os.path.join(tmp, f"nginx-{port}.conf"), "w") as f:
            f.write(nginx_backend_conf(tmp, port))


def keep_logs(folders, results_dir):
    os.makedirs(results_dir, exist_ok=True)
    for folder in folders:
        prefix = "" if folder == folders[0] else os.path.basename(folder).split(".")[0] + "-"
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            per_port_conf = name.startswith("nginx-") and name[6:7].isdigit() and name.endswith(".conf")
            if name.endswith((".log", ".cfg", ".conf")) and not per_port_conf and os.path.getsize(path) > 0:
                shutil.copy(path, os.path.join(results_dir, prefix + name))


def fresh_proxies(res, args, backends):
    """For the many-connections run's memory figure: name -> a function that starts that proxy
    afresh (a musterd of its own with only that service, or an HAProxy of its own over the main
    run's backends) and returns (port, process). A fresh process per target, because memory one
    target freed in a shared process would be reused by the next and hide its cost."""
    base = args.base_port + 200

    def muster(mode):
        def start():
            tmp = res.temp_dir(f"fresh-muster-{mode}")
            os.chmod(tmp, 0o755)
            instance_ports = list(range(base + 100, base + 164))
            write_backend_confs(tmp, instance_ports)
            port = base + (0 if mode == "http" else 1)
            m = Muster(res, args.bin_dir, tmp, instance_ports, port if mode == "http" else None,
                       port if mode == "tcp" else None)
            process = m.start()
            wait_until(lambda: len(m.ready_ports(f"bench-{mode}")) == 4, 60, f"a fresh musterd's 4 {mode} instances", step=0.1)
            wait_until(lambda: all(http_ok(p) for p in m.ready_ports(f"bench-{mode}")) and http_ok(port), 20,
                       f"a fresh musterd's {mode} proxy answering", step=0.1)
            return port, process
        return start

    def haproxy(mode):
        def start():
            tmp = res.temp_dir(f"fresh-haproxy-{mode}")
            http_port, tcp_port = base + 2, base + 3
            with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
                f.write(haproxy_conf(http_port, tcp_port, backends))
            process = res.start(Process(f"haproxy-{mode}", [HAPROXY, "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
                                        os.path.join(tmp, "haproxy.log")))
            port = http_port if mode == "http" else tcp_port
            wait_until(lambda: http_ok(port), 20, f"a fresh HAProxy's {mode} frontend answering", step=0.1)
            return port, process
        return start

    return {"muster-http": muster("http"), "haproxy-http": haproxy("http"),
            "muster-tcp": muster("tcp"), "haproxy-tcp": haproxy("tcp")}


# --- wrk -------------------------------------------------------------------------------------

UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not (rps and p50 and p99):
        raise BenchError(f"cannot read wrk's output:\n{text}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": float(p50.group(1)) * UNIT[p50.group(2)] * 1e3,
        "p99_ms": float(p99.group(1)) * UNIT[p99.group(2)] * 1e3,
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def run_wrk(port, args, process=None):
    cpu0 = process.cpu_seconds() if process else None
    t0 = time.monotonic()
    r = run_quiet(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
                   f"http://127.0.0.1:{port}/"], timeout=args.duration + 60)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError(f"wrk against port {port} failed:\n{r.stdout}{r.stderr}")
    result = parse_wrk(r.stdout)
    if process is not None:
        result["cpu_percent"] = (process.cpu_seconds() - cpu0) / elapsed * 100
    return result


# --- viewers (--viewers) ---------------------------------------------------------------------

class Viewers:
    """The dashboard in headless Chromium and `musterctl top` in a tmux pane of its own, open
    while one wrk run goes on; stop() closes both (also from the cleanup)."""

    def __init__(self, res, muster):
        self.res = res
        self.muster = muster
        self.server = f"muster-bench-proxy-{uuid.uuid4().hex[:8]}"
        self.name = "viewers"
        self.chromium = None

    def start(self):
        profile = self.res.temp_dir("chromium")
        self.chromium = self.res.start(Process(
            "chromium", ["/usr/bin/chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         f"--user-data-dir={profile}", f"http://127.0.0.1:{self.muster.dashboard_port}/"],
            os.path.join(self.muster.tmp, "chromium.log")))
        run_quiet(["tmux", "-L", self.server, "new-session", "-d", "-x", "120", "-y", "40",
                   f"{self.muster.musterctl} top --socket {self.muster.socket}"])
        time.sleep(4)   # the page loaded and its live feed open, top drawing

    def stop(self):
        run_quiet(["tmux", "-L", self.server, "kill-server"])
        if self.chromium:
            self.chromium.stop()
            self.chromium = None


# --- the run ---------------------------------------------------------------------------------

def report(results, order):
    # CPU µs per request: the proxy's own cost, less sensitive than req/s to what else the
    # machine is doing (it is what the proxy takes away from the backends and the client).
    lines = [f"{'target':<21}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'proxy CPU %':>13}{'CPU us/req':>12}{'errors':>8}"]
    med = {}
    for name in order:
        runs = results.get(name) or []
        if not runs:
            lines.append(f"{name:<21}{'(not measured)':>32}")
            continue
        m = {k: median([r[k] for r in runs]) for k in ("rps", "p50_ms", "p99_ms")}
        cpu = [r["cpu_percent"] for r in runs if "cpu_percent" in r]
        m["cpu_percent"] = median(cpu) if cpu else None
        per_request = [r["cpu_percent"] / 100 / r["rps"] * 1e6 for r in runs if "cpu_percent" in r and r["rps"]]
        m["cpu_us_per_request"] = median(per_request) if per_request else None
        m["errors"] = sum(r["non2xx"] + r["socket_errors"] for r in runs)
        med[name] = m
        cpu_text = f"{m['cpu_percent']:.0f}" if m["cpu_percent"] is not None else "-"
        us_text = f"{m['cpu_us_per_request']:.1f}" if m["cpu_us_per_request"] is not None else "-"
        lines.append(f"{name:<21}{m['rps']:>12.0f}{m['p50_ms']:>10.3f}{m['p99_ms']:>10.3f}{cpu_text:>13}{us_text:>12}{m['errors']:>8}")
    lines.append("")

    def ratio(a, b, label):
        if a in med and b in med:
            rps = med[a]["rps"] / med[b]["rps"]
            p99 = med[a]["p99_ms"] / med[b]["p99_ms"]
            line = f"{label:<28} req/s {rps:5.2f}x   p99 {p99:5.2f}x"
            cpu = None
            if med[a].get("cpu_us_per_request") and med[b].get("cpu_us_per_request"):
                cpu = med[a]["cpu_us_per_request"] / med[b]["cpu_us_per_request"]
                line += f"   CPU per request {cpu:5.2f}x"
            lines.append(line)
            return {"rps": rps, "p99": p99, "cpu_per_request": cpu}
        lines.append(f"{label:<28} (not measured)")
        return None

    ratios = {
        "muster_http/haproxy_http": ratio("muster-http", "haproxy-http", "Muster http / HAProxy http"),
        "muster_tcp/haproxy_tcp": ratio("muster-tcp", "haproxy-tcp", "Muster tcp / HAProxy tcp"),
        "muster_http/direct": ratio("muster-http", "direct", "Muster http / direct"),
        "muster_http_watched/muster_http": ratio("muster-http-watched", "muster-http", "Muster http watched / not"),
        "muster_tcp/direct": ratio("muster-tcp", "direct", "Muster tcp / direct"),
        "haproxy_http/direct": ratio("haproxy-http", "direct", "HAProxy http / direct"),
        "haproxy_tcp/direct": ratio("haproxy-tcp", "direct", "HAProxy tcp / direct"),
        "nginx/direct": ratio("nginx-proxy", "direct", "nginx proxy / direct"),
    }
    return "\n".join(lines), med, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", help="folder with release musterd and musterctl")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all targets (default 3; 0: only --many)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--base-port", type=int, default=21000,
                        help="instances use BASE..BASE+63, proxies BASE+100..BASE+104 (default 21000)")
    parser.add_argument("--targets", default="direct,muster-http,haproxy-http,nginx-proxy,muster-tcp,haproxy-tcp",
                        help="comma-separated subset of the targets, in the order each round runs them")
    parser.add_argument("--peers-only", action="store_true", help="no musterd: start the 4 backends directly")
    parser.add_argument("--viewers", action="store_true",
                        help="also measure muster-http with the dashboard (headless Chromium) and musterctl top open")
    parser.add_argument("--many", type=int, default=0, metavar="N",
                        help="also the many-connections run: N idle keep-alive connections held (memory per "
                             "connection), then N busy at once from several wrk processes; muster and HAProxy, http and tcp")
    parser.add_argument("--many-loaders", type=int, default=4, help="wrk processes in the many-connections run (default 4)")
    parser.add_argument("--many-duration", type=int, default=15, help="seconds of each many-connections load (default 15)")
    parser.add_argument("--many-rounds", type=int, default=2, help="interleaved rounds of the many-connections run (default 2)")
    parser.add_argument("--many-rate", type=int, default=5000,
                        help="requests a second the paced load offers in all (default 5000: below both proxies' capacity here)")
    parser.add_argument("--results-dir", help="keep results.json, summary.txt and the logs there")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/bench/proxy: run as root (musterd creates cgroups)")
    if not args.peers_only and not args.bin_dir:
        sys.exit("scripts/bench/proxy: --bin-dir is required unless --peers-only")

    raise_interrupted_on_signals()
    many_note = None
    if args.many:
        args.many, many_note = many_connections.fit_descriptor_limit(args.many, args.many_loaders)
        if many_note:
            log(f"scripts/bench/proxy: {many_note}")

    order = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.viewers and "muster-http" in order and "muster-http-watched" not in order:
        order.insert(order.index("muster-http") + 1, "muster-http-watched")
    # 64 ports for 8 instances: musterd skips a port that cannot be bound right now, and one a
    # previous run's connections left in TIME-WAIT counts as such for a minute.
    instance_ports = list(range(args.base_port, args.base_port + 64))
    muster_http, muster_tcp, haproxy_http, haproxy_tcp, nginx_port, dashboard_port = range(args.base_port + 100, args.base_port + 106)
    res = Resources("bench-proxy")
    try:
        busy = [p for p in [muster_http, muster_tcp, haproxy_http, haproxy_tcp, nginx_port, dashboard_port] if not port_free(p)]
        if busy:
            raise BenchError(f"ports in use: {busy} (pick another --base-port)")
        tmp = res.temp_dir("run")
        os.chmod(tmp, 0o755)
        write_backend_confs(tmp, instance_ports)

        muster = None
        muster_note = None
        backends = []
        if not args.peers_only:
            muster = Muster(res, args.bin_dir, tmp, instance_ports, muster_http, muster_tcp, dashboard_port)
            process = muster.start()
            try:
                wait_until(lambda: len(muster.ready_ports("bench-http")) == 4 and len(muster.ready_ports("bench-tcp")) == 4,
                           60, "musterd reporting 4 running instances of each service", step=0.1)
                backends = muster.ready_ports("bench-http")
                wait_until(lambda: all(http_ok(p) for p in backends), 20, "the instances answering", step=0.1)
            except BenchError as error:
                if process.alive():
                    raise BenchError(f"{error}; musterd log:\n{muster.log_tail()}")
                muster_note = f"musterd exited ({process.proc.returncode}): {muster.log_tail()}"
                muster = None
        if muster is None:
            # The same backends, started here (each in its own session).
            backends = [p for p in instance_ports if port_free(p)][:4]
            for port in backends:
                res.start(Process(f"nginx-{port}", [NGINX, "-p", f"{tmp}/", "-c", f"{tmp}/nginx-{port}.conf"],
                                  os.path.join(tmp, f"nginx-{port}.log")))
            wait_until(lambda: all(http_ok(p) for p in backends), 20, "the nginx backends answering", step=0.1)

        proxies = {}
        if muster is not None:
            for name, port in (("muster-http", muster_http), ("muster-tcp", muster_tcp)):
                try:
                    wait_until(lambda: http_ok(port), 10, f"{name} answering on 127.0.0.1:{port}", step=0.1)
                    proxies[name] = (port, muster.process)
                    if name == "muster-http" and args.viewers:
                        proxies["muster-http-watched"] = (port, muster.process)
                except BenchError as error:
                    log(f"scripts/bench/proxy: {error}: musterd does not serve this [proxy] listener; skipping {name}")

        with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
            f.write(haproxy_conf(haproxy_http, haproxy_tcp, backends))
        haproxy = res.start(Process("haproxy", [HAPROXY, "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
                                    os.path.join(tmp, "haproxy.log")))
        with open(os.path.join(tmp, "nginx-proxy.conf"), "w") as f:
            f.write(nginx_proxy_conf(tmp, nginx_port, backends))
        nginx = res.start(Process("nginx-proxy", [NGINX, "-p", f"{tmp}/", "-c", os.path.join(tmp, "nginx-proxy.conf")],
                                  os.path.join(tmp, "nginx-proxy.log")))
        wait_until(lambda: http_ok(haproxy_http) and http_ok(haproxy_tcp) and http_ok(nginx_port), 20,
                   "HAProxy and nginx answering", step=0.1)
        proxies["haproxy-http"] = (haproxy_http, haproxy)
        proxies["haproxy-tcp"] = (haproxy_tcp, haproxy)
        proxies["nginx-proxy"] = (nginx_port, nginx)
        proxies["direct"] = (backends[0], None)

        if args.rounds:
            log(f"backends (nginx) on {backends}; {args.rounds} round(s) of {args.duration} s per target; "
                f"wrk -t{args.threads} -c{args.connections}")
        results = {name: [] for name in order}
        for round_number in range(1, args.rounds + 1):
            for name in order:
                if name not in proxies:
                    continue
                port, process = proxies[name]
                # A warm-up second so every target starts with its connections and pools open.
                run_quiet(["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/"], timeout=30)
                viewers = None
                if name == "muster-http-watched":
                    viewers = Viewers(res, muster)
                    res.processes.append(viewers)
                    viewers.start()
                try:
                    r = run_wrk(port, args, process)
                finally:
                    if viewers:
                        viewers.stop()
                results[name].append(r)
                log(f"round {round_number} {name:<21} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.3f} ms  "
                    f"p99 {r['p99_ms']:.3f} ms" + (f"  cpu {r['cpu_percent']:.0f}%" if "cpu_percent" in r else ""))
        text, med, ratios = report(results, order) if args.rounds else ("", {}, {})
        many = None
        if args.many:
            many_targets = {name: proxies[name] for name in ("muster-http", "haproxy-http", "muster-tcp", "haproxy-tcp")
                            if name in proxies}
            fresh = {name: start for name, start in fresh_proxies(res, args, backends).items() if name in many_targets}
            log(f"many connections: {args.many}, {args.many_rounds} round(s), {args.many_loaders} wrk processes, "
                f"{args.many_duration} s of load per target")
            many_runs = many_connections.run(res, tmp, many_targets, fresh, args.many, args.many_loaders, args.many_duration,
                                             args.many_rounds, parse_wrk, args.many_rate)
            many_text, many_med, many_ratios = many_connections.report(many_runs, args.many, args.many_loaders, args.many_rate)
            if many_note:
                many_text += f"\nnote: {many_note}"
            text = (text + "\n\n" if text else "") + many_text
            many = {"connections": args.many, "note": many_note, "loaders": args.many_loaders, "rate": args.many_rate, "duration": args.many_duration,
                    "runs": many_runs, "medians": many_med, "ratios": many_ratios}
        if muster is not None:
            # wrk has closed every connection: the proxy's in-flight counts must be back to 0.
            deadline = time.monotonic() + 5
            left = muster.open_connections()
            while any(left.values()) and time.monotonic() < deadline:
                time.sleep(0.2)
                left = muster.open_connections()
            text += "\n\nmuster in-flight after the runs (should be 0): " + ", ".join(f"{k} {v}" for k, v in sorted(left.items()))
        if muster_note:
            text += f"\n\nMuster not measured: {muster_note}"
        print(text, flush=True)
        if args.results_dir:
            os.makedirs(args.results_dir, exist_ok=True)
            with open(os.path.join(args.results_dir, "results.json"), "w") as f:
                json.dump({"runs": results, "medians": med, "ratios": ratios, "rounds": args.rounds,
                           "duration": args.duration, "connections": args.connections, "many": many}, f, indent=2)
            with open(os.path.join(args.results_dir, "summary.txt"), "w") as f:
                f.write(text + "\n")
        return 0
    except Interrupted as why:
        log(f"scripts/bench/proxy: interrupted ({why}); cleaning up")
        return 130
    except BenchError as error:
        log(f"scripts/bench/proxy: {error}")
        return 1
    finally:
        if args.results_dir:
            # The logs and configs, also of a failed run (that is when they are needed); the
            # processes have stopped first, so the logs are whole.
            res.before_temp_dirs = lambda: keep_logs(res.temp_dirs, args.results_dir)
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
