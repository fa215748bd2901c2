"""A small threaded HTTPS server on loopback for the lab's own services (the token service): each path's GET and
POST go to an answer function with the query (or the form) and the Authorization header. Test harness only."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ci_images.log import log

# (status, headers, body) for (method, parameters, Authorization header).
Answer = tuple[int, Mapping[str, str], bytes]
Route = Callable[[str, Mapping[str, list[str]], str | None], Answer]
_NOT_FOUND: Answer = (404, {"Content-Type": "text/plain"}, b"not found\n")


class HttpsServer(ThreadingHTTPServer):
    """Serves ``routes`` (path -> answer function) over TLS in a thread of this process until ``stop()``.

    The TLS handshake runs in each connection's own thread, so a stuck client blocks nobody else.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], tls: tuple[Path, Path], routes: Mapping[str, Route]) -> None:
        super().__init__(address, _Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(tls[0]), str(tls[1]))
        self.routes = dict(routes)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, name=f"lab-https-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # a client that does not trust the lab CA hangs up here
            log.debug(f"lab https {self.port}: TLS handshake with {client_address} failed: {exc}")
            return
        try:
            _Handler(conn, client_address, self)
        finally:
            conn.close()  # the TLS socket owns the connection now: shutdown_request() only closes its husk

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        log.debug(f"lab https {self.port}: request from {client_address} broke off")


class _Handler(BaseHTTPRequestHandler):
    server: HttpsServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self._answer("GET", url.path, url.query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode("utf-8", errors="replace")
        self._answer("POST", urlsplit(self.path).path, form)

    def _answer(self, method: str, path: str, query: str) -> None:
        route = self.server.routes.get(path)
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        status, headers, body = (
            route(method, params, self.headers.get("Authorization")) if route else _NOT_FOUND
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """The services keep their own request logs; stderr stays quiet."""


__all__ = ["Answer", "HttpsServer", "Route"]
