"""Everything that talks to AWS: the only module importing botocore (and the only one catching its errors).

Every call goes through `AwsClients.call`, the one error boundary: it retries what a wait fixes
(an update in progress), and turns every other failure into an `AwsError` (an UpdateError carrying
AWS's error code) whose one line names the operation, AWS's message and, where there is one, the
fix. Missing credentials are a `MissingCredentials` (a PreflightError: exit 2, nothing written).
Clients are typed with the boto3 stubs, so a misspelt parameter fails `mypy --strict`.
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import botocore.exceptions
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.retries.standard import RetryContext, StandardRetryConditions
from botocore.utils import parse_timestamp

from drover.archive import ArchiveInfo
from drover.errors import DroverError, FunctionNotFound, PreflightError, UpdateError
from drover.models import LAYER_VERSION_ARN_PATTERN, Architecture, S3BucketFileVersion, S3BucketPath, Stage
from drover.progress import NO_PROGRESS, Progress, tracked

if TYPE_CHECKING:
    import boto3  # a caller may hand in a boto3 session; drover's own are botocore's (no boto3 import)
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_lambda.type_defs import (
        GetFunctionResponseTypeDef,
        LayerVersionContentInputTypeDef,
        PublishVersionRequestTypeDef,
        UpdateAliasRequestTypeDef,
        UpdateFunctionCodeRequestTypeDef,
        UpdateFunctionConfigurationRequestTypeDef,
    )
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

logger = logging.getLogger("drover")
T = TypeVar("T")

LAYER_DESCRIPTION_PREFIX = "drover requirements sha256:"
DEPENDENCY_KEY_LABEL = " dependency-key:"
_LAYER_DESCRIPTION = re.compile(
    r"^drover requirements sha256:(?P<digest>[0-9a-f]{64})(?: dependency-key:(?P<key>[0-9a-f]{64}))?$"
)


def layer_description(digest: str, dependency_key: str | None = None) -> str:
    """What a requirements layer version records: its digest, and the dependency key of the lock it was
    installed from when there was one (171 characters at most; Lambda allows 256)."""
    return LAYER_DESCRIPTION_PREFIX + digest + (DEPENDENCY_KEY_LABEL + dependency_key if dependency_key else "")


def parse_layer_description(description: str) -> tuple[str | None, str | None]:
    """(requirements digest, dependency key) a description records; either form drover ever wrote."""
    match = _LAYER_DESCRIPTION.match(description)
    return (match["digest"], match["key"]) if match else (None, None)


TAG_FUNCTION_DIGEST = "drover:function-digest"
TAG_REQUIREMENTS_DIGEST = "drover:requirements-digest"
TAG_CODE_SHA256 = "drover:code-sha256"
# The dependency key of the install whose tree has the drover:requirements-digest beside it (written together):
# an attached layer with that digest holds that key's install even when its description records another key.
TAG_DEPENDENCY_KEY = "drover:dependency-key"
CODE_SHA256_METADATA = "code-sha256"
WRITE_OPERATIONS = frozenset(
    {
        "PublishLayerVersion",
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "TagResource",
        "PublishVersion",
        "CreateAlias",
        "UpdateAlias",
        "DeleteLayerVersion",
        "PutObject",
    }
)
CONFLICT_RETRIES = 5
DOWNLOAD_ATTEMPTS = 5  # s3transfer's count for a download whose body breaks off
STREAM_ERRORS = (
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ConnectionClosedError,
)
UPDATE_TIMEOUT_SECONDS = 900.0
NO_CREDENTIALS = "no AWS credentials found — set role-to-assume (GitHub Action), AWS_PROFILE or AWS_ACCESS_KEY_ID"
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
RETRIES = 6  # botocore's max_attempts in a Config: retries after the first attempt
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": RETRIES},
    connect_timeout=10,
    read_timeout=300,
    user_agent_extra="drover-action",
)
# Lambda's control plane is rate-limited per account and region (a few requests per second for
# writes), and one run deploys many functions concurrently. In standard mode each thread backs off
# on its own and every throttled retry draws on the client's retry quota: bench/scale_bench.py
# (Lambda throttled at 10 req/s, one run each) lost 29 of 100 and all 1,000 stages that way. Adaptive mode adds
# botocore's client-side rate limiter (off until the first throttle), shared by the run's threads:
# every stage converged, in 1.12-1.15x the time the throttle allows.
LAMBDA_RETRY_CONFIG = RETRY_CONFIG.merge(Config(retries={"mode": "adaptive", "max_attempts": RETRIES}))
RETRY_MODES = ("standard", "adaptive", "legacy")


def client_config(service: str, environ: Mapping[str, str] = os.environ) -> Config:
    """The service's retry Config, except what the user chose with botocore's own AWS_RETRY_MODE and AWS_MAX_ATTEMPTS.

    botocore reads those variables only for what a client's Config leaves unset, so drover leaves
    the mode (or the attempts) out when the variable is set. AWS_MAX_ATTEMPTS counts every
    attempt, the first included.
    """
    base = LAMBDA_RETRY_CONFIG if service == "lambda" else RETRY_CONFIG
    mode, attempts = environ.get("AWS_RETRY_MODE", "").strip(), environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if mode and mode not in RETRY_MODES:
        raise PreflightError(f"AWS_RETRY_MODE={mode[:40]!r} is not one of {', '.join(RETRY_MODES)}")
    if attempts and (not attempts.isdigit() or int(attempts) < 1):
        raise PreflightError(f"AWS_MAX_ATTEMPTS={attempts[:40]!r} is not a whole number of attempts (1 or more)")
    if mode and attempts:
        return base.merge(Config(retries={}))
    if mode:
        return base.merge(Config(retries={"max_attempts": RETRIES}))
    if attempts:
        return base.merge(Config(retries={"mode": "adaptive" if service == "lambda" else "standard"}))
    return base


class AwsError(UpdateError):
    """AWS refused or failed a call. `code` is AWS's error code ("" for a connection failure)."""

    def __init__(self, message: str, code: str = "", aws_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.aws_message = aws_message


class MissingCredentials(PreflightError):
    """No credentials: a configuration problem found at the first (read) call, before any write."""

    code = "NoCredentials"


class UnknownProfile(PreflightError):
    """The AWS profile asked for is in no config file: a configuration problem, before any call."""


def unknown_profile(error: botocore.exceptions.ProfileNotFound) -> UnknownProfile:
    """The profile asked for, the files read and the profiles they hold (a fresh session reads the same files)."""
    session = botocore.session.Session()
    files = dict.fromkeys(str(session.get_config_variable(name)) for name in ("config_file", "credentials_file"))
    known = ", ".join(sorted(session.available_profiles)) or "none"
    return UnknownProfile(
        f"AWS profile {error.kwargs.get('profile', '')!r} (AWS_PROFILE) is not in {' or '.join(files)} — "
        f"profiles there: {known}; set AWS_PROFILE to one of them, or unset it"
    )


class CodeMismatchError(UpdateError):
    """Lambda runs (or published) other bytes than the archive drover built."""


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime | None = None
    # obtains new credentials (the Action: a new OIDC token, AssumeRoleWithWebIdentity) before these expire
    refresh: Callable[[], AwsCredentials] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AttachedLayer:
    arn: str
    code_size: int


@dataclass(frozen=True)
class LiveFunction:
    arn: str
    name: str
    runtime: str | None
    architecture: str
    package_type: str
    code_sha256: str
    code_size: int
    layers: tuple[AttachedLayer, ...]
    revision_id: str | None
    state: str | None
    last_update_status: str | None
    last_update_reason: str | None
    tags: dict[str, str]

    @property
    def layer_arns(self) -> list[str]:
        return [layer.arn for layer in self.layers]


@dataclass(frozen=True)
class LayerVersion:
    arn: str
    version: int
    description: str
    code_size: int | None = None
    architectures: tuple[str, ...] = ("x86_64",)
    code_sha256: str | None = None
    location: str | None = None

    @property
    def claimed_digest(self) -> str | None:
        """The requirements digest the description claims: text anyone who can publish to the name can write, so
        a lookup by it, never a decision (tests/test_trust.py lists every reader and the check it pairs with)."""
        return parse_layer_description(self.description)[0]

    @property
    def claimed_dependency_key(self) -> str | None:
        """The dependency key the description claims (see claimed_digest)."""
        return parse_layer_description(self.description)[1]


@dataclass(frozen=True)
class LayerFind:
    """A layer lookup: the version holding the content (None: publish one), and the versions whose description
    claimed that content but whose Content.CodeSha256 is another (never used; reported)."""

    found: LayerVersion | None
    forged: tuple[LayerVersion, ...]


@dataclass(frozen=True)
class Invocation:
    status: int
    function_error: str | None
    payload: str


@dataclass(frozen=True)
class Alias:
    arn: str
    version: str
    extra_weights: dict[str, float]
    revision_id: str | None


@dataclass(frozen=True)
class CodeLocation:
    """Where Lambda reads an archive from: inline bytes or an S3 object."""

    archive: ArchiveInfo
    s3: S3BucketFileVersion | None = None

    def describe(self) -> str:
        if self.s3 is None:
            return f"{self.archive.path.name} (direct upload)"
        version = f" (version {self.s3.version_id})" if self.s3.version_id else ""
        return f"s3://{self.s3.bucket_name}/{self.s3.key}{version}"

    def layer_content(self) -> LayerVersionContentInputTypeDef:
        if self.s3 is None:
            return {"ZipFile": self.archive.path.read_bytes()}
        content: LayerVersionContentInputTypeDef = {"S3Bucket": self.s3.bucket_name, "S3Key": self.s3.key}
        if self.s3.version_id:
            content["S3ObjectVersion"] = self.s3.version_id
        return content

    def function_code(self, name: str, revision_id: str | None) -> UpdateFunctionCodeRequestTypeDef:
        request: UpdateFunctionCodeRequestTypeDef = {"FunctionName": name}
        if self.s3 is None:
            request["ZipFile"] = self.archive.path.read_bytes()
        else:
            request["S3Bucket"], request["S3Key"] = self.s3.bucket_name, self.s3.key
            if self.s3.version_id:
                request["S3ObjectVersion"] = self.s3.version_id
        if revision_id:
            request["RevisionId"] = revision_id
        return request


@dataclass
class AwsClients:
    """One session per run and its typed clients for one region, with botocore's retries (client_config).

    Given a boto3 session (tests hook its events), its clients are used. Otherwise drover makes a
    botocore session: a boto3 client is a botocore client, and importing boto3 (which imports
    s3transfer, unused here) cost ~70 ms of every run.
    """

    region_name: str
    credentials: AwsCredentials | None = None
    session: boto3.Session | None = None
    sleep: Callable[[float], None] = time.sleep
    core: botocore.session.Session | None = field(default=None, repr=False)  # shared by every region's clients

    def __post_init__(self) -> None:
        if self.session is None and self.core is None:  # explicit credentials, or the SDK's default chain
            self.core = botocore.session.Session()
            keys = self.credentials
            if keys and keys.refresh is not None and keys.expiration is not None:
                _use_refreshable(self.core, keys)
            elif keys:
                self.core.set_credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)

    def for_region(self, region_name: str) -> AwsClients:
        """Clients for another region from the same session (credentials resolved once)."""
        return AwsClients(region_name, self.credentials, self.session, self.sleep, self.core)

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._client("lambda")  # type: ignore[no-any-return]

    @cached_property
    def s3(self) -> S3Client:
        return self._client("s3")  # type: ignore[no-any-return]

    @cached_property
    def cloudwatch(self) -> CloudWatchClient:
        return self._client("cloudwatch")  # type: ignore[no-any-return]

    def _client(self, service: str) -> Any:
        return aws_call(f"creating the {service} client", lambda: self._create_client(service), service=service)

    def _create_client(self, service: str) -> Any:
        config = client_config(service)
        if self.session is not None:
            return self.session.client(service, region_name=self.region_name, config=config)  # type: ignore[call-overload]
        assert self.core is not None
        return self.core.create_client(service, region_name=self.region_name, config=config)

    def call(
        self,
        operation: str,
        request: Callable[[], T],
        *,
        service: str = "lambda",
        on_conflict: Callable[[], object] | None = None,
    ) -> T:
        """Make one AWS call; an update in progress (ResourceConflictException) is waited out, then retried."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return aws_call(operation, request, service=service)
            except AwsError as error:
                if error.code != "ResourceConflictException" or on_conflict is None or attempt == CONFLICT_RETRIES:
                    raise
                logger.info("Lambda is busy with another update (%s); waiting, then retrying", error.aws_message)
                self.sleep(min(2.0**attempt, 10.0))
                on_conflict()
        raise AssertionError("unreachable")  # pragma: no cover


REFRESH_BEFORE_EXPIRY = 300  # seconds: credentials this close to expiring are refreshed before the next call
REFRESH_REQUIRED = 60  # seconds: closer than this, a call waits for the refresh


def credential_clock() -> datetime:
    """Now, as botocore's refreshable credentials compare it with the expiry (tests move it)."""
    return datetime.now(UTC)


