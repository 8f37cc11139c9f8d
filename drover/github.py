"""The GitHub Action adapter: the only module that reads GitHub's environment.

It turns `INPUT_*` variables into a Drover run and renders the result for GitHub:
workflow commands (masks, groups, annotations) through actions-toolkit, step outputs in
`$GITHUB_OUTPUT` (stdout without it), and a Markdown step summary. It owns what actions-toolkit
lacks: the OIDC token request with a timeout and jittered retries, the STS exchange through
`drover.deploy`, and error annotations carrying file/line/column.

Credentials reach the deploy engine explicitly (`RunOptions.aws`), never through os.environ,
and the runner's token-request variables are removed from os.environ once read, so a
subprocess (pip building a dependency) can neither see the keys nor mint an OIDC token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from actions_toolkit import core
from actions_toolkit.command import Command
from actions_toolkit.file_command import prepare_key_value_message

from drover import __version__, streams
from drover.deploy import (
    STS_ATTEMPTS,
    STS_TRUST_CODES,
    AssumeRoleError,
    AwsClients,
    AwsCredentials,
    assume_role_with_web_identity,
)
from drover.errors import DroverError, SettingsError, one_line
from drover.interrupt import exit_code, failure_note, handle_sigterm, interruption_message
from drover.lockfiles import confine_reads
from drover.locks import included_files
from drover.models import REGION_PATTERN, DeployResult, MultiResult, Stage, short_repr
from drover.options import RunOptions, Timings
from drover.progress import PlainProgress
from drover.report import (
    render_multi_summary,
    render_multi_text,
    render_summary,
    render_text,
    shorten,
    unwritten_report,
)
from drover.retry import Backoff, retry
from drover.service import Run, RunRequest

logger = logging.getLogger("drover")

NOT_GIVEN = "(not given)"  # action.yml's default of an input that has no value unless given
# Every input with its default, exactly as in action.yml (tests/test_github.py keeps them equal).
# Applied here too: a `uses: docker://ghcr.io/...` step gets no defaults from action.yml.
INPUT_DEFAULTS: dict[str, str] = {
    "stage": "",
    "settings-file": "drover.yml",
    "working-directory": ".",
    "install-path": NOT_GIVEN,
    "install-source": NOT_GIVEN,
    "requirements": NOT_GIVEN,
    "verify-dependencies": "false",
    "role-to-assume": NOT_GIVEN,
    "aws-region": NOT_GIVEN,
    "audience": "sts.amazonaws.com",
    "role-session-name": "drover-action",
    "role-duration-seconds": "3600",
    "dry-run": "false",
    "publish": NOT_GIVEN,
    "alias": NOT_GIVEN,
    "promote-from": NOT_GIVEN,
    "allow-untracked-source": "false",
    "rollback": "false",
    "ignore-alarms-at-start": "false",
    "function-name": NOT_GIVEN,
    "region": NOT_GIVEN,
}
OUTPUT_NAMES = (
    "function-arn",
    "function-digest",
    "requirements-digest",
    "requirements-layer-arn",
    "code-sha256",
    "function-updated",
    "requirements-updated",
    "configuration-updated",
    "version",
    "version-published",
    "changed",
    "rollout",
    "previous-version",
    "result-json",
)
HEREDOC_OUTPUTS = frozenset({"result-json"})

MIN_ROLE_DURATION, MAX_ROLE_DURATION = 900, 43200
SESSION_NAME_PATTERN = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
TRUE_VALUES = frozenset({"true", "True", "TRUE"})
FALSE_VALUES = frozenset({"false", "False", "FALSE"})
# An OIDC audience is a URI or a name: printable ASCII without spaces (so never a line break that could
# start a workflow command in the log), at most 256 characters.
AUDIENCE_PATTERN = re.compile(r"[\x21-\x7e]{1,256}")
OIDC_DEADLINE_SECONDS, OIDC_DEADLINE_VARIABLE = 60.0, "DROVER_OIDC_DEADLINE_SECONDS"

# The runner's OIDC request variables (present only with `permissions: id-token: write`) and
# the runtime token: read once, then removed from os.environ.
ID_TOKEN_URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"
ID_TOKEN_TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
RUNNER_TOKEN_VARIABLES = (ID_TOKEN_URL_VARIABLE, ID_TOKEN_TOKEN_VARIABLE, "ACTIONS_RUNTIME_TOKEN")
TOKEN_CLAIMS = ("sub", "aud", "repository", "ref", "environment")
MAX_TOKEN_RESPONSE_BYTES = 1 << 20
USER_AGENT = f"drover-action/{__version__}"

# Retry tuning, overridable through the environment (the tests make them fast).
OIDC_ATTEMPTS, OIDC_ATTEMPTS_VARIABLE = 5, "DROVER_OIDC_ATTEMPTS"
OIDC_TIMEOUT_SECONDS, OIDC_TIMEOUT_VARIABLE = 10.0, "DROVER_OIDC_TIMEOUT_SECONDS"
STS_ATTEMPTS_VARIABLE = "DROVER_STS_ATTEMPTS"
RETRY_BASE_SECONDS, RETRY_BASE_VARIABLE = 1.0, "DROVER_RETRY_BASE_SECONDS"

SUMMARY_LIMIT = 1024 * 1024
PHASE_TITLES = {
    "read": "Read the live function",
    "install": "Install",
    "package": "Package: walk, partition, digest",
    "compare": "Compare with the live function",
    "archive": "Build archives",
    "deploy": "Deploy",
}


class ActionInputError(DroverError):
    """An input of the Action (or the job's configuration) is wrong; nothing was called yet."""

    exit_code = 2


class CredentialsError(DroverError):
    """The OIDC token or the STS credentials could not be obtained."""

    exit_code = 1


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionInputs:
    stages: tuple[str, ...]
    working_directory: Path
    settings_file: Path
    install_path: Path | None
    install_source: Path | None
    requirements: Path | None
    role_to_assume: str | None
    aws_region: str | None
    audience: str
    role_session_name: str
    role_duration_seconds: int
    dry_run: bool
    publish: bool | None
    alias: str | None
    verify_dependencies: bool = False
    promote_from: str | None = None
    allow_untracked_source: bool = False
    rollback: bool = False
    ignore_alarms_at_start: bool = False
    function_name: str | None = None
    region: str | None = None

    @property
    def stage(self) -> str:
        """The first (for a single-stage run, the only) stage."""
        return self.stages[0]


def parse_stages(value: str) -> tuple[str, ...]:
    """The `stage` input: one stage name, or several, one per line (blank lines ignored)."""
    stages = tuple(line.strip() for line in value.splitlines() if line.strip())
    for name in stages:
        if any(character.isspace() for character in name):
            raise ActionInputError(f"input 'stage' has {name!r}: give one stage name per line")
    return stages


def get_input(name: str) -> str:
    """The input's value (trimmed), its default when not given, or "" when not given and it has no default.

    Not given: its INPUT_ variable is absent (a `uses: docker://` step) or holds action.yml's default (the
    runner fills it in). An input action.yml gives no value by default has NOT_GIVEN as its default, so an
    explicit '' (or an expression that evaluates to '') is told apart from it: given but empty is an error,
    never the stage's own value (an empty function-name would deploy the stage's production function).
    """
    raw = os.environ.get("INPUT_" + name.replace(" ", "_").upper())
    value = (INPUT_DEFAULTS[name] if raw is None else raw).strip()
    if not value:
        raise ActionInputError(
            f"input '{name}' is empty — give a value, or leave it out of the step's `with:` (an expression that "
            "evaluates to '' counts as given)"
        )
    return "" if value == NOT_GIVEN and INPUT_DEFAULTS[name] == NOT_GIVEN else value


def get_flag(name: str) -> bool | None:
    """A YAML 1.2 core-schema boolean input (true/True/TRUE/false/...); None when not given and without default."""
    value = get_input(name)
    if not value:
        return None
    if value in TRUE_VALUES or value in FALSE_VALUES:
        return value in TRUE_VALUES
    raise ActionInputError(f"input '{name}' is {value!r}: use true or false")


def parse_inputs() -> ActionInputs:
    """Read and validate every input; any problem is an ActionInputError (exit 2) before any AWS call."""
    stages = parse_stages(str(core.get_input("stage", trim_whitespace=False)) or INPUT_DEFAULTS["stage"])
    if not stages:
        raise ActionInputError("input 'stage' is required: the name of a stage in the settings file (e.g. staging)")
    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    working_directory = inside_workspace("working-directory", Path(get_input("working-directory")), workspace)
    if not working_directory.is_dir():
        raise ActionInputError(
            f"input 'working-directory' is {str(working_directory)!r}, which is not a directory in the workspace"
        )
    role = get_input("role-to-assume") or None
    if role is not None and not ROLE_ARN_PATTERN.fullmatch(role):
        raise ActionInputError(
            f"input 'role-to-assume' is {short_repr(role)}: give the role's full ARN, arn:aws:iam::ACCOUNT:role/NAME"
        )
    region = get_input("aws-region") or None
    if region is not None and not REGION_PATTERN.fullmatch(region):
        raise ActionInputError(f"input 'aws-region' is {short_repr(region)}: give an AWS region name such as us-east-1")
    promote_from = get_input("promote-from") or None
    overrides = [name for name in ("function-name", "region") if get_input(name)]
    if overrides and len(stages) > 1:
        raise ActionInputError(
            f"input '{overrides[0]}' overrides one stage's value, but input 'stage' names {len(stages)} stages"
        )
    if promote_from and len(stages) > 1:
        raise ActionInputError("input 'promote-from' promotes to one stage, but input 'stage' names several")
    audience = get_input("audience")
    if not AUDIENCE_PATTERN.fullmatch(audience):
        raise ActionInputError(
            f"input 'audience' is {short_repr(audience)}: use printable ASCII without spaces or line breaks, "
            "at most 256 characters (e.g. sts.amazonaws.com)"
        )
    settings_file = inside_workspace("settings-file", _under(working_directory, get_input("settings-file")), workspace)
    paths = {
        name: inside_workspace(name, path, workspace) if path is not None else None
        for name in ("install-path", "install-source", "requirements")
        for path in [_optional_path(working_directory, name)]
    }
    return ActionInputs(
        stages=stages,
        working_directory=working_directory,
        settings_file=settings_file,
        install_path=paths["install-path"],
        install_source=paths["install-source"],
        requirements=paths["requirements"],
        role_to_assume=role,
        aws_region=region,
        audience=audience,
        role_session_name=parse_session_name(get_input("role-session-name")),
        role_duration_seconds=parse_duration(get_input("role-duration-seconds")),
        dry_run=bool(get_flag("dry-run")),
        publish=get_flag("publish"),
        alias=get_input("alias") or None,
        verify_dependencies=bool(get_flag("verify-dependencies")),
        promote_from=promote_from,
        allow_untracked_source=bool(get_flag("allow-untracked-source")),
        rollback=bool(get_flag("rollback")),
        ignore_alarms_at_start=bool(get_flag("ignore-alarms-at-start")),
        function_name=get_input("function-name") or None,
        region=get_input("region") or None,
    )


def parse_duration(value: str) -> int:
    seconds = int(value) if value.isascii() and value.isdigit() else 0
    if not MIN_ROLE_DURATION <= seconds <= MAX_ROLE_DURATION:
        raise ActionInputError(
            f"input 'role-duration-seconds' is {short_repr(value)}: use a whole number of seconds from "
            f"{MIN_ROLE_DURATION} to {MAX_ROLE_DURATION} (the role's maximum session duration must allow it)"
        )
    return seconds


def parse_session_name(value: str) -> str:
    if not SESSION_NAME_PATTERN.fullmatch(value):
        raise ActionInputError(
            f"input 'role-session-name' is {short_repr(value)}: use 2 to 64 characters from letters, digits and +=,.@_-"
        )
    return value


def _under(directory: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else directory / path


def inside_workspace(what: str, path: Path, workspace: Path) -> Path:
    """In the Action every path must resolve (symlinks too) inside $GITHUB_WORKSPACE: a drover.yml or an
    input must not package /etc or the runner's own files. The CLI keeps absolute paths."""
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(workspace))
    if real != root and root not in real.parents:
        raise ActionInputError(
            f"{what} {short_repr(str(path))} resolves to {short_repr(str(real))}, outside the workspace {root} — "
            "in the Action every path must stay inside the workspace"
        )
    return path


def check_stage_paths(stages: Sequence[Stage], working_directory: Path, workspace: Path) -> None:
    """Every path the run's stages name (extra paths, their own requirements and install source) is in the workspace."""
    for stage in stages:
        for extra_path in stage.extra_path_sources:
            source = extra_path if extra_path.is_absolute() else working_directory / extra_path
            inside_workspace(f"function_extra_paths entry {str(extra_path)!r}:", source, workspace)
        for key, path in (("requirements", stage.requirements), ("install_source", stage.install_source)):
            if path is not None:
                inside_workspace(f"stage key {key} {str(path)!r}:", path, workspace)


def check_requirement_files(inputs: ActionInputs, stages: Sequence[Stage]) -> None:
    """Every requirements file the run reads, and each file it includes (-r, -c), is read inside the workspace
    (the reads are confined): one outside is refused before any AWS call, never opened, never echoed."""
    given = [inputs.requirements, *(stage.requirements for stage in stages)]
    for path in dict.fromkeys(path for path in given if path is not None):
        full = path if path.is_absolute() else inputs.working_directory / path
        if full.is_file():  # a missing file is the install's error, with its own message
            included_files(full)


FILE_COMMAND_FDS = (
    "DROVER_FILE_COMMAND_FDS"  # set by entrypoint.py: {path: descriptor opened before the privilege drop}
)


def open_file_command(path: str) -> TextIO:
    """A file-command file ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY) for appending: through the descriptor the
    entrypoint opened as root when there is one (the dropped user may not open the path), else by its path."""
    try:
        descriptors = json.loads(os.environ.get(FILE_COMMAND_FDS) or "{}")
    except ValueError:
        descriptors = {}
    descriptor = descriptors.get(path) if isinstance(descriptors, dict) else None
    if isinstance(descriptor, int):
        return os.fdopen(os.dup(descriptor), "a", encoding="utf-8", newline="")
    return open(path, "a", encoding="utf-8", newline="")


def check_output_files(environ: Mapping[str, str]) -> None:
    """$GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY must take our lines: found out before the deploy, not after."""
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        path = environ.get(name)
        if not path:
            continue
        try:
            with open_file_command(path):
                pass
        except OSError as error:
            raise ActionInputError(
                f"${name} ({path}) cannot be written: {error.strerror} — the runner sets it; do not override it"
            ) from None


class ReportError(DroverError):
    """The run did its work, but its outputs or summary could not be written."""

    exit_code = 1


def log_safe(text: str) -> str:
    """Plain log text where no line can start a workflow command (`::cmd::` or `##[cmd]`)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(f"> {line}" if line.lstrip().startswith(("::", "##[")) else line for line in lines)


def _optional_path(directory: Path, name: str) -> Path | None:
    value = get_input(name)
    return _under(directory, value) if value else None


def check_install_inputs(inputs: ActionInputs) -> None:
    """Something to deploy must be named: an install source, requirements, or an existing install path."""
    installing = inputs.install_source is not None or inputs.requirements is not None
    if inputs.install_path is None and not installing:
        raise ActionInputError(
            "nothing to deploy: set input 'install-source' (your project) and/or 'requirements', "
            "or 'install-path' (a directory already holding the package, e.g. from pip install --target)"
        )
    if inputs.install_path is not None and not installing and not inputs.install_path.is_dir():
        raise ActionInputError(
            f"input 'install-path' is {str(inputs.install_path)!r}, which is not a directory — build it in an "
            "earlier step, or set 'install-source'/'requirements' to have drover install into it"
        )
    for name, path in (("install-source", inputs.install_source), ("requirements", inputs.requirements)):
        if path is not None and not path.exists():
            raise ActionInputError(f"input '{name}' is {str(path)!r}, which does not exist in the workspace")


def fresh_install_path(environ: Mapping[str, str]) -> Path:
    """A new empty directory under $RUNNER_TEMP (a temporary directory outside GitHub)."""
    runner_temp = environ.get("RUNNER_TEMP")
    if runner_temp:
        Path(runner_temp).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="drover-install-", dir=runner_temp or None))


# -- retry tuning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryTuning:
    oidc: Backoff
    oidc_timeout: float
    sts: Backoff
    oidc_deadline: float = OIDC_DEADLINE_SECONDS


def retry_tuning(environ: Mapping[str, str]) -> RetryTuning:
    base = _number(environ, RETRY_BASE_VARIABLE, RETRY_BASE_SECONDS)
    return RetryTuning(
        oidc=Backoff(attempts=int(_number(environ, OIDC_ATTEMPTS_VARIABLE, OIDC_ATTEMPTS, minimum=1)), base=base),
        oidc_timeout=_number(environ, OIDC_TIMEOUT_VARIABLE, OIDC_TIMEOUT_SECONDS, minimum=0.001),
        sts=Backoff(attempts=int(_number(environ, STS_ATTEMPTS_VARIABLE, STS_ATTEMPTS, minimum=1)), base=base),
        oidc_deadline=_number(environ, OIDC_DEADLINE_VARIABLE, OIDC_DEADLINE_SECONDS, minimum=0.001),
    )


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ActionInputError(f"environment variable {name} is {text!r}: use a number of at least {minimum:g}")
    return value


# -- OIDC and STS ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IdTokenRequest:
    url: str
    token: str


def take_id_token_request(environ: MutableMapping[str, str]) -> IdTokenRequest | None:
    """Read the runner's OIDC request variables and remove the runner tokens from the environment."""
    url, token = environ.get(ID_TOKEN_URL_VARIABLE, ""), environ.get(ID_TOKEN_TOKEN_VARIABLE, "")
    for name in RUNNER_TOKEN_VARIABLES:
        environ.pop(name, None)
    return IdTokenRequest(url, token) if url and token else None


def id_token_url(request_url: str, audience: str) -> str:
    """The request URL with `audience` set, keeping its other query parameters (api-version...)."""
    parts = urllib.parse.urlsplit(request_url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(key, value) for key, value in pairs if key != "audience"]
    if audience:
        query.append(("audience", audience))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def is_transient_http_error(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in {408, 429}
    return isinstance(error, urllib.error.URLError | OSError | http.client.HTTPException)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the request's own origin: the bearer token never goes anywhere else."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            raise CredentialsError(
                f"GitHub's OIDC token endpoint redirected to another origin ({short_repr(_origin(newurl))}); "
                "drover does not send the request token there"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def fetch_id_token(
    request: IdTokenRequest,
    audience: str,
    *,
    timeout: float,
    backoff: Backoff,
    deadline: float = OIDC_DEADLINE_SECONDS,
) -> str:
    """GET the OIDC token from the runner, retrying timeouts, connection errors and 5xx with jittered backoff.

    Only http(s) URLs; redirects only to the same origin; `timeout` bounds each socket read and
    `deadline` the whole fetch (a server dripping a byte a second cannot hold the run).
    """
    url = id_token_url(request.url, audience)
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise CredentialsError(
            f"{ID_TOKEN_URL_VARIABLE} is not an http(s) URL ({short_repr(request.url[:40])}) — the runner sets it; "
            "do not override it"
        )
    http_request = urllib.request.Request(
        url,
        headers={
            "Authorization": f"bearer {request.token}",
            "Accept": "application/json; api-version=2.0",
            "User-Agent": USER_AGENT,
        },
    )
    opener = urllib.request.build_opener(_SameOriginRedirects)
    end = time.monotonic() + deadline

    def attempt() -> str:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise CredentialsError(f"could not get an OIDC token from GitHub within the {deadline:g} s deadline")
        return _within(remaining, lambda: _read_token(opener, http_request, min(timeout, remaining), end))

    def log_retry(number: int, error: BaseException, seconds: float) -> None:
        logger.info("OIDC token request failed (%s); retry %d in %.1f s", describe_http_error(error), number, seconds)

    try:
        return retry(attempt, transient=is_transient_http_error, backoff=backoff, on_retry=log_retry)
    except urllib.error.HTTPError as error:
        reason = describe_http_error(error)
        if is_transient_http_error(error):
            raise CredentialsError(
                f"could not get an OIDC token from GitHub after {backoff.attempts} attempts: {reason}"
            ) from None
        hint = " — does the job have `permissions: id-token: write`?" if error.code in {401, 403} else ""
        raise CredentialsError(f"GitHub's OIDC token endpoint refused the request: {reason}{hint}") from None
    except (OSError, http.client.HTTPException) as error:
        raise CredentialsError(
            f"could not get an OIDC token from GitHub after {backoff.attempts} attempts "
            f"(timeout {timeout:g} s each) in at most {deadline:g} s: {describe_http_error(error)}"
        ) from None


def _read_token(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float, end: float
) -> str:
    with opener.open(request, timeout=timeout) as response:
        body = bytearray()
        while len(body) <= MAX_TOKEN_RESPONSE_BYTES and (chunk := response.read1(65536)):
            body += chunk
            if time.monotonic() > end:
                raise TimeoutError("the OIDC token endpoint answered too slowly")
        return parse_token_response(bytes(body[:MAX_TOKEN_RESPONSE_BYTES]))


_R = TypeVar("_R")


def _within(seconds: float, call: Callable[[], _R]) -> _R:
    """call() on a daemon thread, given at most seconds: a stalled connect or header read cannot outlast it."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller's thread
            outcome.append((False, error))

    worker = threading.Thread(target=run, name="drover-oidc", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise TimeoutError(f"no complete answer within {seconds:.1f} s")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    result: _R = value
    return result


def parse_token_response(body: bytes) -> str:
    try:
        value = json.loads(body).get("value")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise CredentialsError("GitHub's OIDC token endpoint answered without a token (no 'value' in its JSON)")
    return value


def describe_http_error(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}".strip()
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}".rstrip(": ")


def token_claims(token: str) -> dict[str, Any]:
    """The JWT's payload, decoded without verifying the signature (only to explain a refusal)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_claims(claims: Mapping[str, Any]) -> str:
    """The non-secret claims a trust policy tests, e.g. `sub=repo:org/app:ref:refs/heads/main, aud=...`."""

    def show(value: Any) -> str:
        if value is None:
            return "(not set)"
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    return ", ".join(f"{name}={show(claims.get(name))}" for name in TOKEN_CLAIMS)


def trust_refusal_message(error: AssumeRoleError, role_arn: str, token: str) -> str:
    aws = f"{error.code}: {error.aws_message}" if error.aws_message else error.code
    return (
        f"STS refused to let this workflow assume {role_arn} ({aws}). The role's trust policy must accept a token "
        f"with these claims: {describe_claims(token_claims(token))} — compare them with the policy's "
        "token.actions.githubusercontent.com:sub and :aud conditions (and the role ARN with the one you meant)"
    )


def obtain_credentials(
    inputs: ActionInputs, request: IdTokenRequest | None, region_name: str, tuning: RetryTuning
) -> AwsCredentials:
    """OIDC token → STS AssumeRoleWithWebIdentity; every secret is masked before it could be printed."""
    assert inputs.role_to_assume is not None
    if request is None:
        raise ActionInputError(
            f"role-to-assume is set, but the job cannot request an OIDC token ({ID_TOKEN_URL_VARIABLE} and "
            f"{ID_TOKEN_TOKEN_VARIABLE} are missing) — add `permissions: id-token: write` to the job"
        )
    _toolkit(core.set_secret, request.token)
    credentials = _assume_role(inputs, request, region_name, tuning)
    expires = f", expires {credentials.expiration.isoformat(timespec='seconds')}" if credentials.expiration else ""
    logger.info(
        "Assumed %s as session %s (STS in %s%s)", inputs.role_to_assume, inputs.role_session_name, region_name, expires
    )
    # a run longer than the session (a rollout's waits) gets new credentials the same way before these expire
    return replace(credentials, refresh=lambda: _assume_role(inputs, request, region_name, tuning))


def _assume_role(
    inputs: ActionInputs, request: IdTokenRequest, region_name: str, tuning: RetryTuning
) -> AwsCredentials:
    """A new OIDC token exchanged for role credentials; every secret masked before it could be printed."""
    assert inputs.role_to_assume is not None
    token = fetch_id_token(
        request, inputs.audience, timeout=tuning.oidc_timeout, backoff=tuning.oidc, deadline=tuning.oidc_deadline
    )
    _toolkit(core.set_secret, token)
    logger.info("Got an OIDC token for audience %s (%s)", inputs.audience, describe_claims(token_claims(token)))
    try:
        credentials = assume_role_with_web_identity(
            inputs.role_to_assume,
            token,
            inputs.role_session_name,
            inputs.role_duration_seconds,
            region_name,
            attempts=tuning.sts.attempts,
        )
    except AssumeRoleError as error:
        if error.code in STS_TRUST_CODES:
            raise CredentialsError(trust_refusal_message(error, inputs.role_to_assume, token)) from error
        raise CredentialsError(f"could not assume {inputs.role_to_assume}: {error}") from error
    for secret in (credentials.access_key_id, credentials.secret_access_key, credentials.session_token):
        if secret:
            _toolkit(core.set_secret, secret)
    return credentials


# -- phases as groups ------------------------------------------------------------------------


@contextmanager
def timed_group(title: str) -> Iterator[None]:
    """A folded ::group:: block that ends with how long it took, also when it fails."""
    _toolkit(core.start_group, title)
    start = time.perf_counter()
    try:
        yield
    finally:
        _toolkit(core.info, f"{title}: {time.perf_counter() - start:.2f} s")
        _toolkit(lambda _: core.end_group(), "")


class GroupedTimings(Timings):
    """Drover's phase timings; each outermost phase is shown as a ::group:: with its time.

    GitHub cannot nest groups, so a phase inside another (archive inside compare) stays in its parent's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        outermost = self._depth == 0
        self._depth += 1
        try:
            if outermost:
                with timed_group(PHASE_TITLES.get(name, name)), super().phase(name):
                    yield
            else:
                with super().phase(name):
                    yield
        finally:
            self._depth -= 1


# -- outputs and summary ---------------------------------------------------------------------


def outputs_of(result: DeployResult) -> dict[str, str]:
    """Every output as text: booleans true/false, missing values empty."""

    def text(value: str | None) -> str:
        return value or ""

    def flag(value: bool) -> str:
        return "true" if value else "false"

    return {
        "function-arn": text(result.function_arn),
        "function-digest": text(result.function_digest),
        "requirements-digest": text(result.requirements_digest),
        "requirements-layer-arn": text(result.requirements_layer_arn),
        "code-sha256": text(result.code_sha256),
        "function-updated": flag(result.function_updated),
        "requirements-updated": flag(result.requirements_updated),
        "configuration-updated": flag(result.configuration_updated),
        "version": text(result.version),
        "version-published": flag(result.version_published),
        "changed": flag(result.changed),
        "rollout": result.rollout,
        "previous-version": text(result.previous_version),
        "result-json": json.dumps(result.model_dump(mode="json"), sort_keys=True),
    }


def format_outputs(outputs: Mapping[str, str]) -> str:
    """`name=value` lines; a heredoc with a random delimiter for result-json and any multi-line value."""
    lines = []
    for name, value in outputs.items():
        if name in HEREDOC_OUTPUTS or "\n" in value or "\r" in value:
            lines.append(prepare_key_value_message(name, value))
        else:
            lines.append(f"{name}={value}")
    return "".join(line + "\n" for line in lines)


def write_outputs(outputs: Mapping[str, str], output_file: str | None) -> None:
    text = format_outputs(outputs)
    if output_file:
        with open_file_command(output_file) as stream:
            stream.write(text)
    else:
        streams.write(sys.stdout, text)


def write_summary(result: DeployResult, summary_file: str | None) -> None:
    write_summary_text(render_summary(result), summary_file)


def write_summary_text(text: str, summary_file: str | None) -> None:
    if not summary_file:
        return
    if len(text.encode("utf-8")) > SUMMARY_LIMIT:
        text = text.encode("utf-8")[: SUMMARY_LIMIT - 200].decode("utf-8", "ignore")
        text += "\n\n(summary truncated at GitHub's 1 MiB limit; result-json has everything)\n"
    with open_file_command(summary_file) as stream:
        stream.write(text)


# -- errors and logging ----------------------------------------------------------------------


def is_debug(environ: Mapping[str, str]) -> bool:
    return environ.get("RUNNER_DEBUG") == "1" or environ.get("ACTIONS_STEP_DEBUG", "").lower() in {"true", "1"}


def annotation_file(file: str, workspace: Path) -> str:
    """A path relative to the workspace, as GitHub's file annotations want it."""
    path = Path(os.path.normpath(file))
    if path.is_absolute():
        try:
            return path.relative_to(workspace.resolve()).as_posix()
        except ValueError:
            return path.as_posix()
    return path.as_posix()


def report_error(message: str, error: BaseException, workspace: Path) -> None:
    """One `::error file=F,line=N,col=M::message` line (settings errors with a location) or `::error::message`.

    Written to stderr, like the CLI's error line: the runner reads workflow commands from both
    streams, and stdout stays for the outputs when there is no $GITHUB_OUTPUT.
    """
    properties: dict[str, object] = {}
    if isinstance(error, SettingsError) and error.file:
        properties["file"] = annotation_file(error.file, workspace)
        if error.line is not None:
            properties["line"] = error.line
        if error.column is not None:
            properties["col"] = error.column
    streams.try_write(sys.stdout, "")  # what was logged comes first
    streams.try_write(sys.stderr, f"{Command('error', properties, message)}\n")


def _toolkit(command: Callable[[str], None], text: str) -> None:
    """An actions-toolkit call (it writes to stdout); when stdout fails (closed, full, a broken pipe) the line is
    dropped: the run goes on, and its error annotation goes to stderr."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # AttributeError: sys.stdout is None
        command(text)


class WorkflowCommandHandler(logging.Handler):
    """drover's log records as workflow commands: warnings become ::warning::, debug ::debug::."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                _toolkit(core.error, message)
            elif record.levelno >= logging.WARNING:
                _toolkit(core.warning, message)
            elif record.levelno >= logging.INFO:
                _toolkit(core.info, log_safe(message))
            else:
                _toolkit(core.debug, message)
        except Exception:  # logging must never break the run (nor report on a stream that just failed)
            pass


def configure_logging(debug: bool) -> None:
    handler = WorkflowCommandHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def fail(error: BaseException, code: int, debug: bool, workspace: Path, prefix: str = "", suffix: str = "") -> int:
    if debug:
        streams.try_write(sys.stderr, "".join(traceback.format_exception(error)))
    message = shorten(prefix + one_line(error)) + suffix
    report_error(message, error, workspace)
    return code


# -- the run ---------------------------------------------------------------------------------


def prepare(inputs: ActionInputs, debug: bool, environ: Mapping[str, str] | None = None) -> Run:
    """Load the settings and set up the run: every check that needs no AWS call happens here."""
    if inputs.promote_from and (inputs.install_source or inputs.requirements):
        raise ActionInputError("input 'promote-from' copies what the source runs; it installs nothing")
    options = RunOptions(
        working_directory=inputs.working_directory,
        dry_run=inputs.dry_run,
        publish=inputs.publish,
        alias=inputs.alias,
        install_source=inputs.install_source,
        requirements=inputs.requirements,
        verbose=debug,
        function_name=inputs.function_name,
        region_name=inputs.region,
        progress=PlainProgress(progress_line),  # a CI log: plain lines, inside the phase's ::group::
        verify_dependencies=inputs.verify_dependencies,
        ignore_alarms_at_start=inputs.ignore_alarms_at_start,
    )
    request = RunRequest(
        settings_file=inputs.settings_file,
        settings_file_hint="set the settings-file input",
        stages=inputs.stages,
        install_path=inputs.install_path or Path(),  # none given: a fresh directory, once the inputs are checked
        options=options,
        promote_from=inputs.promote_from,
        allow_untracked_source=inputs.allow_untracked_source,
        rollback=inputs.rollback,
        timings=GroupedTimings,
    )
    service = Run(request)
    service.prepare()
    if (
        not inputs.promote_from
        and not inputs.rollback
        and not any(drover.stage.requirements or drover.stage.install_source for drover in service.drovers)
    ):
        check_install_inputs(inputs)  # a promotion installs and builds nothing; stages may name their own inputs
    workspace = Path((environ or {}).get("GITHUB_WORKSPACE") or Path.cwd())
    check_stage_paths(service.stages, inputs.working_directory, workspace)
    check_requirement_files(inputs, service.stages)
    service.check_paths()  # with every other input check: before the OIDC token and STS requests
    if inputs.install_path is None:
        service.request = replace(service.request, install_path=fresh_install_path(environ or {}))
    return service


def progress_line(line: str) -> None:
    _toolkit(core.info, log_safe(line))


def report(result: DeployResult | MultiResult, environ: Mapping[str, str]) -> None:
    _toolkit(core.info, log_safe(render_multi_text(result) if isinstance(result, MultiResult) else render_text(result)))
    try:
        if isinstance(result, MultiResult):
            write_outputs(multi_outputs_of(result), environ.get("GITHUB_OUTPUT"))
            write_summary_text(render_multi_summary(result), environ.get("GITHUB_STEP_SUMMARY"))
        else:
            write_outputs(outputs_of(result), environ.get("GITHUB_OUTPUT"))
            write_summary(result, environ.get("GITHUB_STEP_SUMMARY"))
    except OSError as error:
        raise ReportError(unwritten_report(result, "outputs", error)) from None


def multi_outputs_of(result: MultiResult) -> dict[str, str]:
    """Several stages: each flag (`changed`, `function-updated`, …) is whether any stage's is true, `result-json`
    the whole list; the per-function values (ARNs, digests, version) are empty."""
    outputs = dict.fromkeys(OUTPUT_NAMES, "")
    done = {action.action for entry in result.results for action in entry.actions if action.done}  # failed ones too
    for name, kind in (
        ("function-updated", "update-code"),
        ("requirements-updated", "publish-layer"),
        ("configuration-updated", "update-layers"),
        ("version-published", "publish-version"),
    ):
        outputs[name] = "true" if kind in done else "false"
    outputs["changed"] = "true" if result.totals.changed else "false"
    rollouts = {entry.rollout for entry in result.results if isinstance(entry, DeployResult)}
    outputs["rollout"] = next((state for state in ("rolled-back", "completed") if state in rollouts), "none")
    outputs["result-json"] = json.dumps(result.model_dump(mode="json"), sort_keys=True)
    return outputs


def run(environ: MutableMapping[str, str], debug: bool, service: list[Run] | None = None) -> DeployResult | MultiResult:
    """Read the inputs, prepare the run, obtain credentials, execute it, write the outputs.

    service (when given) receives the prepared run, whose progress() an interruption reports."""
    with confine_reads(Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())):
        return _run(environ, debug, service)


def _run(environ: MutableMapping[str, str], debug: bool, service: list[Run] | None) -> DeployResult | MultiResult:
    token_request = take_id_token_request(environ)
    tuning = retry_tuning(environ)
    inputs = parse_inputs()
    check_output_files(environ)
    prepared = prepare(inputs, debug, environ)
    if service is not None:
        service.append(prepared)
    stage = prepared.stages[0]
    mode = " (dry run: nothing will be changed)" if inputs.dry_run else ""
    several = f" and {len(inputs.stages) - 1} more stages" if len(inputs.stages) > 1 else ""
    promoted = f", promoted from stage {inputs.promote_from!r}" if inputs.promote_from else ""
    _toolkit(
        core.info,
        log_safe(
            f"drover {__version__}: stage {inputs.stage!r}, function {stage.function_name} in {stage.region_name}"
            f"{several}{promoted}{mode}"
        ),
    )
    if inputs.role_to_assume:
        with timed_group("AWS credentials: GitHub OIDC token → STS"):
            credentials = obtain_credentials(inputs, token_request, inputs.aws_region or stage.region_name, tuning)
        prepared.request.options.aws = AwsClients(stage.region_name, credentials=credentials)
    result = prepared.execute()
    report(result, environ)
    if isinstance(result, MultiResult) and result.exit_code:
        raise StagesFailed(result)
    return result


class StagesFailed(DroverError):
    """Some stages of a multi-stage run failed (the others were deployed); outputs and summary are written."""

    def __init__(self, result: MultiResult) -> None:
        failed = ", ".join(result.failed)
        super().__init__(
            f"{result.totals.failed} of {result.totals.stages} stages failed ({failed}); "
            f"succeeded: {', '.join(result.succeeded) or 'none'}"
        )
        self.exit_code = result.exit_code


def main() -> int:
    """The Action's entry point: exit 0 on success, 2 for input problems, 1 for failed deploys."""
    environ = os.environ
    debug = is_debug(environ)
    workspace = Path(environ.get("GITHUB_WORKSPACE") or Path.cwd())
    configure_logging(debug)
    handle_sigterm()
    started: list[Run] = []

    def progress() -> list[DeployResult | None]:
        return started[0].progress() if started else []

    try:
        run(environ, debug, started)
    except DroverError as error:
        finished = isinstance(error, (StagesFailed, ReportError))  # their message already says what was done
        note = "" if finished else failure_note(progress())
        return fail(error, error.exit_code, debug, workspace, suffix=note)
    except KeyboardInterrupt as error:  # SIGINT, or SIGTERM from `docker stop` / a cancelled run
        report_error(interruption_message(error, progress()), error, workspace)
        return exit_code(error)
    except Exception as error:  # an unexpected bug still gets one annotation, and a traceback in debug
        note = failure_note(progress())
        return fail(error, 1, debug, workspace, prefix=f"unexpected {type(error).__name__}: ", suffix=note)
    streams.try_write(sys.stdout, "")
    return 0
