"""Fault injection into drover's boto3 clients, which otherwise talk to the real moto server.

- Faults are injected per *attempt* on `before-send`, so botocore's standard retry mode sees them
  exactly as it would see AWS's answers (a `before-call` answer would skip botocore's retries):
  an error answer (`AWSResponse`), or a raised connection error, for the first N attempts, then
  the real request goes through.
- What moto does not do is emulated on the answers: Lambda's asynchronous updates
  (`LastUpdateStatus` InProgress → Successful/Failed, rewritten into GetFunction's answer) and
  the `RevisionId` precondition (moto neither returns nor checks a RevisionId).
- Hooks run code at a point of the run: another writer changing the function between drover's
  read and its write (`before-call`), or the process dying right after a write (`after-call`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from drover.deploy import AwsClients

Action = Callable[[AWSPreparedRequest], AWSResponse | None]
Hook = Callable[..., None]


class Body:
    """The raw body of an injected answer: what AWSResponse reads with `.stream()`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def lambda_error(status: int, code: str, message: str) -> Action:
    """An error answer as Lambda's REST-JSON API sends it."""

    def answer(request: AWSPreparedRequest) -> AWSResponse:
        headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/", "Content-Type": "application/json"}
        if status == 429:
            headers["Retry-After"] = "1"
        body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode()
        return AWSResponse(request.url, status, headers, Body(body))

    return answer


def s3_error(status: int, code: str, message: str) -> Action:
    """An error answer as S3's REST-XML API sends it."""

    def answer(request: AWSPreparedRequest) -> AWSResponse:
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, Body(body.encode()))

    return answer


def gateway_error(status: int, text: str) -> Action:
    """A load balancer's answer: an HTML page, no AWS error document."""

    def answer(request: AWSPreparedRequest) -> AWSResponse:
        body = f"<html><body><h1>{status} {text}</h1></body></html>".encode()
        return AWSResponse(request.url, status, {"Content-Type": "text/html"}, Body(body))

    return answer


def connection_reset(request: AWSPreparedRequest) -> None:
    """The connection is reset before the request reaches AWS (botocore maps a reset to this error)."""
    raise ConnectionClosedError(endpoint_url=request.url)


def read_timeout(request: AWSPreparedRequest) -> None:
    """No answer within the read timeout; the request never reached AWS."""
    raise ReadTimeoutError(endpoint_url=request.url)


def connection_refused(request: AWSPreparedRequest) -> None:
    """Nothing listens at the endpoint (or DNS fails)."""
    raise EndpointConnectionError(endpoint_url=request.url)


def answer_lost(error: type[ConnectionClosedError] | type[ReadTimeoutError]) -> Action:
    """The request reaches AWS and is applied, but its answer never arrives (timeout or reset)."""

    def send_then_fail(request: AWSPreparedRequest) -> None:
        response = URLLib3Session().send(request)
        assert response.status_code < 300, response.content
        raise error(endpoint_url=request.url)

    return send_then_fail


@dataclass
class Fault:
    """An action for the first `times` attempts of an operation (every attempt when times is None)."""

    operation: str
    action: Action
    times: int | None = None
    used: int = 0

    def applies(self, operation: str) -> bool:
        return operation == self.operation and (self.times is None or self.used < self.times)


@dataclass
class UpdateStatus:
    """Lambda applies an update asynchronously; moto at once. This rewrites GetFunction's answers.

    `queue` holds the (LastUpdateStatus, reason) the next GetFunction answers carry; after it runs
    out, `failed` (a reason) keeps LastUpdateStatus Failed until the next successful update.
    """

    queue: deque[tuple[str, str | None]] = field(default_factory=deque)
    failed: str | None = None

    def then(self, *statuses: tuple[str, str | None]) -> None:
        self.queue.extend(statuses)

    def rewrite(self, configuration: dict[str, Any]) -> None:
        if self.queue:
            status, reason = self.queue.popleft()
        elif self.failed is not None:
            status, reason = "Failed", self.failed
        else:
            return
        configuration["LastUpdateStatus"] = status
        if reason:
            configuration["LastUpdateStatusReason"] = reason