def _credential_metadata(keys: AwsCredentials) -> dict[str, str]:
    assert keys.expiration is not None
    return {
        "access_key": keys.access_key_id,
        "secret_key": keys.secret_access_key,
        "token": keys.session_token or "",
        "expiry_time": keys.expiration.isoformat(),
    }


class _GivenCredentials(CredentialProvider):
    """The run's own credentials, first in the session's chain (botocore's extension point)."""

    METHOD = "drover-given"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


def _use_refreshable(core: botocore.session.Session, keys: AwsCredentials) -> None:
    """Credentials that botocore refreshes through keys.refresh before they expire: a rollout (or any run)
    longer than the role's session goes on with new credentials instead of failing half-way."""
    refresh = keys.refresh
    assert refresh is not None

    def renewed() -> dict[str, str]:
        logger.info("Refreshing the AWS credentials before they expire")
        return _credential_metadata(refresh())

    credentials = RefreshableCredentials(
        keys.access_key_id,
        keys.secret_access_key,
        keys.session_token or "",
        parse_timestamp(_credential_metadata(keys)["expiry_time"]),  # timezone-aware, as botocore compares it
        renewed,
        "assume-role-with-web-identity",
        time_fetcher=lambda: credential_clock(),
        advisory_timeout=REFRESH_BEFORE_EXPIRY,
        mandatory_timeout=REFRESH_REQUIRED,
    )
    resolver = core.get_component("credential_provider")
    resolver.insert_before("env", _GivenCredentials(credentials))


