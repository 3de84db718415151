#!/usr/bin/env python3
"""Steady load for tests: N keep-alive clients sending GET requests to URL until the stop file
exists (or --duration passes). Prints one JSON line: ok, failed, errors (first few), by_instance."""
import argparse, http.client, json, os, threading, time
from urllib.parse import urlparse

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("--clients", type=int, default=4)
parser.add_argument("--duration", type=float, default=60)
parser.add_argument("--stop-file")
parser.add_argument("--pause", type=float, default=0.005, help="seconds between a client's requests")
args = parser.parse_args()
url = urlparse(args.url)
lock = threading.Lock()
counts = {"ok": 0, "failed": 0, "errors": [], "by_instance": {}}
deadline = time.time() + args.duration


def done():
    return time.time() > deadline or (args.stop_file and os.path.exists(args.stop_file))


def client():
    conn = None
    while not done():
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
            conn.request("GET", (url.path or "/") + ("?" + url.query if url.query else ""))
            response = conn.getresponse()
            body = response.read()
            with lock:
                if response.status == 200:
                    counts["ok"] += 1
                    who = response.getheader("X-Instance", "?")
                    counts["by_instance"][who] = counts["by_instance"].get(who, 0) + 1
                else:
                    counts["failed"] += 1
                    if len(counts["errors"]) < 5:
                        counts["errors"].append(f"HTTP {response.status}: {body[:100]!r}")
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as error:  # every failure a client could see counts
            with lock:
                counts["failed"] += 1
                if len(counts["errors"]) < 5:
                    counts["errors"].append(repr(error))
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(args.pause)


threads = [threading.Thread(target=client) for _ in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
