"""A loopback HTTP proxy in front of a local AWS API (moto) that throttles Lambda's control plane as Lambda does.

Lambda requests beyond `rate` per sliding second are answered here, without reaching the upstream,
with Lambda's throttling error: HTTP 429, header `x-amzn-ErrorType: TooManyRequestsException`, JSON
body `{"Reason": "CallerRateLimitExceeded", "Type": "User", "message": "Rate exceeded"}` (the
`TooManyRequestsException` shape of botocore's Lambda model; botocore's standard and adaptive retry
modes treat both that code and the 429 status as throttling). Every other request (S3, IAM, ...)
passes unthrottled. A request is Lambda's when its SigV4 credential scope names the `lambda` service
or, unsigned, when its path starts with an API version date (`/2015-03-31/`, `/2018-10-31/`, ...).

Standard library only. Listens on 127.0.0.1 only and stops by itself after `max_lifetime` seconds.
`GET /__throttle_proxy__/stats` (answered by the proxy, never forwarded or counted) returns the
counts as JSON; so does ThrottleProxy.stats() in-process.

    python bench/throttle_proxy.py --upstream http://127.0.0.1:5000 --rate 10 --max-lifetime 600

prints `listening on http://127.0.0.1:PORT` as its first line, then serves until the lifetime ends.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

STATS_PATH = "/__throttle_proxy__/stats"
THROTTLE_BODY = json.dumps({"Reason": "CallerRateLimitExceeded", "Type": "User", "message": "Rate exceeded"}).encode()
LAMBDA_PATH = re.compile(r"^/\d{4}-\d{2}-\d{2}/")
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
FORWARD_DROPPED = frozenset({"connection", "keep-alive", "proxy-connection", "expect"})  # 100-continue: answered here
NAME_SEGMENT = 3  # /2015-03-31/functions/<name>/...: the segment that names a resource


class SlidingWindow:
    """At most `rate` admissions in any window of `seconds` (the admitted requests' times, kept in order)."""

    def __init__(self, rate: int, seconds: float = 1.0, clock: Any = time.monotonic) -> None:
        if rate < 1:
            raise ValueError(f"rate must be at least 1, got {rate}")
        self.rate, self.seconds, self.clock = rate, seconds, clock
        self.admitted: deque[float] = deque()
        self.lock = threading.Lock()

    def admit(self) -> bool:
        with self.lock:
            now = self.clock()
            while self.admitted and self.admitted[0] <= now - self.seconds:
                self.admitted.popleft()
            if len(self.admitted) >= self.rate:
                return False
            self.admitted.append(now)
            return True


def signing_service(headers: Any) -> str | None:
    match = CREDENTIAL_SCOPE.search(headers.get("Authorization", "") or "")
    return match.group(1) if match else None


def is_lambda(path: str, headers: Any) -> bool:
    service = signing_service(headers)
    if service is not None:
        return service == "lambda"
    return LAMBDA_PATH.match(path) is not None


def operation_key(method: str, path: str) -> str:
    """`PUT /2015-03-31/functions/{}/code`: the request's method and path with the resource name left out."""
    segments = urlsplit(path).path.split("/")
    shape = ["{}" if index == NAME_SEGMENT or part.isdigit() else part for index, part in enumerate(segments)]
    return f"{method} {'/'.join(shape)}"


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lambda_accepted = 0
        self.lambda_throttled = 0
        self.other_requests = 0
        self.upstream_errors = 0
        self.operations: Counter[str] = Counter()
        self.first_lambda: float | None = None
        self.last_lambda: float | None = None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            span = (self.last_lambda - self.first_lambda) if self.first_lambda and self.last_lambda else 0.0
            return {
                "lambda_accepted": self.lambda_accepted,
                "lambda_throttled": self.lambda_throttled,
                "other_requests": self.other_requests,
                "upstream_errors": self.upstream_errors,
                "lambda_accepted_span_seconds": round(span, 3),
                "operations": dict(self.operations.most_common()),
            }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, proxy: ThrottleProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server: _Server
    upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:  # the client closed its connection: close ours upstream too
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    def do_GET(self) -> None:
        if self.path == STATS_PATH:
            self._reply(200, {"Content-Type": "application/json"}, json.dumps(self.server.proxy.stats()).encode())
            return
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        counters = proxy.counters
        if is_lambda(self.path, self.headers):
            if not proxy.window.admit():
                with counters.lock:
                    counters.lambda_throttled += 1
                headers = {
                    "Content-Type": "application/json",
                    "x-amzn-ErrorType": "TooManyRequestsException",
                    "x-amzn-RequestId": str(uuid.uuid4()),
                }
                self._reply(429, headers, THROTTLE_BODY)
                return
            now = time.monotonic()
            with counters.lock:
                counters.lambda_accepted += 1
                counters.operations[operation_key(self.command, self.path)] += 1
                counters.first_lambda = counters.first_lambda or now
                counters.last_lambda = now
        else:
            with counters.lock:
                counters.other_requests += 1
        self._forward(body)

    def _read_body(self) -> bytes:
        """The request body as sent: Content-Length bytes, or the raw chunked stream (S3 uploads with trailers)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self.rfile.readline(65537)
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(raw)
                raw += self.rfile.read(size + 2)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> None:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in FORWARD_DROPPED}
        for attempt in range(2):  # a kept-alive upstream connection may have been closed: reconnect once
            if self.upstream is None:
                host, port = self.server.proxy.upstream
                self.upstream = http.client.HTTPConnection(host, port, timeout=300)
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                response = self.upstream.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.upstream.close()
                self.upstream = None
                if attempt == 1:
                    with self.server.proxy.counters.lock:
                        self.server.proxy.counters.upstream_errors += 1
                    self._reply(502, {"Content-Type": "text/plain"}, b"upstream unreachable")
                    return
        out = {name: value for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP}
        if self.command == "HEAD":
            length = response.getheader("Content-Length")
            self._reply(response.status, out, b"", content_length=length)
        else:
            self._reply(response.status, out, payload)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, content_length: str | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", content_length if content_length is not None else str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class ThrottleProxy:
    """The proxy, serving in a daemon thread from start() until stop() or its max lifetime."""

    def __init__(self, upstream: str, rate: int = 10, max_lifetime: float = 600.0, clock: Any = time.monotonic) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.window = SlidingWindow(rate, clock=clock)
        self.counters = Counters()
        self.max_lifetime = max_lifetime
        self.server = _Server(self)
        host, port = self.server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="throttle-proxy", daemon=True)
        self._timer = threading.Timer(max_lifetime, self.stop)
        self._timer.daemon = True
        self._stopped = threading.Event()

    def start(self) -> ThrottleProxy:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._timer.cancel()
            self.server.shutdown()
            self.server.server_close()

    def wait(self) -> None:
        self._stopped.wait()

    def stats(self) -> dict[str, Any]:
        return {"rate": self.window.rate, **self.counters.snapshot()}

    def __enter__(self) -> ThrottleProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the AWS API to forward to: http://127.0.0.1:PORT")
    parser.add_argument("--rate", type=int, default=10, help="Lambda requests per sliding second (default 10)")
    parser.add_argument("--max-lifetime", type=float, default=600.0, help="seconds until it stops by itself")
    args = parser.parse_args(argv)
    proxy = ThrottleProxy(args.upstream, args.rate, args.max_lifetime).start()
    print(f"listening on {proxy.endpoint}", flush=True)
    try:
        proxy.wait()
    except KeyboardInterrupt:
        proxy.stop()
    print(json.dumps(proxy.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