def aws_call(
    operation: str, request: Callable[[], T], *, service: str = "lambda", error: type[AwsError] = AwsError
) -> T:
    """The single place botocore's exceptions become drover's errors (AwsError, carrying AWS's code)."""
    try:
        return request()
    except botocore.exceptions.ClientError as failure:
        raise error(describe_client_error(service, failure), error_code(failure), error_message(failure)) from failure
    except botocore.exceptions.NoCredentialsError:
        raise MissingCredentials(NO_CREDENTIALS) from None
    except botocore.exceptions.BotoCoreError as failure:
        if isinstance(failure, botocore.exceptions.ProfileNotFound):
            raise unknown_profile(failure) from None
        raise error(f"{_operation_name(failure, operation)} failed: {failure}") from failure


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def error_message(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def describe_client_error(service: str, error: botocore.exceptions.ClientError) -> str:
    operation = error.operation_name
    code, message = error_code(error), error_message(error)
    text = f"{operation} failed: {code}: {message}" if message else f"{operation} failed: {code}"
    hint = _HINTS.get(code)
    if code in {"AccessDenied", "AccessDeniedException"}:
        hint = f"allow {service.replace('-', '')}:{operation} for the deploy role (see SECURITY.md)"
    return f"{text} — {hint}" if hint else text


_HINTS = {
    "PreconditionFailedException": "the function changed while drover was deploying (another deploy?); rerun drover",
    "ResourceConflictException": "another update is still in progress; rerun drover when it has finished",
    "TooManyRequestsException": "Lambda throttled the request after retries; rerun later",
    "ThrottlingException": "AWS throttled the request after retries; rerun later",
    "CodeStorageExceededException": "the account's code storage is full; prune old layer versions (keep_layer_versions)",
    "ExpiredTokenException": "the AWS credentials expired; raise role-duration-seconds or rerun",
    "UnrecognizedClientException": "the AWS credentials are invalid",
}


def _operation_name(error: botocore.exceptions.BotoCoreError, fallback: str) -> str:
    return _api_name(str(getattr(error, "operation_name", None) or fallback))


def _api_name(name: str) -> str:
    """update_function_code -> UpdateFunctionCode (names already in that form are kept)."""
    return "".join(part.capitalize() for part in name.split("_")) if "_" in name else name


class LambdaTarget:
    """The live function of a stage and the operations drover performs on it."""

    def __init__(
        self,
        stage: Stage,
        clients: AwsClients,
        *,
        update_timeout: float = UPDATE_TIMEOUT_SECONDS,
        progress: Progress = NO_PROGRESS,
    ) -> None:
        self.stage = stage
        self.clients = clients
        self.update_timeout = update_timeout
        self.progress = progress
        self._attached_layers: dict[str, LayerVersion | None] = {}  # layer versions never change once published

    @property
    def _lambda(self) -> LambdaClient:
        return self.clients.lambda_

    def _get_function(self) -> LiveFunction:
        response = self.clients.call(
            "GetFunction", lambda: self._lambda.get_function(FunctionName=self.stage.function_name)
        )
        return parse_live_function(response)

    # -- reads ---------------------------------------------------------------------------------

    def read_function(self) -> LiveFunction:
        try:
            return self._get_function()
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                closest = self.closest_function_names()
                raise FunctionNotFound(self.stage.function_name, self.stage.region_name, closest) from None
            raise

    def closest_function_names(self) -> list[str]:
        """Names of the region's functions close to the stage's: one ListFunctions page (only for that error)."""
        try:
            page = self.clients.call("ListFunctions", lambda: self._lambda.list_functions())
        except DroverError:  # no permission to list: the error goes without suggestions
            return []
        names = [function["FunctionName"] for function in page.get("Functions", [])]
        return difflib.get_close_matches(self.stage.function_identity[2], names, n=3, cutoff=0.6)

    def wait_until_updated(self, operation: str | None = None) -> LiveFunction:
        """Poll until LastUpdateStatus is no longer InProgress; Failed is an UpdateError quoting Lambda.

        operation names drover's call that started the update, for the error message.
        """
        deadline = time.monotonic() + self.update_timeout
        delay = 1.0
        while True:
            live = self._get_function()
            if live.last_update_status == "Failed":
                accepted = f"{operation} was accepted, but " if operation else ""
                raise UpdateError(
                    f"{accepted}Lambda reports the update of {live.name} failed: "
                    f"{live.last_update_reason or 'no reason given'}"
                )
            if live.last_update_status != "InProgress" and live.state != "Pending":
                return live
            if time.monotonic() > deadline:
                raise UpdateError(
                    f"{live.name} was still updating after {self.update_timeout:.0f} s; rerun drover later"
                )
            self.clients.sleep(delay)
            delay = min(delay * 1.5, 10.0)

    def find_layer_version(
        self,
        digest: str,
        architecture: str,
        attached: Sequence[str],
        content: Callable[[], str],
        *,
        trust_attached: bool = True,
    ) -> LayerFind:
        """The version of the requirements layer that holds exactly this content, decided on what Lambda computed.

        The attached version whose description records the digest is what the function runs: it is kept as it is
        (trust_attached). Any other version counts only when Lambda's Content.CodeSha256 equals content() (the
        SHA-256 of the archive drover would publish, built only when a candidate exists): a description is text
        anyone who can publish to the layer name can write. Candidates whose description names the digest but
        whose content differs are returned as forged, for a warning; the lowest content-equal version wins, so
        concurrent publishers of one archive all converge on it (see converge_layer)."""
        attached_version = self.attached_requirements_layer(attached)
        if trust_attached and attached_version and attached_version.claimed_digest == digest:
            return LayerFind(attached_version, ())
        recorded = sorted(
            (
                listed
                for listed in self.list_layer_versions()
                if listed.claimed_digest == digest and architecture in listed.architectures
            ),
            key=lambda listed: listed.version,
        )
        forged: list[LayerVersion] = []
        for candidate in recorded:
            read = self._get_layer_version(self.stage.layer_name, candidate.version)
            if read is None:
                continue
            if read.code_sha256 == content():
                return LayerFind(read, tuple(forged))
            forged.append(read)
        return LayerFind(None, tuple(forged))

    def attached_requirements_layer(self, attached: Sequence[str]) -> LayerVersion | None:
        """The version of the stage's requirements layer among the attached ARNs (read once per run)."""
        for arn in attached:
            match = LAYER_VERSION_ARN_PATTERN.match(arn)
            if match and match["name"] == self.stage.layer_name:
                if arn not in self._attached_layers:
                    self._attached_layers[arn] = self._get_layer_version(self.stage.layer_name, int(match["version"]))
                return self._attached_layers[arn]
        return None

    def list_layer_versions(self) -> list[LayerVersion]:
        def request() -> list[LayerVersion]:
            paginator = self._lambda.get_paginator("list_layer_versions")
            return [
                LayerVersion(
                    item["LayerVersionArn"],
                    int(item["Version"]),
                    item.get("Description", ""),
                    architectures=tuple(item.get("CompatibleArchitectures") or ("x86_64",)),
                )
                for page in paginator.paginate(LayerName=self.stage.layer_name)
                for item in page.get("LayerVersions", [])
            ]

        try:
            return self.clients.call("ListLayerVersions", request)
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                return []
            raise

    def layers_attached_elsewhere(self, function_arn: str) -> set[str]:
        """Every layer version ARN attached to a function of the region other than this one (paginated)."""
        return self.attached_layer_arns(excluding=function_arn)

    def attached_layer_arns(self, excluding: str = "") -> set[str]:
        """Every layer version ARN attached to a function of the region (but `excluding`), read now, paginated."""

        def request() -> set[str]:
            paginator = self._lambda.get_paginator("list_functions")
            return {
                layer["Arn"]
                for page in paginator.paginate()
                for function in page.get("Functions", [])
                if not excluding or unqualified_arn(function.get("FunctionArn", "")) != unqualified_arn(excluding)
                for layer in function.get("Layers", [])
            }

        return self.clients.call("ListFunctions", request)

    def supplemental_layer_size(self, arn: str) -> int:
        """The layer version's code size; a layer that is missing (or not shared with us) is a PreflightError."""
        if LAYER_VERSION_ARN_PATTERN.match(arn) is None:
            return 0
        layer = self.read_layer_version(arn)
        if layer is None:
            raise PreflightError(
                f"supplemental_layer_arns: {arn} does not exist in {self.stage.region_name} (or is not shared with "
                "this account) — fix the ARN in drover.yml, or publish that layer version first"
            )
        return layer.code_size or 0

    def bucket_exists(self, bucket: S3BucketPath) -> bool:
        """True when the bucket exists in the function's region; another region is a PreflightError."""
        try:
            response = self.clients.call(
                "GetBucketLocation",
                lambda: self.clients.s3.get_bucket_location(Bucket=bucket.bucket_name),
                service="s3",
            )
        except AwsError as error:
            if error.code == "NoSuchBucket":
                return False
            raise
        region = str(response.get("LocationConstraint") or "us-east-1")
        region = "eu-west-1" if region == "EU" else region
        if region != self.stage.region_name:
            raise PreflightError(
                f"upload_bucket {bucket.bucket_name} is in {region}, but the function is in "
                f"{self.stage.region_name}; Lambda only reads code from a bucket in its own region — use another bucket"
            )
        return True

    def _get_layer_version(self, layer: str, version: int) -> LayerVersion | None:
        try:
            response = self.clients.call(
                "GetLayerVersion", lambda: self._lambda.get_layer_version(LayerName=layer, VersionNumber=version)
            )
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                return None
            raise
        content = response.get("Content", {})
        return LayerVersion(
            response["LayerVersionArn"],
            int(response["Version"]),
            response.get("Description", ""),
            content.get("CodeSize"),
            tuple(response.get("CompatibleArchitectures") or ("x86_64",)),
            content.get("CodeSha256"),
            content.get("Location"),
        )

    def read_layer_version(self, arn: str) -> LayerVersion | None:
        """A layer version by its ARN (any layer name), or None when it does not exist."""
        match = LAYER_VERSION_ARN_PATTERN.match(arn)
        if match is None:
            return None
        return self._get_layer_version(arn.rsplit(":", 1)[0], int(match["version"]))

    def code_location(self) -> str | None:
        """Where Lambda keeps the function's code: GetFunction's Code.Location (a pre-signed URL)."""
        response = self.clients.call(
            "GetFunction", lambda: self._lambda.get_function(FunctionName=self.stage.function_name)
        )
        location = response.get("Code", {}).get("Location")
        return str(location) if location else None

    def verified_object(self, key: str, code_sha256: str) -> S3BucketFileVersion | None:
        """The object at key in the stage's bucket when S3's verified SHA-256 of it is code_sha256."""
        bucket = self.stage.upload_bucket
        if bucket is None:
            return None
        try:
            head = self.clients.call(
                "HeadObject",
                lambda: self.clients.s3.head_object(Bucket=bucket.bucket_name, Key=key, ChecksumMode="ENABLED"),
                service="s3",
            )
        except AwsError as error:
            if error.code in NOT_FOUND_CODES | {"403", "NoSuchBucket"}:
                return None
            raise
        if head.get("ChecksumSHA256") != code_sha256:
            return None
        return S3BucketFileVersion(bucket_name=bucket.bucket_name, key=key, version_id=head.get("VersionId"))

    def download_object(self, s3_object: S3BucketFileVersion, path: Path) -> None:
        """GetObject streamed to path. A plain botocore client has no download_file (boto3 adds it through
        s3transfer); like it, a body that breaks off mid-stream is fetched again, up to DOWNLOAD_ATTEMPTS."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                self.clients.call("GetObject", lambda: self._download(s3_object, path), service="s3")
                return
            except AwsError as error:
                streaming = isinstance(error.__cause__, STREAM_ERRORS)
                if not streaming or attempt == DOWNLOAD_ATTEMPTS:
                    raise
                logger.info("Download of s3://%s/%s broke off (%s); again", s3_object.bucket_name, s3_object.key, error)

    def _download(self, s3_object: S3BucketFileVersion, path: Path) -> None:
        if s3_object.version_id:
            response = self.clients.s3.get_object(
                Bucket=s3_object.bucket_name, Key=s3_object.key, VersionId=s3_object.version_id
            )
        else:
            response = self.clients.s3.get_object(Bucket=s3_object.bucket_name, Key=s3_object.key)
        with path.open("wb") as out:
            for chunk in response["Body"].iter_chunks(1 << 20):
                out.write(chunk)

    def converge_layer(self, digest: str, architecture: str, published: LayerVersion) -> tuple[LayerVersion, bool]:
        """After publishing: the lowest version with the same content wins, so concurrent publishers agree.

        A lower version counts only when Lambda's Content.CodeSha256 of it is the one just published (its
        description is not enough). When one does, the version just published is deleted unless a function
        already uses it (then it stays: deleting it would break that function). Returns the version to attach
        and whether the one just published was deleted.
        """
        lower = [
            version
            for version in self.list_layer_versions()
            if version.claimed_digest == digest
            and architecture in version.architectures
            and version.version < published.version
        ]
        lowest = None
        for candidate in sorted(lower, key=lambda version: version.version):
            read = self._get_layer_version(self.stage.layer_name, candidate.version)
            if read is not None and published.code_sha256 and read.code_sha256 == published.code_sha256:
                lowest = read
                break
        if lowest is None:
            return published, False
        if published.arn in self.attached_layer_arns():
            logger.info("Layer version %s is already in use; keeping it", published.arn)
            return lowest, False
        logger.info(
            "Another run published %s with the same content first; adopting it and deleting %s",
            lowest.arn,
            published.arn,
        )
        self.delete_layer_version(published.version)
        return lowest, True

    def find_published_version(self, code_sha256: str, layer_arns: Sequence[str]) -> str | None:
        """The newest published version with this code and these layers, so it is not published again."""

        def request() -> str | None:
            paginator = self._lambda.get_paginator("list_versions_by_function")
            newest: int | None = None
            for page in paginator.paginate(FunctionName=self.stage.function_name):
                for item in page.get("Versions", []):
                    version = item.get("Version", "$LATEST")
                    if version == "$LATEST" or item.get("CodeSha256") != code_sha256:
                        continue
                    if [layer["Arn"] for layer in item.get("Layers", [])] != list(layer_arns):
                        continue
                    newest = max(newest or 0, int(version))
            return str(newest) if newest is not None else None

        return self.clients.call("ListVersionsByFunction", request)

    def read_alias(self, alias: str) -> Alias | None:
        try:
            current = self.clients.call(
                "GetAlias", lambda: self._lambda.get_alias(FunctionName=self.stage.function_name, Name=alias)
            )
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                return None
            raise
        weights = dict(current.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {})
        return Alias(current["AliasArn"], current["FunctionVersion"], weights, current.get("RevisionId"))

    # -- writes --------------------------------------------------------------------------------

    def content_key(self, digest: str) -> str:
        bucket = self.stage.upload_bucket
        assert bucket is not None
        return "/".join(part for part in (bucket.prefix, f"{digest}.zip") if part)

    def upload_to_s3(self, archive: ArchiveInfo, digest: str) -> tuple[S3BucketFileVersion, bool, str | None]:
        """Put the archive at its content-addressed key unless S3's SHA-256 of the object there is the archive's.

        Returns the object, whether it was uploaded now, and a warning when an object with other
        bytes had to be replaced. S3 verifies the SHA-256 drover sends with the upload.
        """
        bucket = self.stage.upload_bucket
        assert bucket is not None
        key = self.content_key(digest)
        s3 = self.clients.s3
        warning = None
        try:
            head = self.clients.call(
                "HeadObject",
                lambda: s3.head_object(Bucket=bucket.bucket_name, Key=key, ChecksumMode="ENABLED"),
                service="s3",
            )
        except AwsError as error:
            if error.code not in NOT_FOUND_CODES | {"403"}:
                raise
        else:
            stored = head.get("ChecksumSHA256")
            where = S3BucketFileVersion(bucket_name=bucket.bucket_name, key=key, version_id=head.get("VersionId"))
            if stored == archive.code_sha256:
                logger.info(
                    "Archive already in s3://%s/%s (SHA-256 checked); not uploading it again", where.bucket_name, key
                )
                return where, False, None
            if stored is None:
                warning = (
                    f"s3://{bucket.bucket_name}/{key} has no SHA-256 checksum S3 verified (it was put without one), "
                    f"so its bytes cannot be trusted to be {archive.path.name}'s; uploading it again"
                )
            else:
                warning = (
                    f"s3://{bucket.bucket_name}/{key} holds other bytes than {archive.path.name} (S3's SHA-256 "
                    f"{stored}, the archive's {archive.code_sha256}); uploading it again"
                )
            logger.warning(warning)

        def put() -> Any:
            with (
                tracked(self.progress, f"Uploading {archive.path.name}", archive.size),
                _sent_bytes(s3, archive, self.progress) as body,
            ):
                return s3.put_object(
                    Bucket=bucket.bucket_name,
                    Key=key,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=archive.code_sha256,
                    Metadata={CODE_SHA256_METADATA: archive.code_sha256},
                )

        response = self.clients.call("PutObject", put, service="s3")
        uploaded = S3BucketFileVersion(bucket_name=bucket.bucket_name, key=key, version_id=response.get("VersionId"))
        return uploaded, True, warning

    def publish_layer(
        self, location: CodeLocation, digest: str, architecture: Architecture, dependency_key: str | None = None
    ) -> LayerVersion:
        with self._direct_upload(location):
            response = self._publish_layer(location, digest, architecture, dependency_key)
        content = response.get("Content", {})
        layer = LayerVersion(
            response["LayerVersionArn"],
            int(response["Version"]),
            response.get("Description", ""),
            content.get("CodeSize"),
            (architecture,),
            content.get("CodeSha256"),
        )
        _verify("PublishLayerVersion", layer.arn, content.get("CodeSha256", ""), location)
        return layer

    def _publish_layer(
        self, location: CodeLocation, digest: str, architecture: Architecture, dependency_key: str | None
    ) -> Any:
        return self.clients.call(
            "PublishLayerVersion",
            lambda: self._lambda.publish_layer_version(
                LayerName=self.stage.layer_name,
                Description=layer_description(digest, dependency_key),
                Content=location.layer_content(),
                CompatibleRuntimes=[self.stage.compatible_runtime],  # type: ignore[list-item]  # a checked python3.N
                CompatibleArchitectures=[architecture],
            ),
        )

    @contextmanager
    def _direct_upload(self, location: CodeLocation) -> Iterator[None]:
        """A direct upload (the zip inside the request) as a task; see _count_direct_body."""
        if location.s3 is not None:
            yield
            return
        archive = location.archive
        self._lambda.meta.events.register_last(
            "request-created.lambda", _count_direct_body, unique_id="drover-direct-upload"
        )
        with tracked(self.progress, f"Uploading {archive.path.name}", archive.size):
            upload = _DIRECT_UPLOAD.set(_DirectUpload(archive.size, self.progress))
            try:
                yield
            finally:
                _DIRECT_UPLOAD.reset(upload)

    def update_code(self, location: CodeLocation, live: LiveFunction) -> LiveFunction:
        sha256 = location.archive.code_sha256
        request = location.function_code(self.stage.function_name, live.revision_id)
        answered: list[str] = []

        def call() -> object:
            with self._direct_upload(location):
                response = self._lambda.update_function_code(**request)
            answered.append(response.get("CodeSha256", ""))
            return response

        updated = self._update("UpdateFunctionCode", call, lambda now: now.code_sha256 == sha256)
        for reported in (*answered, updated.code_sha256):
            _verify("UpdateFunctionCode", updated.name, reported, location)
        return updated

    def update_layers(self, layer_arns: Sequence[str], live: LiveFunction) -> LiveFunction:
        wanted = list(layer_arns)
        request: UpdateFunctionConfigurationRequestTypeDef = {
            "FunctionName": self.stage.function_name,
            "Layers": wanted,
        }
        if live.revision_id:
            request["RevisionId"] = live.revision_id
        return self._update(
            "UpdateFunctionConfiguration",
            lambda: self._lambda.update_function_configuration(**request),
            lambda now: now.layer_arns == wanted,
        )

    def _update(
        self, operation: str, request: Callable[[], object], applied: Callable[[LiveFunction], bool]
    ) -> LiveFunction:
        """Call an update and wait for it to finish.

        A PreconditionFailedException (stale RevisionId) while the function already has this very
        change is botocore retrying a request whose first attempt was applied but whose answer was
        lost (a read timeout, a reset connection): the update is done, not a conflict.
        """
        try:
            self.clients.call(operation, request, on_conflict=self.wait_until_updated)
        except AwsError as error:
            if error.code != "PreconditionFailedException":
                raise
            live = self.wait_until_updated(operation)
            if not applied(live):
                raise
            logger.info("%s had already been applied (its answer was lost, so botocore retried it)", operation)
            return live
        return self.wait_until_updated(operation)

    def tag_function(self, live: LiveFunction, tags: dict[str, str]) -> None:
        self.clients.call(
            "TagResource", lambda: self._lambda.tag_resource(Resource=unqualified_arn(live.arn), Tags=tags)
        )

    def publish_version(self, live: LiveFunction) -> str:
        request: PublishVersionRequestTypeDef = {
            "FunctionName": self.stage.function_name,
            "CodeSha256": live.code_sha256,
        }
        if live.revision_id:
            request["RevisionId"] = live.revision_id
        response = self.clients.call(
            "PublishVersion", lambda: self._lambda.publish_version(**request), on_conflict=self.wait_until_updated
        )
        return str(response["Version"])

    def point_alias(self, alias: str, version: str, current: Alias | None) -> str:
        """Point the alias at version with no other weights (all of its traffic); returns the alias ARN."""
        name = self.stage.function_name
        if current is None:
            created = self.clients.call(
                "CreateAlias", lambda: self._lambda.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
            )
            return str(created["AliasArn"])
        request: UpdateAliasRequestTypeDef = {
            "FunctionName": name,
            "Name": alias,
            "FunctionVersion": version,
            "RoutingConfig": {"AdditionalVersionWeights": {}},
        }
        if current.revision_id:
            request["RevisionId"] = current.revision_id
        updated = self.clients.call("UpdateAlias", lambda: self._lambda.update_alias(**request))
        return str(updated["AliasArn"])

    def shift_alias(self, alias: str, stable: str, new: str, percent: int, current: Alias) -> Alias:
        """The alias serves `stable` with `percent` % of its traffic on `new` (RoutingConfig weights)."""
        request: UpdateAliasRequestTypeDef = {
            "FunctionName": self.stage.function_name,
            "Name": alias,
            "FunctionVersion": stable,
            "RoutingConfig": {"AdditionalVersionWeights": {new: round(percent / 100, 2)}},
        }
        if current.revision_id:
            request["RevisionId"] = current.revision_id
        updated = self.clients.call("UpdateAlias", lambda: self._lambda.update_alias(**request))
        weights = dict(updated.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {})
        return Alias(updated["AliasArn"], updated["FunctionVersion"], weights, updated.get("RevisionId"))

    def invoke(self, version: str, payload: str) -> Invocation:
        """Invoke one version (never the alias) with a JSON payload and wait for its answer."""
        response = self.clients.call(
            "Invoke",
            lambda: self._lambda.invoke(
                FunctionName=self.stage.function_name, Qualifier=version, Payload=payload.encode()
            ),
        )
        body = response["Payload"].read().decode("utf-8", errors="replace")
        return Invocation(int(response.get("StatusCode", 0)), response.get("FunctionError"), body)

    def alarm_states(self, names: Sequence[str]) -> dict[str, str]:
        """The state (OK, ALARM, INSUFFICIENT_DATA) of each named CloudWatch alarm that exists."""
        if not names:
            return {}
        cloudwatch = self.clients.cloudwatch

        def request() -> dict[str, str]:
            states: dict[str, str] = {}
            for page in cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
            ):
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    states[str(alarm["AlarmName"])] = str(alarm["StateValue"])
            return states

        return self.clients.call("DescribeAlarms", request, service="cloudwatch")

    def delete_layer_version(self, version: int) -> None:
        self.clients.call(
            "DeleteLayerVersion",
            lambda: self._lambda.delete_layer_version(LayerName=self.stage.layer_name, VersionNumber=version),
        )


class _SentBytes(io.BufferedReader):
    """An archive as an S3 upload body that reports the bytes botocore sends to the progress.

    botocore may read the body before sending it (to sign it, over plain HTTP) and reads it again
    after a retry's rewind: as in s3transfer, only reads after the request is signed count
    (`sending`, set by the request-created hooks), and only past the furthest byte already reported.
    """

    def __init__(self, archive: ArchiveInfo, progress: Progress) -> None:
        super().__init__(io.FileIO(archive.path, "rb"))
        self.progress = progress
        self.sending = False
        self.reported = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if self.sending and (position := self.tell()) > self.reported:
            self.progress.advance(position - self.reported)
            self.reported = position
        return data


def _signing(request: Any, **_: Any) -> None:
    if isinstance(getattr(request, "body", None), _SentBytes):
        request.body.sending = False


def _sending(request: Any, **_: Any) -> None:
    if isinstance(getattr(request, "body", None), _SentBytes):
        request.body.sending = True


@contextmanager
def _sent_bytes(s3: S3Client, archive: ArchiveInfo, progress: Progress) -> Iterator[_SentBytes]:
    """The archive as a body counting what is sent; the hooks bracket botocore's signing of each attempt.

    They go on request-created.s3, the signer's own event: botocore runs a more specific event's
    handlers (request-created.s3.PutObject) before them, whatever their first/last order.
    """
    event = "request-created.s3"
    s3.meta.events.register_first(event, _signing, unique_id="drover-upload-signing")
    s3.meta.events.register_last(event, _sending, unique_id="drover-upload-sending")
    with _SentBytes(archive, progress) as body:
        yield body


@dataclass
class _DirectUpload:
    """A zip sent inside a Lambda request: the request's bytes sent, reported as the archive's bytes."""

    archive_size: int
    progress: Progress
    reported: int = 0

    def sent(self, position: int, length: int) -> None:
        done = self.archive_size * position // length
        if done > self.reported:
            self.progress.advance(done - self.reported)
            self.reported = done


_DIRECT_UPLOAD: ContextVar[_DirectUpload | None] = ContextVar("drover_direct_upload", default=None)
DIRECT_UPLOAD_OPERATIONS = frozenset({"PublishLayerVersion", "UpdateFunctionCode"})


class _SentRequest(io.BytesIO):
    """A signed request body (JSON with the zip in base64) that reports how much of it is sent."""

    def __init__(self, body: bytes, upload: _DirectUpload) -> None:
        super().__init__(body)
        self.upload = upload
        self.length = len(body)

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.upload.sent(self.tell(), self.length)
        return data


def _count_direct_body(request: Any, operation_name: str = "", **_: Any) -> None:
    """After the signer (last on its own event), give a direct upload's request a body that counts what is sent.

    The bytes are the ones signed; each retry builds its request anew, and the upload reports only
    past the furthest point reached.
    """
    upload = _DIRECT_UPLOAD.get()
    if upload is not None and operation_name in DIRECT_UPLOAD_OPERATIONS and isinstance(request.data, bytes):
        request.data = _SentRequest(request.data, upload)


DOWNLOAD_TIMEOUT_SECONDS = 300


def download_url(url: str, path: Path) -> None:
    """Fetch a pre-signed URL Lambda gave (a code or layer content location) into path."""
    import shutil
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as error:
        shown = url.split("?", 1)[0]  # the query of a pre-signed URL carries credentials
        raise UpdateError(f"downloading {shown} failed: {error}; nothing was changed — rerun drover") from None


def archive_of(path: Path) -> ArchiveInfo:
    """An archive drover did not build (a downloaded copy), with its Lambda-style CodeSha256."""
    import base64
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return ArchiveInfo(path, path.stat().st_size, base64.b64encode(digest.digest()).decode(), 0)


def _verify(operation: str, target: str, reported: str, location: CodeLocation) -> None:
    """Lambda's CodeSha256 must be the archive's: anything else is other bytes than drover built."""
    expected = location.archive.code_sha256
    if reported != expected:
        raise CodeMismatchError(
            f"{operation} of {target}: Lambda reports CodeSha256 {reported or '(none)'}, but the archive drover "
            f"built has {expected}; Lambda read {location.describe()} — the code there is not drover's "
            "(check who else writes to the upload bucket); nothing was tagged, rerun drover"
        )


def parse_live_function(response: GetFunctionResponseTypeDef | dict[str, Any]) -> LiveFunction:
    configuration: Any = response["Configuration"]
    return LiveFunction(
        arn=configuration["FunctionArn"],
        name=configuration["FunctionName"],
        runtime=configuration.get("Runtime"),
        architecture=(configuration.get("Architectures") or ["x86_64"])[0],
        package_type=configuration.get("PackageType", "Zip"),
        code_sha256=configuration.get("CodeSha256", ""),
        code_size=int(configuration.get("CodeSize", 0)),
        layers=tuple(
            AttachedLayer(layer["Arn"], int(layer.get("CodeSize", 0))) for layer in configuration.get("Layers", [])
        ),
        revision_id=configuration.get("RevisionId"),
        state=configuration.get("State"),
        last_update_status=configuration.get("LastUpdateStatus"),
        last_update_reason=configuration.get("LastUpdateStatusReason"),
        tags=dict(response.get("Tags") or {}),
    )


def unqualified_arn(arn: str) -> str:
    """A function ARN without its version or alias qualifier."""
    parts = arn.split(":")
    return ":".join(parts[:7])


# -- STS: the web identity exchange of the GitHub Action --------------------------------------

STS_ATTEMPTS = 6
STS_TRUST_CODES = frozenset({"AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim", "ExpiredTokenException"})


def sts_config(attempts: int) -> Config:
    """botocore's own standard retry mode (throttling, 5xx, connection errors, IDPCommunicationError)."""
    return RETRY_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=30))


