"""A real S3-compatible server on loopback for the object storage tests: moto's server, behind a
small HTTP proxy that can answer with errors for a while (moto has no fault injection of its own)
and records every request, so a test can say which objects a run wrote.

Clients point at the proxy (``endpoint``); the proxy forwards every request it does not fail to
moto unchanged. ``fail(n, methods=...)`` makes the next ``n`` matching requests get
``503 ServiceUnavailable`` (an S3 error body botocore parses), as a store under load does.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from dataclasses import dataclass, field

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_ERROR_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
               b"<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>")


@dataclass
class Faults:
    """Requests to fail next, and every request seen (method, path) since the last ``clear``."""

    remaining: int = 0
    methods: frozenset[str] = frozenset()
    failed: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> bool:
        with self.lock:
            self.seen.append((method, path))
            if self.remaining > 0 and (not self.methods or method in self.methods):
                self.remaining -= 1
                self.failed += 1
                return True
            return False


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        if self.server.faults.take(self.command, self.path):
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_ERROR_BODY)))
            self.end_headers()
            self.wfile.write(_ERROR_BODY)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            head = self.command == "HEAD"  # its Content-Length is the object's: passed on as it is
            for key, value in response.getheaders():
                if key.lower() not in _HOP_HEADERS and (head or key.lower() != "content-length"):
                    self.send_header(key, value)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's naming


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], faults: Faults):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.faults = faults


class S3Server:
    """moto's S3 server on a free loopback port, behind the fault proxy."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self.faults = Faults()
        self.proxy = _ProxyServer(self.moto.get_host_and_port(), self.faults)
        self.thread = threading.Thread(target=self.proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy.server_address[1]}"

    def fail(self, n: int, methods: tuple[str, ...] = ()) -> None:
        """The next ``n`` requests (of ``methods``, or any) get HTTP 503."""
        with self.faults.lock:
            self.faults.remaining, self.faults.methods = n, frozenset(methods)

    def clear(self) -> None:
        with self.faults.lock:
            self.faults.remaining, self.faults.failed, self.faults.seen = 0, 0, []

    def requests(self, method: str | None = None) -> list[tuple[str, str]]:
        with self.faults.lock:
            return [r for r in self.faults.seen if method is None or r[0] == method]

    def close(self) -> None:
        self.proxy.shutdown()
        self.proxy.server_close()
        self.moto.stop()