REVISION_CHECKED = frozenset({"UpdateFunctionCode", "UpdateFunctionConfiguration", "PublishVersion"})
PRECONDITION_FAILED = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def revision_of(configuration: dict[str, Any]) -> str:
    """A RevisionId that changes whenever the function's code or configuration changes."""
    state = {key: value for key, value in configuration.items() if key not in _VOLATILE}
    state["Layers"] = [layer["Arn"] for layer in configuration.get("Layers", [])]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:32]


_VOLATILE = frozenset({"RevisionId", "LastUpdateStatus", "LastUpdateStatusReason", "State", "LastModified"})


@dataclass
class RevisionCheck:
    """Lambda's RevisionId precondition: GetFunction answers carry a RevisionId derived from the live
    function, and a write whose RevisionId is not the live one is refused with a 412."""

    lambda_client: Any  # a plain client (no hooks) reading the live function from moto
    function_name: str = "fn"
    refused: int = 0

    def current(self) -> str:
        return revision_of(self.lambda_client.get_function(FunctionName=self.function_name)["Configuration"])

    def check(self, operation: str, request: AWSPreparedRequest) -> AWSResponse | None:
        if operation not in REVISION_CHECKED or not request.body:
            return None
        body = request.body if isinstance(request.body, bytes | str) else b""
        if hasattr(request.body, "getvalue"):  # a direct upload's body, streamed so drover can count what is sent
            body = request.body.getvalue()
        sent = json.loads(body or b"{}").get("RevisionId")
        if sent is None or sent == self.current():
            return None
        self.refused += 1
        return lambda_error(412, "PreconditionFailedException", PRECONDITION_FAILED)(request)


@dataclass
class Faults:
    """Every fault, emulation and hook of one test, dispatched from one handler per event kind.

    botocore calls every handler of an event, so a single dispatcher decides, in order: the faults
    (throttling, the network, an update in progress: what answers before Lambda looks at the
    request), then the RevisionId check. `attempts` counts the attempts per operation.
    """

    faults: list[Fault] = field(default_factory=list)
    status: UpdateStatus = field(default_factory=UpdateStatus)
    revisions: RevisionCheck | None = None
    before_call: list[tuple[str, Hook]] = field(default_factory=list)
    after_call: list[tuple[str, Hook]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)

    def add(self, operation: str, action: Action, times: int | None = None) -> Fault:
        fault = Fault(operation, action, times)
        self.faults.append(fault)
        return fault

    def before(self, operation: str, hook: Hook, *, once: bool = True) -> None:
        """Run hook() before the operation's call (once: only before its first call)."""
        self.before_call.append((operation, _once(hook) if once else hook))

    def after(self, operation: str, hook: Hook, *, once: bool = True) -> None:
        """Run hook() after the operation's successful call."""
        self.after_call.append((operation, _once(hook) if once else hook))

    def clear(self) -> None:
        """Drop the faults and hooks (a plain rerun); keep the emulation of Lambda's behaviour."""
        self.faults.clear()
        self.before_call.clear()
        self.after_call.clear()
        self.attempts.clear()

    def install(self, clients: AwsClients) -> None:
        assert clients.session is not None
        events = clients.session.events
        events.register("before-send", self._before_send)
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.attempts[operation] += 1
        for fault in self.faults:
            if fault.applies(operation):
                fault.used += 1
                return fault.action(request)
        return self.revisions.check(operation, request) if self.revisions is not None else None

    def _before_call(self, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        for name, hook in list(self.before_call):
            if name == operation:
                hook()

    def _after_call(self, event_name: str, http_response: AWSResponse, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        operation = event_name.rsplit(".", 1)[-1]
        if operation == "GetFunction" and "Configuration" in parsed:
            self.status.rewrite(parsed["Configuration"])
            if self.revisions is not None:
                parsed["Configuration"]["RevisionId"] = revision_of(parsed["Configuration"])
        if operation in {"UpdateFunctionCode", "UpdateFunctionConfiguration"}:
            self.status.failed = None
        for name, hook in list(self.after_call):
            if name == operation:
                hook()


def _once(hook: Hook) -> Hook:
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            hook()

    return run
