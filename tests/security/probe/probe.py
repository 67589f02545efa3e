"""The probe: reports from inside a container (or a build step) what it can reach and how much it can write.

    python3 probe.py --serve PORT               a web app: GET /connect?t=HOST:PORT&t=...  GET /write?path=P&mb=N
    python3 probe.py --connect HOST:PORT ...    once, JSON on stdout (what a build step runs)
    python3 probe.py --write PATH MB            once, JSON on stdout
"""

import errno
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def connect(target):
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as sock:
            sock.settimeout(1)
            try:
                greeting = sock.recv(64).decode(errors="replace").strip()
            except OSError:
                greeting = ""
            return "open " + greeting
    except OSError as exc:
        return f"blocked {type(exc).__name__}: {exc}"


def write(path, mb):
    """Write up to `mb` MiB of zeros to `path`, fsync'ed, and say how far it got and why it stopped."""
    chunk = b"\0" * (1 << 20)
    written = 0
    try:
        with open(path, "wb") as fh:
            while written < mb:
                fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
                written += 1
        error = None
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, str(exc.errno))
    return {"path": path, "written_mb": written, "error": error}


def statuses():
    with open("/proc/self/status") as fh:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in fh) if k.startswith(("Cap", "NoNew"))}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/connect":
            body = {t: connect(t) for t in query.get("t", [])}
        elif url.path == "/write":
            body = write(query["path"][0], int(query["mb"][0]))
        elif url.path == "/status":
            body = statuses()
        else:
            body = {"probe": "ready"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "--serve":
        ThreadingHTTPServer(("0.0.0.0", int(args[0])), Handler).serve_forever()
    elif mode == "--connect":
        print(json.dumps({"connect": {t: connect(t) for t in args}, "status": statuses()}))
    elif mode == "--write":
        print(json.dumps(write(args[0], int(args[1]))))
