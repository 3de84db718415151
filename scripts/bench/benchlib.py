"""What the benchmark scripts and the fault suite share: errors, logging, /proc reads, killing
only what the run started, the processes under test and the registry that cleans them up,
removing a run's cgroup root, and a raw keep-alive HTTP client. Imported by spawn.py, proxy.py and
autoscale.py (same folder) and by ../chaos.py (which puts this folder on sys.path)."""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLEANUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    pass


class BenchError(Exception):
    pass


def log(text):
    print(text, file=sys.stderr, flush=True)


def raise_interrupted_on_signals():
    """Ctrl-C, SIGTERM and SIGHUP raise Interrupted, so that main's `finally` runs the cleanup."""
    def interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in CLEANUP_SIGNALS:
        signal.signal(sig, interrupted)


def ignore_signals():
    """From here on a second Ctrl-C (or SIGTERM) must not cut the cleanup short."""
    for sig in CLEANUP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def status_kib(pid):
    """The kB figures of /proc/PID/status by name (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    figures = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                figures[name] = int(parts[0])
    return figures


def memory_kib(pid, field):
    """One kB figure of /proc/PID/status, such as VmRSS."""
    value = status_kib(pid).get(field)
    if value is None:
        raise BenchError(f"no {field} for pid {pid}")
    return value


def proc_stat(pid):
    """Fields of /proc/PID/stat after the command name, numbered as in proc(5) from 3 (state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = text[text.rindex(")") + 2:].split()
    return {i + 3: value for i, value in enumerate(rest)}


def kill_if_same(pid, starttime, sig=signal.SIGKILL):
    """Signals pid only if it is still the process first seen (same start time), never a reuse."""
    fields = proc_stat(pid)
    if fields is None or fields[22] != starttime:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def session_pids(sid):
    """(pid, starttime) of every process in session `sid`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(int(name))
            if fields and fields[6] == str(sid):
                found.append((int(name), fields[22]))
    return found


def session_cpu_seconds(sid):
    """utime+stime of the live processes of a session (a proxy and its workers)."""
    total = 0
    for pid, _ in session_pids(sid):
        fields = proc_stat(pid)
        if fields:
            total += int(fields[14]) + int(fields[15])
    return total / CLK_TCK


def machine_busy(seconds=1.0):
    """Share (0 to 1) of all CPUs together busy over `seconds`, from /proc/stat: the work of
    others on this machine when nothing of the run is going on, which skews every figure."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        idle = values[3] + values[4]                  # idle + iowait
        return sum(values) - idle, sum(values)
    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def median(values):
    return statistics.median(values) if values else float("nan")


def port_free(port, reuse_addr=True):
    """True when 127.0.0.1:port can be bound now. With reuse_addr (SO_REUSEADDR, as the servers
    under test set it) a port held only by connections in TIME-WAIT counts as free; without, not."""
    with socket.socket() as s:
        if reuse_addr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(predicate, timeout, what=None, step=0.05):
    """Calls predicate every `step` s until it returns something true, and returns that. After
    `timeout` s: BenchError "<what> not within <timeout> s", or None when `what` is not given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    if what:
        raise BenchError(f"{what} not within {timeout:g} s")
    return None


def cgroup_mounts():
    """Mount points of every cgroup and cgroup2 hierarchy, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2"):
                points.append(left.split()[4])
    return points


def remove_cgroup_root(name):
    """Kills whatever is left in <hierarchy>/<name> and removes the folders, in every hierarchy
    where this run's musterd made one (unified, memory, pids, cpu on this hybrid host)."""
    roots = [os.path.join(m, name) for m in cgroup_mounts()]
    roots = [r for r in roots if os.path.isdir(r)]
    for attempt in range(50):
        left = 0
        for root in roots:
            for folder, _, files in os.walk(root):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(folder, "cgroup.procs")) as f:
                            pids = [int(p) for p in f.read().split()]
                    except OSError:
                        pids = []
                    for pid in pids:
                        left += 1
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        if left == 0:
            break
        time.sleep(0.05)
    for root in roots:
        for folder, _, _ in os.walk(root, topdown=False):   # deepest first
            for _ in range(20):
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        if os.path.isdir(root):
            log(f"cleanup: could not remove cgroup {root}")


