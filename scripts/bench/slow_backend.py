#!/usr/bin/env python3
"""The autoscale benchmark's backend: a small HTTP/1.1 keep-alive server on 127.0.0.1:$PORT
with a fixed pool of workers, like an application server with N worker threads.

  GET /work?ms=N   waits for a free worker, holds it N ms (a sleep: no CPU), answers 200 "ok"
  GET /  (any other path)  answers 200 "ok" at once, without a worker

  --workers N      requests served at the same time (default 8); more wait for a worker, so
                   the latency grows with the load once it is above N in flight
  --notify         sends READY=1 to $NOTIFY_SOCKET once it listens (systemd's notify protocol)

It imports only what it needs (os, socket, threading, time, signal) and is meant to be started
with `python3 -S`, so its start-up is short and steady; autoscale.py measures it. One thread per
connection. SIGTERM or SIGINT: it stops accepting, lets the requests in progress finish (at most
10 s), then exits 0.
"""
import os
import signal
import socket
import sys
import threading
import time


class Stop(Exception):
    pass


def parse_args(argv):
    workers, notify = 8, False
    i = 0
    while i < len(argv):
        if argv[i] == "--workers":
            workers = int(argv[i + 1])
            i += 1
        elif argv[i] == "--notify":
            notify = True
        else:
            sys.exit(f"slow_backend.py: unknown argument {argv[i]}")
        i += 1
    return workers, notify


WORKERS, NOTIFY = parse_args(sys.argv[1:])
pool = threading.BoundedSemaphore(WORKERS)
busy_lock = threading.Lock()
busy = 0            # requests being answered (for the graceful stop)
stopping = False
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"


def answer(conn, close):
    conn.sendall(OK + (b"Connection: close\r\n\r\nok\n" if close else b"\r\nok\n"))


def serve(conn):
    global busy
    data = b""
    try:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split()
            target = parts[1] if len(parts) > 1 else b"/"
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            while len(data) < length:          # a body, read and ignored
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            data = data[length:]
            with busy_lock:
                busy += 1
            try:
                if target.startswith(b"/work"):
                    ms = 100
                    if b"ms=" in target:
                        ms = int(target.split(b"ms=", 1)[1].split(b"&", 1)[0])
                    with pool:
                        time.sleep(ms / 1000)
                close = close or stopping
                answer(conn, close)
            finally:
                with busy_lock:
                    busy -= 1
            if close:
                return
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def on_signal(*_):
    raise Stop()


def main():
    global stopping
    port = int(os.environ["PORT"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    path = os.environ.get("NOTIFY_SOCKET")
    if NOTIFY and path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1\nSTATUS=serving", "\0" + path[1:] if path.startswith("@") else path)
        s.close()
    try:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except Stop:
        pass
    stopping = True
    listener.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with busy_lock:
            if busy == 0:
                break
        time.sleep(0.01)
    os._exit(0)


if __name__ == "__main__":
    main()
