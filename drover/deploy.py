"""Everything that talks to AWS: the only module importing boto3.

Calls go through `AwsClients.call`, the one place that knows AWS's failure modes: it retries
what a wait fixes (an update in progress), and turns every other failure into one UpdateError
line that names the operation, AWS's message and, where there is one, the fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from drover.archive import ArchiveInfo
from drover.errors import PreflightError, UpdateError
from drover.models import LAYER_VERSION_ARN_PATTERN, S3BucketFileVersion, S3BucketPath, Stage
from drover.retry import Backoff, retry

logger = logging.getLogger("drover")

LAYER_DESCRIPTION_PREFIX = "drover requirements sha256:"
TAG_FUNCTION_DIGEST = "drover:function-digest"
TAG_REQUIREMENTS_DIGEST = "drover:requirements-digest"
TAG_CODE_SHA256 = "drover:code-sha256"
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
UPDATE_TIMEOUT_SECONDS = 900.0
NO_CREDENTIALS = "no AWS credentials found — set role-to-assume (GitHub Action), AWS_PROFILE or AWS_ACCESS_KEY_ID"
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=10,
    read_timeout=300,
    user_agent_extra="drover-action",
)


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime | None = None


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


@dataclass(frozen=True)
class CodeLocation:
    """Where Lambda reads an archive from: inline bytes or an S3 object."""

    archive: ArchiveInfo
    s3: S3BucketFileVersion | None = None

    def lambda_arguments(self) -> dict[str, Any]:
        if self.s3 is None:
            return {"ZipFile": self.archive.path.read_bytes()}
        arguments = {"S3Bucket": self.s3.bucket_name, "S3Key": self.s3.key}
        if self.s3.version_id:
            arguments["S3ObjectVersion"] = self.s3.version_id
        return arguments


@dataclass
class AwsClients:
    """boto3 clients for one region, with standard retries, on explicit or default credentials."""

    region_name: str
    credentials: AwsCredentials | None = None
    session: boto3.Session | None = None
    sleep: Callable[[float], None] = time.sleep
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = self.session or boto3.Session()
            keys: dict[str, Any] = {}
            if self.credentials is not None:
                keys = {
                    "aws_access_key_id": self.credentials.access_key_id,
                    "aws_secret_access_key": self.credentials.secret_access_key,
                    "aws_session_token": self.credentials.session_token,
                }
            self._clients[service] = session.client(  # type: ignore[call-overload]  # service is a runtime string
                service, region_name=self.region_name, config=RETRY_CONFIG, **keys
            )
        return self._clients[service]

    def call(
        self, service: str, operation: str, *, on_conflict: Callable[[], object] | None = None, **arguments: Any
    ) -> Any:
        """Call a client method by its snake_case name; the single place AWS errors become UpdateError."""
        method = getattr(self.client(service), operation)
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return method(**arguments)
            except botocore.exceptions.ClientError as error:
                code = error_code(error)
                if code == "ResourceConflictException" and on_conflict is not None and attempt < CONFLICT_RETRIES:
                    logger.info("Lambda is busy with another update (%s); waiting, then retrying", error_message(error))
                    self.sleep(min(2.0**attempt, 10.0))
                    on_conflict()
                    continue
                raise UpdateError(describe_client_error(service, error)) from error
            except botocore.exceptions.NoCredentialsError:
                raise UpdateError(NO_CREDENTIALS) from None
            except botocore.exceptions.BotoCoreError as error:
                raise UpdateError(f"{_operation_name(error, operation)} failed: {error}") from error
        raise AssertionError("unreachable")  # pragma: no cover


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

    def __init__(self, stage: Stage, clients: AwsClients, *, update_timeout: float = UPDATE_TIMEOUT_SECONDS) -> None:
        self.stage = stage
        self.clients = clients
        self.update_timeout = update_timeout

    # -- reads ---------------------------------------------------------------------------------

    def read_function(self) -> LiveFunction:
        try:
            response = self.clients.client("lambda").get_function(FunctionName=self.stage.function_name)
        except botocore.exceptions.ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                raise UpdateError(
                    f"function {self.stage.function_name} not found in region {self.stage.region_name} — "
                    "create it with your infrastructure tool first (drover updates functions, it does not create them)"
                ) from None
            raise UpdateError(describe_client_error("lambda", error)) from error
        except botocore.exceptions.NoCredentialsError:
            raise UpdateError(NO_CREDENTIALS) from None
        except botocore.exceptions.BotoCoreError as error:
            raise UpdateError(f"GetFunction failed: {error}") from error
        return parse_live_function(response)

    def wait_until_updated(self, operation: str | None = None) -> LiveFunction:
        """Poll until LastUpdateStatus is no longer InProgress; Failed is an UpdateError quoting Lambda.

        operation names drover's call that started the update, for the error message.
        """
        deadline = time.monotonic() + self.update_timeout
        delay = 1.0
        while True:
            live = parse_live_function(
                self.clients.call("lambda", "get_function", FunctionName=self.stage.function_name)
            )
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

    def find_layer_version(self, digest: str, architecture: str, attached: Sequence[str]) -> LayerVersion | None:
        """A version of the requirements layer recording this digest: the attached one first, then any."""
        description = LAYER_DESCRIPTION_PREFIX + digest
        for arn in attached:
            match = LAYER_VERSION_ARN_PATTERN.match(arn)
            if match and match["name"] == self.stage.layer_name:
                attached_version = self._get_layer_version(int(match["version"]))
                if attached_version and attached_version.description == description:
                    return attached_version
        for listed in self.list_layer_versions():
            if listed.description == description and architecture in listed.architectures:
                return LayerVersion(listed.arn, listed.version, listed.description)
        return None

    def list_layer_versions(self) -> Iterator[_ListedLayerVersion]:
        paginator = self.clients.client("lambda").get_paginator("list_layer_versions")
        try:
            for page in paginator.paginate(LayerName=self.stage.layer_name):
                for item in page.get("LayerVersions", []):
                    yield _ListedLayerVersion(
                        item["LayerVersionArn"],
                        int(item["Version"]),
                        item.get("Description", ""),
                        tuple(item.get("CompatibleArchitectures") or ("x86_64",)),
                    )
        except botocore.exceptions.ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return
            raise UpdateError(describe_client_error("lambda", error)) from error
        except botocore.exceptions.BotoCoreError as error:
            raise UpdateError(f"ListLayerVersions failed: {error}") from error

    def layer_code_size(self, arn: str) -> int:
        match = LAYER_VERSION_ARN_PATTERN.match(arn)
        if match is None:
            return 0
        response = self.clients.call(
            "lambda", "get_layer_version", LayerName=f"{arn.rsplit(':', 1)[0]}", VersionNumber=int(match["version"])
        )
        return int(response.get("Content", {}).get("CodeSize", 0))

    def check_bucket_region(self, bucket: S3BucketPath) -> None:
        response = self.clients.call("s3", "get_bucket_location", Bucket=bucket.bucket_name)
        region = response.get("LocationConstraint") or "us-east-1"
        region = "eu-west-1" if region == "EU" else region
        if region != self.stage.region_name:
            raise PreflightError(
                f"upload_bucket {bucket.bucket_name} is in {region}, but the function is in "
                f"{self.stage.region_name}; Lambda only reads code from a bucket in its own region — use another bucket"
            )

    def _get_layer_version(self, version: int) -> LayerVersion | None:
        try:
            response = self.clients.client("lambda").get_layer_version(
                LayerName=self.stage.layer_name, VersionNumber=version
            )
        except botocore.exceptions.ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return None
            raise UpdateError(describe_client_error("lambda", error)) from error
        except botocore.exceptions.BotoCoreError as error:
            raise UpdateError(f"GetLayerVersion failed: {error}") from error
        return LayerVersion(
            response["LayerVersionArn"],
            int(response["Version"]),
            response.get("Description", ""),
            response.get("Content", {}).get("CodeSize"),
        )

    # -- writes --------------------------------------------------------------------------------

    def upload_to_s3(self, archive: ArchiveInfo, digest: str) -> tuple[S3BucketFileVersion, bool]:
        """Put the archive at its content-addressed key unless the same bytes are already there.

        Returns the object and whether it was uploaded now.
        """
        bucket = self.stage.upload_bucket
        assert bucket is not None
        key = "/".join(part for part in (bucket.prefix, self.stage.short_function_name, f"{digest}.zip") if part)
        s3 = self.clients.client("s3")
        try:
            head = s3.head_object(Bucket=bucket.bucket_name, Key=key)
            if head.get("Metadata", {}).get(CODE_SHA256_METADATA) == archive.code_sha256:
                logger.info("Archive already in s3://%s/%s; not uploading it again", bucket.bucket_name, key)
                existing = S3BucketFileVersion(
                    bucket_name=bucket.bucket_name, key=key, version_id=head.get("VersionId")
                )
                return existing, False
        except botocore.exceptions.ClientError as error:
            if error_code(error) not in {"404", "NoSuchKey", "NotFound", "403"}:
                raise
        with open(archive.path, "rb") as body:
            response = s3.put_object(
                Bucket=bucket.bucket_name, Key=key, Body=body, Metadata={CODE_SHA256_METADATA: archive.code_sha256}
            )
        uploaded = S3BucketFileVersion(bucket_name=bucket.bucket_name, key=key, version_id=response.get("VersionId"))
        return uploaded, True

    def publish_layer(self, location: CodeLocation, digest: str, architecture: str) -> LayerVersion:
        content = location.lambda_arguments()
        response = self.clients.call(
            "lambda",
            "publish_layer_version",
            LayerName=self.stage.layer_name,
            Description=LAYER_DESCRIPTION_PREFIX + digest,
            Content=content,
            CompatibleRuntimes=[self.stage.compatible_runtime],
            CompatibleArchitectures=[architecture],
        )
        return LayerVersion(
            response["LayerVersionArn"],
            int(response["Version"]),
            response.get("Description", ""),
            response.get("Content", {}).get("CodeSize"),
        )

    def update_code(self, location: CodeLocation, live: LiveFunction) -> LiveFunction:
        sha256 = location.archive.code_sha256
        return self._update(
            "update_function_code",
            lambda updated: updated.code_sha256 == sha256,
            **location.lambda_arguments(),
            **_revision(live),
        )

    def update_layers(self, layer_arns: Sequence[str], live: LiveFunction) -> LiveFunction:
        wanted = list(layer_arns)
        return self._update(
            "update_function_configuration",
            lambda updated: updated.layer_arns == wanted,
            Layers=wanted,
            **_revision(live),
        )

    def _update(self, operation: str, applied: Callable[[LiveFunction], bool], **arguments: Any) -> LiveFunction:
        """Call an update and wait for it to finish.

        A PreconditionFailedException (stale RevisionId) while the function already has this very
        change is botocore retrying a request whose first attempt was applied but whose answer was
        lost (a read timeout, a reset connection): the update is done, not a conflict.
        """
        name = _api_name(operation)
        try:
            self.clients.call(
                "lambda",
                operation,
                on_conflict=self.wait_until_updated,
                FunctionName=self.stage.function_name,
                **arguments,
            )
        except UpdateError as error:
            cause = error.__cause__
            stale = (
                isinstance(cause, botocore.exceptions.ClientError)
                and error_code(cause) == "PreconditionFailedException"
            )
            if not stale:
                raise
            live = self.wait_until_updated(name)
            if not applied(live):
                raise
            logger.info("%s had already been applied (its answer was lost, so botocore retried it)", name)
            return live
        return self.wait_until_updated(name)

    def tag_function(self, live: LiveFunction, tags: dict[str, str]) -> None:
        self.clients.call("lambda", "tag_resource", Resource=_unqualified(live.arn), Tags=tags)

    def find_published_version(self, live: LiveFunction) -> str | None:
        """The newest published version with the live code and layers, so an unchanged function is not republished."""
        paginator = self.clients.client("lambda").get_paginator("list_versions_by_function")
        newest: tuple[int, str] | None = None
        try:
            for page in paginator.paginate(FunctionName=self.stage.function_name):
                for item in page.get("Versions", []):
                    if item["Version"] == "$LATEST" or item.get("CodeSha256") != live.code_sha256:
                        continue
                    if [layer["Arn"] for layer in item.get("Layers", [])] != live.layer_arns:
                        continue
                    number = int(item["Version"])
                    if newest is None or number > newest[0]:
                        newest = (number, item["Version"])
        except botocore.exceptions.ClientError as error:
            raise UpdateError(describe_client_error("lambda", error)) from error
        except botocore.exceptions.BotoCoreError as error:
            raise UpdateError(f"ListVersionsByFunction failed: {error}") from error
        return newest[1] if newest else None

    def publish_version(self, live: LiveFunction) -> str:
        arguments: dict[str, Any] = {"FunctionName": self.stage.function_name, "CodeSha256": live.code_sha256}
        arguments.update(_revision(live))
        response = self.clients.call("lambda", "publish_version", on_conflict=self.wait_until_updated, **arguments)
        return str(response["Version"])

    def point_alias(self, alias: str, version: str) -> tuple[str, bool]:
        """Make the alias point at version; returns (alias ARN, whether it changed)."""
        lambda_client = self.clients.client("lambda")
        try:
            current = lambda_client.get_alias(FunctionName=self.stage.function_name, Name=alias)
        except botocore.exceptions.BotoCoreError as error:
            raise UpdateError(f"GetAlias failed: {error}") from error
        except botocore.exceptions.ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise UpdateError(describe_client_error("lambda", error)) from error
            created = self.clients.call(
                "lambda", "create_alias", FunctionName=self.stage.function_name, Name=alias, FunctionVersion=version
            )
            return str(created["AliasArn"]), True
        if current.get("FunctionVersion") == version:
            return str(current["AliasArn"]), False
        arguments: dict[str, Any] = {
            "FunctionName": self.stage.function_name,
            "Name": alias,
            "FunctionVersion": version,
        }
        if current.get("RevisionId"):
            arguments["RevisionId"] = current["RevisionId"]
        updated = self.clients.call("lambda", "update_alias", **arguments)
        return str(updated["AliasArn"]), True

    def prune_layer_versions(self, keep: int, attached: Sequence[str]) -> list[int]:
        versions = sorted(self.list_layer_versions(), key=lambda item: item.version, reverse=True)
        deleted = []
        for version in versions[keep:]:
            if version.arn in attached:
                continue
            self.clients.call(
                "lambda", "delete_layer_version", LayerName=self.stage.layer_name, VersionNumber=version.version
            )
            deleted.append(version.version)
        return deleted


@dataclass(frozen=True)
class _ListedLayerVersion:
    arn: str
    version: int
    description: str
    architectures: tuple[str, ...]


def parse_live_function(response: dict[str, Any]) -> LiveFunction:
    configuration = response["Configuration"]
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


def _revision(live: LiveFunction) -> dict[str, str]:
    return {"RevisionId": live.revision_id} if live.revision_id else {}


def _unqualified(arn: str) -> str:
    parts = arn.split(":")
    return ":".join(parts[:7])


def s3_failure_message(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return describe_client_error("s3", error)
    return f"{type(error).__name__}: {error}"


S3_FAILURES = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


# -- STS: the web identity exchange of the GitHub Action --------------------------------------

STS_ATTEMPTS = 6
# botocore's own retries are off for STS: `assume_role_with_web_identity` retries with its own
# Backoff, so the policy (what is transient, how long to wait) is explicit and testable.
STS_CONFIG = RETRY_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30))
STS_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "IDPCommunicationError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
# STS's answers when the role's trust policy (or the OIDC provider) does not accept the token
STS_TRUST_CODES = frozenset({"AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim", "ExpiredTokenException"})


class AssumeRoleError(UpdateError):
    """STS did not hand out credentials.

    `code` and `aws_message` are AWS's error code and message ("" for a connection failure), so
    the caller can explain a trust-policy refusal in its own terms.
    """

    def __init__(self, message: str, code: str = "", aws_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.aws_message = aws_message


def is_transient_sts_error(error: BaseException) -> bool:
    """Throttling, 5xx and connection failures are worth retrying; AccessDenied and friends never are."""
    if isinstance(error, botocore.exceptions.ClientError):
        code = error_code(error)
        if code in STS_TRUST_CODES:
            return False
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in STS_TRANSIENT_CODES or status >= 500
    return isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError)


def assume_role_with_web_identity(
    role_arn: str,
    web_identity_token: str,
    session_name: str,
    duration_seconds: int,
    region_name: str,
    *,
    session: boto3.Session | None = None,
    backoff: Backoff | None = None,
) -> AwsCredentials:
    """Exchange a GitHub OIDC token for role credentials.

    Throttling, 5xx and connection errors are retried with jittered backoff; AccessDenied (and the
    other trust-policy refusals) fail at once with an AssumeRoleError carrying AWS's code.
    """
    sts = (session or boto3.Session()).client("sts", region_name=region_name, config=STS_CONFIG)

    def call() -> Any:
        return sts.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=session_name,
            WebIdentityToken=web_identity_token,
            DurationSeconds=duration_seconds,
        )

    def log_retry(attempt: int, error: BaseException, seconds: float) -> None:
        logger.info("AssumeRoleWithWebIdentity failed (%s); retry %d in %.1f s", _short_error(error), attempt, seconds)

    try:
        response = retry(
            call, transient=is_transient_sts_error, backoff=backoff or Backoff(STS_ATTEMPTS), on_retry=log_retry
        )
    except botocore.exceptions.ClientError as error:
        raise AssumeRoleError(describe_client_error("sts", error), error_code(error), error_message(error)) from error
    except botocore.exceptions.BotoCoreError as error:
        raise AssumeRoleError(f"AssumeRoleWithWebIdentity failed: {error}") from error
    credentials = response["Credentials"]
    return AwsCredentials(
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
        credentials.get("Expiration"),
    )


def _short_error(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return f"{error_code(error)}: {error_message(error)}".rstrip(": ")
    return str(error)
