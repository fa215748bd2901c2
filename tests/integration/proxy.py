"""A loopback HTTP proxy in front of a lab registry that answers 429 (with Retry-After) to chosen requests, or drops
the connection in the middle of a chosen request's body.

It forwards everything else unchanged to the TLS registry, so the tool under test talks to a real registry and
only the rate-limit answers and the dropped connections are injected.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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
def throttling_proxy(
    upstream_host: str,
    ca_bundle: str,
    *,
    throttle: Callable[[str, str], bool] = lambda method, path: False,
    drop: Callable[[str, str, int], bool] = lambda method, path, length: False,
    extra_headers: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """Yield (proxy host, request log of (method, path, status)); ``throttle(method, path)`` picks the 429s.

    ``drop(method, path, content_length)`` picks requests whose connection is cut once half their body has arrived
    (no answer; logged with status 0), as a network failure mid-upload does: the half is forwarded to the registry
    before its connection is cut too, so the registry holds a partial upload, as after a real failure. ``extra_headers`` are added to every
    forwarded answer (e.g. Docker Hub's ratelimit headers); ``tls`` is a (certificate, key) pair to serve HTTPS,
    as a real upstream does.
    """
    seen: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            with lock:
                dropped = drop(self.command, self.path, length)
            if dropped:
                half = self.rfile.read(length // 2)
                _forward_then_cut(upstream_host, ca_bundle, self.command, self.path, dict(self.headers), half)
                with lock:
                    seen.append((self.command, self.path, 0))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # a reset mid-body, not an HTTP answer
                return
            body = self.rfile.read(length) if length else b""
            with lock:
                throttled = throttle(self.command, self.path)
            if throttled:
                with lock:
                    seen.append((self.command, self.path, 429))
                payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            resp = requests.request(
                self.command,
                f"https://{upstream_host}{self.path}",
                headers=headers,
                data=body or None,
                verify=ca_bundle,
                allow_redirects=False,
                timeout=60,
            )
            with lock:
                seen.append((self.command, self.path, resp.status_code))
            content = resp.content
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
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
