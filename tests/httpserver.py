"""A loopback HTTP server for download tests: ``Range`` requests and injectable faults (127.0.0.1 only)."""

from __future__ import annotations

import http.server
import re
import threading
import time
import urllib.parse
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``server.root`` with ``Range: bytes=N-`` support and injectable faults.

    ``server.state`` (shared with the test):
    ``requests``: ``(method, path, headers)`` of every request;
    ``drop``: ``{path: [K, M]}`` send the full Content-Length but close after K body bytes,
    for the next M requests (M None: always);
    ``status``: ``{path: [code, M]}`` answer ``code`` (e.g. 500, 404) the next M times;
    ``ignore_range``: paths answered 200 with the whole file even when Range is asked;
    ``trickle``: ``{path: seconds}`` send the body one byte at a time, ``seconds`` apart (a stalling server);
    ``silent``: paths answered with their headers and then nothing, until the client goes.
    """

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _take(self, table: str, path: str):
        """The fault for ``path`` in ``state[table]`` (using one of its M), or None."""
        fault = self.server.state[table].get(path)
        if fault is None or fault[1] == 0:
            return None
        if fault[1] is not None:
            fault[1] -= 1
        return fault[0]

    def _serve(self, body: bool):
        state = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        with state["lock"]:
            state["requests"].append((self.command, path, dict(self.headers)))
            code = self._take("status", path)
            drop = self._take("drop", path) if body else None
        file = Path(self.server.root) / path.lstrip("/")
        if code is None and not file.is_file():
            code = 404
        if code is not None:
            return self.send_error(code)
        data = file.read_bytes()
        start, rng = 0, self.headers.get("Range")
        if rng and path not in state["ignore_range"]:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng.strip()).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            payload = data[start:] if drop is None else data[start : start + drop]
            self.close_connection = True
            if path in state["silent"]:
                self.wfile.flush()
                self.rfile.read(1)  # returns when the client closes the connection
                return
            delay = state["trickle"].get(path)
            if delay is None:
                self.wfile.write(payload)
                return
            for i in range(len(payload)):
                try:
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(delay)


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.root = str(root)
        self.state = self.httpd.state = {
            "lock": threading.Lock(),
            "requests": [],
            "drop": {},
            "status": {},
            "ignore_range": set(),
            "trickle": {},
            "silent": set(),
        }
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return self.url(name)

    def gets(self, name: str) -> list[dict]:
        """Headers of the GET requests made for ``name``."""
        return [h for m, p, h in self.state["requests"] if m == "GET" and p == f"/{name}"]
