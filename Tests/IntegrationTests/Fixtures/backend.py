#!/usr/bin/env python3
"""A test instance: HTTP/1.1 keep-alive server on 127.0.0.1:$PORT answering with its identity.

  GET /            -> 200 "instance <INSTANCE>\n" (X-Instance header too)
  GET /healthz     -> 200, or 503 while the file $UNHEALTHY_FILE exists
  GET /slow?ms=N   -> waits N ms, then answers like /
  GET /headers     -> the request headers it saw, one per line
  POST /upload     -> reads the body, answers its length
  --start-delay S  -> sleeps S seconds before listening (a slow starter)
  --notify         -> sends READY=1 to $NOTIFY_SOCKET once listening
  $BEHAVIOR        -> how GET / answers, to make "versions" by editing a manifest: ok (default),
                      fail (500), slow (after 600 ms), crash (exit 3 before listening)
  --behaviors L    -> a comma-separated BEHAVIOR per instance index ($MUSTER_INSTANCE), e.g.
                      "fail,slow,ok": instance 0 answers 500, 1 is slow, 2 is fine
  --slow-ms N      -> how long "slow" waits (default 600)
SIGTERM: stop accepting, let in-flight requests finish, exit 0.
"""
import argparse, os, signal, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

parser = argparse.ArgumentParser()
parser.add_argument("--start-delay", type=float, default=0)
parser.add_argument("--notify", action="store_true")
parser.add_argument("--behaviors")
parser.add_argument("--slow-ms", type=int, default=600)
args = parser.parse_args()
instance = os.environ.get("MUSTER_INSTANCE", "?")
behavior = os.environ.get("BEHAVIOR", "ok")
if args.behaviors:
    per_index = args.behaviors.split(",")
    behavior = per_index[int(instance) % len(per_index)] if instance.isdigit() else behavior
if behavior == "crash":
    sys.exit(3)
port = int(os.environ["PORT"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Instance", instance)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            unhealthy = os.environ.get("UNHEALTHY_FILE")
            if unhealthy and os.path.exists(unhealthy):
                return self.answer(503, "unhealthy\n")
            return self.answer(200, "ok\n")
        if url.path == "/headers":
            return self.answer(200, "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items()))
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["100"])[0]) / 1000)
        if behavior == "fail":
            return self.answer(500, "broken version\n")
        if behavior == "slow":
            time.sleep(args.slow_ms / 1000)
        self.answer(200, f"instance {instance}\n")

    do_HEAD = do_GET

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
        self.answer(200, f"{length}\n")


if args.start_delay:
    time.sleep(args.start_delay)
class Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of new connections from the proxy's
    # pool (20 clients arriving at once) would overflow it, and the kernel drops the extra SYNs
    # until the proxy's connect_timeout. Real servers listen with a backlog of 128 or more.
    request_queue_size = 128


server = Server(("127.0.0.1", port), Handler)
server.daemon_threads = False
server.block_on_close = True


def stop(*_):
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
if args.notify and os.environ.get("NOTIFY_SOCKET"):
    path = os.environ["NOTIFY_SOCKET"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1\nSTATUS=serving", "\0" + path[1:] if path.startswith("@") else path)
    s.close()
server.serve_forever()
server.server_close()
sys.exit(0)
