"""Local stand-ins for GitHub's OIDC token endpoint and for STS, on 127.0.0.1 (port 0).

- FakeOidcServer issues JWT-shaped tokens (header.payload.signature, base64url) whose claims
  echo the requested audience, and records every request (audience, Authorization header).
  It can fail the first N requests with HTTP 500, or answer them slower than a client's timeout.
- FakeSts answers STS requests from a script (errors such as AccessDenied or Throttling) and
  forwards the rest to the moto server, keeping the credentials moto handed out so tests can
  look for them in every output.
- CountingServer counts the requests of a child process: it refuses them all (an AWS endpoint that
  must never be called) or forwards them to the moto server and tells the writes from the reads.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

CLAIMS = {
    "iss": "https://token.actions.githubusercontent.com",
    "sub": "repo:octo-org/octo-app:environment:staging",
    "repository": "octo-org/octo-app",
    "ref": "refs/heads/main",
    "environment": "staging",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token with a random 'signature', so every token is a distinct secret."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(secrets.token_bytes(48))}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _LocalHttpServer:
    """A threaded HTTP server on 127.0.0.1 (random port) serving a subclass's handler."""

    def _start_server(self) -> None:
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class OidcRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class FakeOidcServer(_LocalHttpServer):
    """GitHub's token endpoint: GET {url}&audience=... with `Authorization: bearer <request token>`."""

    fail_first: int = 0
    slow_first: int = 0
    delay: float = 0.0
    request_token: str = field(default_factory=lambda: "ghs_" + secrets.token_urlsafe(30))
    requests: list[OidcRequest] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=lambda: dict(CLAIMS))

    def __post_init__(self) -> None:
        self._start_server()

    @property
    def url(self) -> str:
        """Shaped like the runner's: it already has a query string."""
        return f"http://127.0.0.1:{self.port}/_apis/token?api-version=2.0"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                with fake._lock:
                    fake.requests.append(
                        OidcRequest(parts.path, urllib.parse.parse_qs(parts.query), self.headers.get("Authorization"))
                    )
                    number = len(fake.requests)
                if number <= fake.slow_first:
                    time.sleep(fake.delay)
                if number <= fake.fail_first:
                    self._send(500, b'{"message": "internal error"}')
                    return
                if self.headers.get("Authorization") != f"bearer {fake.request_token}":
                    self._send(401, b'{"message": "bad credentials"}')
                    return
                audience = urllib.parse.parse_qs(parts.query).get("audience", [""])[0]
                token = make_jwt({**fake.claims, "aud": audience or "https://github.com/octo-org"})
                with fake._lock:
                    fake.tokens.append(token)
                self._send(200, json.dumps({"count": 1, "value": token}).encode())

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def oidc_server(**options: Any) -> Iterator[FakeOidcServer]:
    server = FakeOidcServer(**options).start()
    try:
        yield server
    finally:
        server.stop()


def refused_url() -> str:
    """A URL on a local port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/_apis/token?api-version=2.0"


STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


def sts_error(status: int, code: str, message: str) -> tuple[int, bytes]:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>{kind}</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>fake-request</RequestId></ErrorResponse>"
    )
    return status, body.encode()


ACCESS_DENIED = sts_error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
THROTTLED = sts_error(400, "Throttling", "Rate exceeded")


@dataclass
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str


@dataclass
class FakeSts(_LocalHttpServer):
    """STS that answers from `script` first (status, body), then forwards to `upstream` (moto)."""

    upstream: str
    script: list[tuple[int, bytes]] = field(default_factory=list)
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    issued: list[IssuedCredentials] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._start_server()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    fake.requests.append(urllib.parse.parse_qs(body.decode()))
                    scripted = fake.script.pop(0) if fake.script else None
                status, answer = scripted or fake._forward(body, self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _forward(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.upstream + "/", data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        found = {
            name: re.search(rf"<{name}>([^<]+)</{name}>", answer.decode())
            for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")
        }
        if all(found.values()):
            with self._lock:
                self.issued.append(IssuedCredentials(*(match.group(1) for match in found.values() if match)))
        return status, answer


@contextmanager
def fake_sts(upstream: str, script: list[tuple[int, bytes]] | None = None) -> Iterator[FakeSts]:
    server = FakeSts(upstream, list(script or [])).start()
    try:
        yield server
    finally:
        server.stop()


def parse_github_output(text: str) -> dict[str, str]:
    """Parse a $GITHUB_OUTPUT file the way the runner does: `name=value` lines and `name<<DELIM` heredocs."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value_lines = []
            while lines[index] != delimiter:
                value_lines.append(lines[index])
                index += 1
            index += 1
            outputs[name] = "\n".join(value_lines)
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


READ_METHODS = ("GET", "HEAD")
HOP_BY_HOP_HEADERS = frozenset({"host", "connection", "transfer-encoding", "expect", "keep-alive", "content-length"})


@dataclass
class CountingServer(_LocalHttpServer):
    """An AWS endpoint that counts every request ("METHOD /path?query").

    Without `upstream` it answers HTTP 500 to everything: an endpoint that must never be called.
    With `upstream` (the moto server) it forwards each request there and relays the answer, so a
    child process can run against real state while the test counts its calls; `writes` are the
    requests that are not GET or HEAD (every AWS read drover makes is one of those).
    """

    upstream: str | None = None
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._start_server()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def writes(self) -> list[str]:
        return [request for request in self.requests if not request.startswith(READ_METHODS)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _count(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    fake.requests.append(f"{self.command} {self.path}")
                if fake.upstream is None:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, headers, answer = fake._forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP_HEADERS | {"date", "server"}:
                        self.send_header(name, value)
                length = dict((name.lower(), value) for name, value in headers).get("content-length")
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _count

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.upstream is not None
        upstream = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
        try:
            kept = {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP_HEADERS}
            connection.request(method, path, body=body if body or method not in READ_METHODS else None, headers=kept)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


@contextmanager
def counting_server(upstream: str | None = None) -> Iterator[CountingServer]:
    server = CountingServer(upstream).start()
    try:
        yield server
    finally:
        server.stop()


def run_action_process(env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The Action's entry point (drover.github.main) in a child process with exactly this environment."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from drover.github import main; sys.exit(main())"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
