"""A loopback proxy in front of a lab registry that injects the faults registries really produce.

It forwards everything else unchanged to the TLS registry, so the tool under test (and the engine, when the proxy
stands in for the upstream) talks to a real registry and only the chosen answers are faulty. ``fault(request)``
decides per request: None forwards it; a Fault answers with a status, resets the connection part-way through the
request body, cuts the response body short, or answers only after a delay.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    user_agent: str
    length: int = 0  # Content-Length of the request body

    @property
    def from_engine(self) -> bool:
        return self.user_agent.lower().startswith("docker/")


@dataclass(frozen=True)
class Fault:
    kind: str  # "status", "reset", "truncate", "slow"
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @staticmethod
    def status_code(code: int, retry_after: str | None = None) -> Fault:
        return Fault("status", status=code, headers={"Retry-After": retry_after} if retry_after else {})


TOO_MANY = Fault.status_code(429, "1")
# The connection is reset half-way through the request body, after that half went on to the registry (which then
# holds a partial upload, as after a real network failure); at once for a request without a body.
RESET = Fault("reset")
TRUNCATE = Fault("truncate")  # the answer promises its full length and stops half-way


def slow(seconds: float) -> Fault:
    return Fault("slow", delay_s=seconds)


def first(n: int, fault: Fault, matches: Callable[[Request], bool]) -> Callable[[Request], Fault | None]:
    """A rule: ``fault`` for the first ``n`` requests that ``matches`` selects, then forward everything."""
    seen = [0]

    def rule(request: Request) -> Fault | None:
        if not matches(request):
            return None
        seen[0] += 1
        return fault if seen[0] <= n else None

    return rule


def _forward_then_cut(
    upstream_host: str, ca_bundle: str, method: str, path: str, headers: Mapping[str, str], part: bytes
) -> None:
    """Send ``method path`` to the registry with the full Content-Length but only ``part`` of the body, then close
    the connection: the registry sees a client that went away mid-upload."""
    host, _, port = upstream_host.rpartition(":")
    connection = http.client.HTTPSConnection(
        host, int(port), context=ssl.create_default_context(cafile=ca_bundle), timeout=60
    )
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            if key.lower() not in _HOP_BY_HOP | {"host"}:
                connection.putheader(key, value)
        connection.endheaders()
        connection.send(part)
        time.sleep(0.2)  # let the registry write what arrived before the connection goes
    finally:
        if connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)
        connection.close()


@contextmanager
def fault_proxy(
    upstream_host: str,
    ca_bundle: str,
    *,
    fault: Callable[[Request], Fault | None] = lambda request: None,
    extra_headers: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """Yield (proxy host, request log of (method, path, status)); status 0 means reset, -1 cut short, -2 delayed."""
    seen: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _record(self, status: int) -> None:
            with lock:
                seen.append((self.command, self.path, status))

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, self.headers.get("User-Agent", ""), length)
            with lock:
                chosen = fault(request)
            if chosen is not None and chosen.kind == "reset":
                half = self.rfile.read(length // 2)
                if half:
                    _forward_then_cut(
                        upstream_host, ca_bundle, self.command, self.path, dict(self.headers), half
                    )
                self._record(0)
                self._reset()
                return
            body = self.rfile.read(length) if length else b""
            if chosen is not None and chosen.kind == "status":
                self._record(chosen.status)
                payload = f'{{"errors":[{{"code":"FAULT","message":"injected {chosen.status}"}}]}}'.encode()
                self.send_response(chosen.status)
                for key, value in chosen.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if chosen is not None and chosen.kind == "slow":
                self._record(-2)
                time.sleep(chosen.delay_s)
            # The engine sends one Accept header per media type: join repeated headers instead of keeping the last.
            headers = {
                k: ", ".join(self.headers.get_all(k) or [])
                for k in dict.fromkeys(self.headers.keys())
                if k.lower() not in _HOP_BY_HOP | {"host"}
            }
            resp = requests.request(
                self.command,
                f"https://{upstream_host}{self.path}",
                headers=headers,
                data=body or None,
                verify=ca_bundle,
                allow_redirects=False,
                timeout=60,
            )
            content = resp.content
            cut = (
                chosen is not None
                and chosen.kind == "truncate"
                and self.command != "HEAD"
                and len(content) > 1
            )
            self._record(-1 if cut else resp.status_code)
            self.send_response(resp.status_code)
            for key, value in resp.headers.items():
                if key.lower() in _HOP_BY_HOP | {"content-length", "content-encoding"}:
                    continue
                if key.lower() == "location":
                    self.send_header(
                        key, value.replace(f"https://{upstream_host}", f"{scheme}://{proxy_host}")
                    )
                    continue
                self.send_header(key, value)
            for key, value in (extra_headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut:
                self.wfile.write(content[: len(content) // 2])
                self.wfile.flush()
                self._reset()
                return
            self.wfile.write(content)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy_host = f"127.0.0.1:{server.server_address[1]}"
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy_host, seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def throttling_proxy(
    upstream_host: str,
    ca_bundle: str,
    *,
    throttle: Callable[[str, str], bool] = lambda method, path: False,
    drop: Callable[[str, str, int], bool] = lambda method, path, length: False,
    extra_headers: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """The fault proxy answering 429 with Retry-After: 1 to the requests ``throttle(method, path)`` picks, and
    resetting those ``drop(method, path, content_length)`` picks half-way through their body."""

    def fault(request: Request) -> Fault | None:
        if drop(request.method, request.path, request.length):
            return RESET
        return TOO_MANY if throttle(request.method, request.path) else None

    with fault_proxy(upstream_host, ca_bundle, fault=fault, extra_headers=extra_headers, tls=tls) as found:
        yield found