def file_tail(path, lines=20):
    """The last `lines` lines of a log file; "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def read_events(path):
    """musterd's event log (state_dir/events.log, a JSON object a line); a line that does not
    parse (one being written) is skipped, and no file is no events."""
    events = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return events


def run_quiet(argv, timeout=30):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


# --- the processes under test and their cleanup -----------------------------------------------

class Process:
    """One process under test, in its own session (start_new_session: setsid before exec), so
    autogroup scheduling keeps it apart from the load and stop() can find all it started."""

    def __init__(self, name, argv, log_path, stop_argv=None, pass_fds=(), env=None,
                 stop_timeout=30, exit_timeout=20):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.stop_argv = stop_argv        # asked first, when given (e.g. musterctl shutdown)
        self.pass_fds = pass_fds
        self.env = env
        self.stop_timeout = stop_timeout  # s for stop_argv to return
        self.exit_timeout = exit_timeout  # s from SIGTERM to SIGKILL
        self.proc = None
        self.seen = set()                 # (pid, starttime) of its session, as last seen alive

    def launch(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, pass_fds=self.pass_fds, env=self.env)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        return session_cpu_seconds(self.proc.pid) if self.alive() else 0.0

    def remember_session(self):
        if self.alive():
            self.seen |= set(session_pids(self.proc.pid))

    def stop(self):
        """stop_argv, then SIGTERM, then SIGKILL; then kills what is left of its session, by
        start time (never a reused pid), including what was in it before it exited."""
        if self.proc is None:
            return
        self.remember_session()
        if self.alive() and self.stop_argv:
            try:
                run_quiet(self.stop_argv, timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.alive():
            self.proc.terminate()
        try:
            self.proc.wait(timeout=self.exit_timeout)
        except subprocess.TimeoutExpired:
            log(f"cleanup: {self.name} still running {self.exit_timeout} s after SIGTERM; SIGKILL")
            self.proc.kill()
            self.proc.wait()
        for pid, start in self.seen | set(session_pids(self.proc.pid)):
            kill_if_same(pid, start)


class Resources:
    """Everything a run created, so that cleanup undoes exactly that and nothing else: the
    processes (anything with .name and .stop(), newest stopped first), then the cgroup roots,
    then the temp folders. A script with more to undo overrides the two hooks."""

    def __init__(self, temp_prefix, ignore_signals_in_cleanup=True):
        self.temp_prefix = temp_prefix
        self.ignore_signals_in_cleanup = ignore_signals_in_cleanup
        self.temp_dirs = []
        self.cgroup_roots = []       # names under each cgroup hierarchy, unique to this run
        self.processes = []
        self.cleaned = False

    def temp_dir(self, label):
        path = tempfile.mkdtemp(prefix=f"{self.temp_prefix}-{label}.")
        self.temp_dirs.append(path)
        return path

    def start(self, process):
        self.processes.append(process)
        return process.launch()

    def before_processes(self):
        """Hook: what must go before the processes are stopped."""

    def before_temp_dirs(self):
        """Hook: what must go after the processes and cgroups, before the temp folders."""

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        if self.ignore_signals_in_cleanup:
            ignore_signals()
        self.before_processes()
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as error:  # keep going: the rest must be cleaned up too
                log(f"cleanup: stopping {process.name}: {error}")
        for name in self.cgroup_roots:
            remove_cgroup_root(name)
        self.before_temp_dirs()
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)


# --- HTTP ---------------------------------------------------------------------------------------

class HTTPClient:
    """One keep-alive HTTP/1.1 connection, raw sockets: the least client-side time per request."""

    def __init__(self, port, timeout):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buffer = b""

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buffer = b""

    def get(self, path, close=False):
        """Status code; raises OSError (or ValueError on a malformed answer)."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        extra = b"Connection: close\r\n" if close else b""
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n" + extra + b"\r\n")
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the answer")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        must_close = close
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                must_close = True
            elif name == b"transfer-encoding":
                # The backends here always send a length; a chunked body read as none would
                # be taken for the next answer on this connection.
                raise ValueError("chunked answer: not expected from this backend")
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in the body")
            self.buffer += chunk
        self.buffer = self.buffer[length:]
        if must_close:
            self.close()
        return status