class AssumeRoleError(AwsError):
    """STS did not hand out credentials.

    `code` and `aws_message` are AWS's error code and message ("" for a connection failure), so
    the caller can explain a trust-policy refusal in its own terms.
    """


@dataclass(frozen=True)
class _Status:
    status_code: int


@cache
def _sts_operation() -> Any:
    return botocore.session.get_session().get_service_model("sts").operation_model("AssumeRoleWithWebIdentity")


def is_transient_sts_error(error: BaseException) -> bool:
    """Whether botocore's standard retry mode retries this STS error (it decides; drover only asks)."""
    parsed = error.response if isinstance(error, botocore.exceptions.ClientError) else None
    status = int((parsed or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return _sts_retries(
        parsed,
        _Status(status) if parsed is not None else None,
        error if parsed is None and isinstance(error, Exception) else None,
        attempt=1,
        attempts=2,
    )


def _sts_retries(parsed: Any, http_response: Any, caught: Exception | None, *, attempt: int, attempts: int) -> bool:
    context = RetryContext(
        attempt_number=attempt,
        operation_model=_sts_operation(),
        parsed_response=parsed,
        http_response=http_response,
        caught_exception=caught,
    )
    return bool(StandardRetryConditions(max_attempts=attempts).is_retryable(context))


def _log_sts_retries(attempts: int) -> Callable[..., None]:
    """A `needs-retry` hook that says, in the log, why botocore is about to retry the STS call."""

    def log(response: Any = None, caught_exception: Exception | None = None, **kwargs: Any) -> None:
        http_response, parsed = response if response is not None else (None, None)
        failed = caught_exception is not None or (http_response is not None and http_response.status_code >= 300)
        attempt = int(kwargs.get("attempts", 1))
        if failed and _sts_retries(parsed, http_response, caught_exception, attempt=attempt, attempts=attempts):
            error = (parsed or {}).get("Error", {})
            why = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ") if error else ""
            status = f"HTTP {http_response.status_code}" if http_response is not None else ""
            logger.info("AssumeRoleWithWebIdentity failed (%s); retry %d", why or status or caught_exception, attempt)

    return log


def assume_role_with_web_identity(
    role_arn: str,
    web_identity_token: str,
    session_name: str,
    duration_seconds: int,
    region_name: str,
    *,
    session: boto3.Session | None = None,
    attempts: int = STS_ATTEMPTS,
) -> AwsCredentials:
    """Exchange a GitHub OIDC token for role credentials.

    botocore's standard retry mode retries throttling, 5xx and connection errors with jittered
    backoff; AccessDenied (and the other trust-policy refusals) fail at once with an
    AssumeRoleError carrying AWS's code.
    """
    config = sts_config(attempts)
    sts: STSClient = (
        session.client("sts", region_name=region_name, config=config)
        if session is not None
        else cast("STSClient", botocore.session.Session().create_client("sts", region_name=region_name, config=config))
    )
    sts.meta.events.register("needs-retry.sts.AssumeRoleWithWebIdentity", _log_sts_retries(attempts))
    response = aws_call(
        "AssumeRoleWithWebIdentity",
        lambda: sts.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=session_name,
            WebIdentityToken=web_identity_token,
            DurationSeconds=duration_seconds,
        ),
        service="sts",
        error=AssumeRoleError,
    )
    credentials = response["Credentials"]
    return AwsCredentials(
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
        credentials.get("Expiration"),
    )
