"""Settings and result models: pure data, validated with pydantic v2."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

# Lambda limits (AWS docs): layers per function, unzipped function + layers, zipped direct upload.
MAX_LAYERS = 5
UNZIPPED_LIMIT = 262_144_000
DIRECT_UPLOAD_LIMIT = 52_428_800
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
RUNTIME_PATTERN = re.compile(r"^python3\.(\d{1,2})$")
# Lambda's Python runtimes (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html, 2026-11):
# supported ones deploy; deprecated ones are refused, because Lambda blocks creating and then
# updating functions on them (python3.8: updates blocked since 2026-03-09), so a deploy would fail
# half-way at the first write instead of before it.
SUPPORTED_RUNTIMES = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13", "python3.14")
DEPRECATED_RUNTIMES = ("python3.6", "python3.7", "python3.8")
MAX_ECHO = 120  # characters of a user's value an error line repeats
FUNCTION_NAME_PATTERN = re.compile(
    r"^(arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:)?(?P<name>[a-zA-Z0-9_-]{1,64})$"
)
LAYER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,140}$")
LAYER_VERSION_ARN_PATTERN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"layer:(?P<name>[a-zA-Z0-9_-]{1,140}):(?P<version>[1-9]\d*)$"
)
ALIAS_PATTERN = re.compile(r"^(?!\d+$)[a-zA-Z0-9_-]{1,128}$")
BUCKET_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DEFAULT_EXCLUDE_PATTERN = r".*__pycache__.*"  # drover 0.7.1's default, matched with re.match

Architecture = Literal["x86_64", "arm64"]


def short_repr(value: object, limit: int = MAX_ECHO) -> str:
    """repr(value), cut in the middle when longer than limit: an error line never echoes a huge value."""
    text = repr(value)
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]} ({len(text)} characters)"


def compile_pattern(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression string, got {type(value).__name__} {short_repr(value)}")
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(f"invalid regular expression {short_repr(value)}: {error}") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(compile_pattern)]


def is_valid(value: str, pattern: re.Pattern[str]) -> bool:
    """The whole value matches: re.match with `$` would accept a trailing newline ("fn\\n")."""
    return pattern.fullmatch(value) is not None


def _check_pattern(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not is_valid(value, pattern):
        raise ValueError(f"{short_repr(value)} is not a valid {what}")
    return value


def _region_name(value: str) -> str:
    return _check_pattern(value, REGION_PATTERN, "AWS region name (e.g. us-east-1)")


RegionName = Annotated[str, AfterValidator(_region_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class S3BucketPath(_Model):
    region_name: RegionName
    bucket_name: str
    prefix: str = ""

    @field_validator("bucket_name")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return _check_pattern(value, BUCKET_NAME_PATTERN, "S3 bucket name")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")


class S3BucketFileVersion(_Model):
    bucket_name: str
    key: str
    version_id: str | None = None


def _extra_path_text(value: Any) -> str:
    text = str(value) if isinstance(value, Path) else value
    if not isinstance(text, str):
        raise ValueError(f"expected a path, got {type(value).__name__} {value!r}")
    if not text.strip():
        raise ValueError("an empty extra path would add the whole working directory — name a file or directory")
    if PurePosixPath(text.strip()).as_posix() in (".", "/"):
        raise ValueError(
            f"{text!r} is the whole working directory (or file system) — name the handler directory or file "
            "instead, e.g. src"
        )
    return text.strip()


def _archive_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("archive_path must be a non-empty relative path, e.g. service")
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts or path.as_posix() == ".":
        raise ValueError(f"archive_path {value!r} must be a relative path inside the archive, e.g. service")
    return path.as_posix()


ALARM_NAME_PATTERN = re.compile(r"^[^\x00-\x1f]{1,255}$")


class SmokeTest(_Model):
    """Invoke the new version (never the alias) before any traffic reaches it."""

    payload: str = "{}"  # JSON text sent as the event
    expect: str | None = None  # a substring the response payload must contain

    @field_validator("payload")
    @classmethod
    def _json(cls, value: str) -> str:
        import json

        try:
            json.loads(value)
        except ValueError as error:
            raise ValueError(
                f"payload {short_repr(value)} is not JSON text ({error}) — quote it as YAML text"
            ) from None
        return value


class Rollout(_Model):
    """How traffic moves to a new version on the alias: at once, canary (one step, then all) or linear steps."""

    strategy: Literal["all_at_once", "canary", "linear"] = "all_at_once"
    percent: int = Field(default=10, ge=1, le=99)  # canary: the first step's share; linear: the share added per step
    interval_seconds: int = Field(default=300, ge=1, le=3600)  # between steps (canary: before going to 100 %)
    alarms: list[str] = Field(default_factory=list)  # CloudWatch alarm names: any in ALARM fails the rollout
    smoke_test: SmokeTest | None = None

    @field_validator("alarms")
    @classmethod
    def _alarm_names(cls, values: list[str]) -> list[str]:
        for value in values:
            _check_pattern(value, ALARM_NAME_PATTERN, "CloudWatch alarm name (1-255 characters)")
        return values

    def weights(self) -> list[int]:
        """The percentages the new version serves before it serves all traffic."""
        if self.strategy == "canary":
            return [self.percent]
        if self.strategy == "linear":
            return list(range(self.percent, 100, self.percent))
        return []


class ExtraPath(_Model):
    """An extra path placed under archive_path in the function archive (the mapping form)."""

    path: Annotated[Path, BeforeValidator(_extra_path_text)]
    archive_path: Annotated[str, BeforeValidator(_archive_path)]


def _extra_path(value: Any) -> ExtraPath | Path:
    """The plain form (a path) as drover 0.7.1 reads it, or the mapping form {path, archive_path}."""
    if isinstance(value, ExtraPath):
        return value
    if isinstance(value, dict):
        try:
            return ExtraPath.model_validate(value)
        except ValidationError as error:
            detail = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in detail["loc"])
            message = str(detail["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None
    return Path(_extra_path_text(value))


# A directory's contents go to the archive root and a file by its name (drover 0.7.1); the mapping
# form places the path's contents under archive_path instead.
FunctionExtraPath = Annotated[ExtraPath | Path, PlainValidator(_extra_path)]


class Stage(_Model):
    region_name: RegionName
    function_name: str
    compatible_runtime: str
    function_file_patterns: list[Regex] = Field(default_factory=list)
    function_extra_paths: list[FunctionExtraPath] = Field(default_factory=list)
    package_exclude_patterns: list[Regex] = Field(default_factory=lambda: [re.compile(DEFAULT_EXCLUDE_PATTERN)])
    requirements_layer_name: str | None = None
    supplemental_layer_arns: list[str] = Field(default_factory=list)
    upload_bucket: S3BucketPath | None = None
    architecture: Architecture | None = None
    publish: bool = False
    alias: str | None = None
    keep_layer_versions: int | None = Field(default=None, ge=1)
    exclude_runtime_packages: bool = False
    requirements: Path | None = None  # this stage's own requirements or lock file (relative: to the settings file)
    install_source: Path | None = None  # this stage's own project directory (relative: to the settings file)
    rollout: Rollout | None = None  # how the alias moves to a new version (needs alias)

    @field_validator("function_name")
    @classmethod
    def _function_name(cls, value: str) -> str:
        return _check_pattern(value, FUNCTION_NAME_PATTERN, "Lambda function name (letters, digits, - and _)")

    @field_validator("compatible_runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        _check_pattern(value, RUNTIME_PATTERN, "Python runtime (e.g. python3.12)")
        return check_runtime(value)

    @field_validator("requirements_layer_name")
    @classmethod
    def _layer_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_pattern(value, LAYER_NAME_PATTERN, "layer name (letters, digits, - and _)")

    @field_validator("supplemental_layer_arns")
    @classmethod
    def _layer_arns(cls, values: list[str]) -> list[str]:
        for value in values:
            _check_pattern(
                value, LAYER_VERSION_ARN_PATTERN, "layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)"
            )
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ValueError(f"layer ARN listed twice: {duplicates[0]}")
        return values

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_pattern(value, ALIAS_PATTERN, "alias name (letters, digits, - and _, not only digits)")

    @model_validator(mode="after")
    def _cross_checks(self) -> Stage:
        if self.requirements_layer_name is None:
            layer_name = f"{self.short_function_name}-requirements"
            object.__setattr__(self, "requirements_layer_name", layer_name[:140])
        if self.rollout is not None and self.alias is None:
            raise ValueError("rollout moves traffic on an alias — add alias: NAME (e.g. alias: live) to the stage")
        if self.alias is not None and not self.publish:
            object.__setattr__(self, "publish", True)
        function_region = FUNCTION_NAME_PATTERN.fullmatch(self.function_name)["region"]  # type: ignore[index]
        if function_region is not None and function_region != self.region_name:
            raise ValueError(
                f"function_name {self.function_name} is an ARN in region {function_region}, but region_name is "
                f"{self.region_name} — make them match (or give the plain function name)"
            )
        for arn in self.supplemental_layer_arns:
            layer_region = LAYER_VERSION_ARN_PATTERN.fullmatch(arn)["region"]  # type: ignore[index]
            if layer_region != self.region_name:
                raise ValueError(
                    f"supplemental layer {arn} is in region {layer_region}, but the function is in "
                    f"{self.region_name}; Lambda only attaches layers from the function's region — use a version "
                    f"of the layer published in {self.region_name}"
                )
        if len(self.supplemental_layer_arns) + 1 > MAX_LAYERS:
            raise ValueError(
                f"supplemental_layer_arns: {len(self.supplemental_layer_arns)} supplemental layers plus the "
                f"requirements layer exceed Lambda's limit of {MAX_LAYERS} layers per function — list at most "
                f"{MAX_LAYERS - 1}"
            )
        if self.upload_bucket is not None and self.upload_bucket.region_name != self.region_name:
            raise ValueError(
                f"upload_bucket {self.upload_bucket.bucket_name} is in region {self.upload_bucket.region_name}, "
                f"but the function is in {self.region_name}; Lambda reads code only from a bucket in its own region "
                f"— use a bucket in {self.region_name}"
            )
        return self

    def with_inputs_under(self, directory: Path) -> Stage:
        updates = {
            key: directory / value
            for key, value in (("requirements", self.requirements), ("install_source", self.install_source))
            if value is not None and not value.is_absolute()
        }
        return self.model_copy(update=updates) if updates else self

    @property
    def extra_path_sources(self) -> list[Path]:
        """The filesystem paths of function_extra_paths, whichever form each entry has."""
        return [extra.path if isinstance(extra, ExtraPath) else extra for extra in self.function_extra_paths]

    @property
    def function_identity(self) -> tuple[str, str | None, str]:
        """(region, account, name): the function, whether function_name is its name or its ARN.

        A plain name leaves the account None: the caller's, which only AWS knows — two stages with equal
        identities name one function; a name and an ARN are only the same once GetFunction's ARNs agree.
        """
        match = FUNCTION_NAME_PATTERN.fullmatch(self.function_name)
        assert match is not None  # the validator checked it
        return self.region_name, match["account"], match["name"]

    @property
    def short_function_name(self) -> str:
        return self.function_name.rsplit(":", 1)[-1]

    @property
    def layer_name(self) -> str:
        assert self.requirements_layer_name is not None
        return self.requirements_layer_name

    @property
    def python_version(self) -> str:
        return self.compatible_runtime.removeprefix("python")


def check_runtime(value: str) -> str:
    """A runtime Lambda runs today; a deprecated or unknown python3.N names the supported ones."""
    supported = f"use one of {', '.join(SUPPORTED_RUNTIMES)}"
    if value in DEPRECATED_RUNTIMES:
        raise ValueError(
            f"{value!r} is a deprecated Lambda runtime: Lambda no longer creates or updates functions on it — {supported}"
        )
    if value not in SUPPORTED_RUNTIMES:
        raise ValueError(f"{value!r} is not a Python runtime Lambda supports — {supported}")
    return value


class Settings(_Model):
    stages: dict[str, Stage]

    def relative_to(self, directory: Path) -> Settings:
        """The stages' own install inputs, given relative to the settings file, made relative to its directory."""
        stages = {name: stage.with_inputs_under(directory) for name, stage in self.stages.items()}
        return self.model_copy(update={"stages": stages})


