"""What the benchmark scripts share: errors, logging, /proc reads, killing only what the run
started, and removing a run's cgroup root. Imported by spawn.py and proxy.py (same folder)."""
import os
import signal
import subprocess
import sys
import time


class Interrupted(Exception):
    pass


class BenchError(Exception):
    pass


def log(text):
    print(text, file=sys.stderr, flush=True)


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


def run_quiet(argv, timeout=30):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
