"""A real HTTP server on 127.0.0.1 for download tests: serves byte strings, honours ``Range``
requests, and can cut a transfer short to exercise resuming. Runs http.server in a thread."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    data: bytes
    #: Send only this many bytes of the body (while announcing the full length), then hang up ...
    cut_after: int | None = None
    #: ... for this many requests; later requests are served in full.
    cut_times: int = 0
    #: Answer Range requests with the whole file (200), like servers without range support.
    ignore_range: bool = False


@dataclass
class ServerState:
    routes: dict[str, Route] = field(default_factory=dict)
    #: (path, Range header or None, body bytes sent) per request.
    log: list[tuple[str, str | None, int]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on a subclass per server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        route = self.state.routes.get(self.path)
        range_header = self.headers.get("Range")
        if route is None:
            self.send_error(404, "Not Found")
            self.state.log.append((self.path, range_header, 0))
            return
        data, size = route.data, len(route.data)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not route.ignore_range:
            start = int(match.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.state.log.append((self.path, range_header, 0))
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if route.cut_after is not None and route.cut_times > 0:
            route.cut_times -= 1
            body = body[: route.cut_after]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        self.state.log.append((self.path, range_header, len(body)))


class LocalServer:
    def __init__(self) -> None:
        self.state = ServerState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