class DeployAction(BaseModel):
    """One change drover made (or, in a dry run, would make) and why."""

    model_config = ConfigDict(frozen=True)

    action: str
    target: str
    reason: str
    done: bool
    at: str | None = None  # when it was done (UTC, ISO 8601 to the second): a rollout's steps are minutes apart


class InstallSummary(BaseModel):
    """What the dependency install step did (when --install-source/--requirements were given)."""

    skipped: bool
    installer: str
    lock: str | None
    excluded_packages: list[str]
    excluded_bytes: int
    seconds: float
    skip_reason: str | None = None  # why the dependency install was skipped, when it was
    dependency_key: str | None = None  # the exact lock's key (None without one): what the layer records
    verified: bool = False  # --no-dependency-key: installed anyway and matched the attached layer's digest


class DeployResult(BaseModel):
    """What a run did; adapters render it as text, JSON or step outputs."""

    model_config = ConfigDict(frozen=False)

    stage: str
    mode: Literal["package-only", "dry-run", "deploy"]
    function_name: str
    region_name: str
    function_digest: str | None
    requirements_digest: str | None
    function_file_count: int
    requirements_file_count: int
    function_unzipped_size: int
    requirements_unzipped_size: int
    function_entries: list[str] = Field(default_factory=list)  # the function archive's top level ("app/", "x.py")
    function_archive: str | None = None
    requirements_archive: str | None = None
    function_size: int | None = None
    requirements_size: int | None = None
    function_arn: str | None = None
    requirements_layer_arn: str | None = None
    code_sha256: str | None = None
    function_updated: bool = False
    requirements_updated: bool = False
    configuration_updated: bool = False
    version: str | None = None  # the version that now serves this code: published by this run or reused
    version_published: bool = False  # whether this run published `version`
    changed: bool = False  # whether this run changed anything (code, layers, tags, version, alias, layer versions)
    alias_arn: str | None = None
    bytes_uploaded: int = 0
    actions: list[DeployAction] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    install: InstallSummary | None = None
    promoted_from: str | None = None  # a promotion: the source stage whose artifact was copied (nothing was built)
    source_layer_arns: list[str] = Field(default_factory=list)  # a promotion: the layers the source function runs
    rollout: Literal["completed", "rolled-back", "none"] = "none"  # a stage with rollout: what became of it
    previous_version: str | None = None  # the version the alias served before this run moved it
    timings: dict[str, float] = Field(default_factory=dict)


class StageFailure(BaseModel):
    """A stage of a multi-stage run that failed: its error, exit code, and the changes made before it."""

    stage: str
    function_name: str | None = None
    region_name: str | None = None
    error: str
    exit_code: int
    actions: list[DeployAction] = Field(default_factory=list)


class RunTotals(BaseModel):
    stages: int
    succeeded: int
    failed: int
    changed: int
    layer_versions_published: int
    bytes_uploaded: int
    seconds: float


class MultiResult(BaseModel):
    """What a run over several stages did: one entry per stage (a DeployResult or a StageFailure), in order."""

    mode: Literal["package-only", "dry-run", "deploy"]
    results: list[DeployResult | StageFailure]
    succeeded: list[str]
    failed: list[str]
    totals: RunTotals

    @property
    def exit_code(self) -> int:
        codes = {result.exit_code for result in self.results if isinstance(result, StageFailure)}
        return 0 if not codes else codes.pop() if len(codes) == 1 else 1
