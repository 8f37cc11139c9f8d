"""An AWS endpoint in front of moto that holds one request until the test lets it through.

The test waits until the Action is blocked inside that request (a deploy half done), then stops
the Action the way the runner cancels a job; no sleeps, no timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.github_fakes import CountingServer


@dataclass
class HoldingServer(CountingServer):
    hold: str = ""  # "METHOD /path" prefix of the request to hold
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.hold and f"{method} {path}".startswith(self.hold):
            self.arrived.set()
            self.release.wait(120)
            return 503, [("Content-Type", "application/json")], b'{"message": "held"}'
        return super()._forward(method, path, headers, body)


@contextmanager
def holding_server(upstream: str, hold: str) -> Iterator[HoldingServer]:
    server = HoldingServer(upstream, hold=hold).start()
    try:
        yield server
    finally:
        server.release.set()
        server.stop()
