#!/usr/bin/env python3
"""N GET requests to URL, over one keep-alive connection (or a new connection each with --fresh).
Prints one JSON line: the X-Instance of each answer in order (or "HTTP <code>"/an error)."""
import argparse, http.client, json
from urllib.parse import urlparse

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("count", type=int)
parser.add_argument("--fresh", action="store_true")
args = parser.parse_args()
url = urlparse(args.url)
seen, conn = [], None
for _ in range(args.count):
    try:
        if conn is None or args.fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
        conn.request("GET", url.path or "/")
        response = conn.getresponse()
        body = response.read()
        seen.append(response.getheader("X-Instance", "?") if response.status == 200 else f"HTTP {response.status}: {body.decode(errors='replace').strip()}")
    except Exception as error:
        seen.append(repr(error))
        conn = None
print(json.dumps(seen), flush=True)
