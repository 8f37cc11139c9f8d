"""Security: no secret in any output, safe archive entries, and an IAM policy that cannot drift.

Secrets. tests/test_action_container.py::test_oidc_deploy_end_to_end already runs the simulated
Action with OIDC + STS and checks that the OIDC token, the runner's request token, the access key,
the secret key and the session token appear in stdout only in their own `::add-mask::` line (the
token's and the session token's before the first line that uses them) and nowhere in stderr,
$GITHUB_OUTPUT (result-json included) or the step summary; the AccessDenied test does the same for
the token. What is added here: the same check with step debug logging on, for a deploy that fails
after the credentials were obtained (a traceback is printed then), and for a successful deploy that
builds the project, whose build backend must see no credential and no token-request variable.

Archives. A tree with setuid, setgid, sticky, world-writable and unreadable-by-others modes, a
symlink and absolute/`..` extra paths is packaged by the CLI; every entry of both zips is read back.

Policy. Every boto3 operation drover calls across representative deploy scenarios is recorded with
a botocore `before-call` hook, mapped to its IAM action and resource, and checked against the
policy in SECURITY.md: each call must be allowed (action and resource), and the policy may hold no
action drover never calls beyond the ones SECURITY.md explains.
"""

from __future__ import annotations

import fnmatch
import json
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drover.archive import write_zip
from drover.deploy import AwsClients
from drover.errors import PackagingError
from drover.packaging import PackageFile
from tests.aws import ACCOUNT, REGION, Infrastructure, MotoServer
from tests.deploy_support import Project
from tests.github_fakes import FakeOidcServer, IssuedCredentials, fake_sts, oidc_server
from tests.test_action_container import ROLE, Runner, assert_masked_before_use, oidc_environment, write_project
from tests.test_cli import run_drover
from tests.wheels import offline_environment, project_files

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "SECURITY.md"

# -- no secret in any output ---------------------------------------------------------------------


def secrets_of(oidc: FakeOidcServer, issued: IssuedCredentials) -> dict[str, str]:
    return {
        "OIDC token": oidc.tokens[0],
        "request token": oidc.request_token,
        "access key id": issued.access_key_id,
        "secret key": issued.secret_access_key,
        "session token": issued.session_token,
    }


def assert_masked_before_the_deploy(stdout: str, secrets: dict[str, str]) -> None:
    """Each ::add-mask:: comes before the first line that could use the secret: the token before the
    STS exchange is reported, the keys before the live function is read."""
    lines = stdout.splitlines()
    first_use = {
        "OIDC token": next(index for index, line in enumerate(lines) if line.startswith("Got an OIDC token")),
        "request token": next(index for index, line in enumerate(lines) if line.startswith("Got an OIDC token")),
    }
    credentials_used = next(index for index, line in enumerate(lines) if line.startswith("Assumed "))
    for name in ("access key id", "secret key", "session token"):
        first_use[name] = credentials_used
    for name, secret in secrets.items():
        assert lines.index(f"::add-mask::{secret}") < first_use[name], name


@pytest.fixture
def oidc() -> Iterator[FakeOidcServer]:
    with oidc_server() as server:
        yield server


def test_no_secret_in_a_debug_run_that_fails_after_the_credentials(
    tmp_path: Path, aws: MotoServer, oidc: FakeOidcServer
) -> None:
    """Step debug logging on (drover's debug lines, a traceback) and a deploy failure after STS: no function."""
    runner = Runner(tmp_path)
    write_project(runner.workspace)
    with fake_sts(aws.endpoint) as sts:
        run = runner.run(
            {"install-path": "install", "role-to-assume": ROLE}, RUNNER_DEBUG="1", **oidc_environment(oidc, sts, aws)
        )
        (issued,) = sts.issued
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback (most recent call last)" in run.stderr
    assert run.error_lines == [
        "::error::function fn not found in region us-east-1 (function_name at drover.yml:4:5, region_name at "
        "drover.yml:3:5) — fix the name or the region, or create it with your infrastructure tool first "
        "(drover updates functions, it does not create them)"
    ]
    secrets = secrets_of(oidc, issued)
    assert_masked_before_use(run, secrets)
    assert_masked_before_the_deploy(run.stdout, secrets)


def test_no_secret_in_a_debug_deploy_and_builds_see_no_credentials(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer, oidc: FakeOidcServer
) -> None:
    """A successful OIDC deploy that installs the project (its build backend records what it saw)."""
    runner = Runner(tmp_path)
    write_project(runner.workspace)
    for name, text in project_files("app", "0.1").items():  # the project: the package "app" and its backend
        (runner.workspace / "project" / name).parent.mkdir(parents=True, exist_ok=True)
        (runner.workspace / "project" / name).write_text(text)
    empty_wheelhouse = tmp_path / "wheelhouse"
    empty_wheelhouse.mkdir()
    infra.function("fn")
    with fake_sts(aws.endpoint) as sts:
        run = runner.run(
            {"install-source": "project", "role-to-assume": ROLE},
            RUNNER_DEBUG="1",
            **oidc_environment(oidc, sts, aws),
            **offline_environment(empty_wheelhouse, tmp_path),
        )
        (issued,) = sts.issued
    assert run.returncode == 0, run.stdout + run.stderr
    secrets = secrets_of(oidc, issued)
    assert_masked_before_use(run, secrets)
    assert_masked_before_the_deploy(run.stdout, secrets)
    result = json.loads(run.outputs["result-json"])
    assert result["function_updated"] and result["install"]["installer"] in {"uv", "pip"}
    for secret in secrets.values():
        assert secret not in json.dumps(result)
    (install_path,) = runner.runner_temp.iterdir()
    build_env = (install_path / "app" / "_build_env.txt").read_text()
    assert build_env == "", f"the build backend saw {build_env}"
    for path in install_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in secrets.values()), path


# -- archive entries -----------------------------------------------------------------------------

SETTINGS = """\
stages:
  dev:
    region_name: us-east-1
    function_name: fn
    compatible_runtime: python3.12
    function_file_patterns: ['^app/']
    function_extra_paths:
      - ./static/../instance
      - {absolute}
"""
# name -> (mode given with chmod, mode expected in the archive)
MODES = {
    "app/__init__.py": (0o644, 0o644),
    "app/setuid.py": (0o4755, 0o755),
    "app/setgid.py": (0o2755, 0o755),
    "app/sticky.py": (0o1644, 0o644),
    "app/world_writable.py": (0o666, 0o644),
    "app/every_bit.py": (0o7777, 0o755),
    "app/owner_only.py": (0o600, 0o644),
    "app/read_only.py": (0o400, 0o644),
    "app/group_exec.py": (0o654, 0o755),
    "app/shared/module.py": (0o664, 0o644),
    "dep/__init__.py": (0o646, 0o644),
    "dep/bin/tool": (0o4777, 0o755),
    "dep/bin/helper": (0o2711, 0o755),
}
DIRECTORY_MODES = {"app/shared": 0o3777, "dep/bin": 0o1777, "dep": 0o2775}


def assert_safe_entry(info: zipfile.ZipInfo) -> int:
    """A relative POSIX name without `..`, `.` or empty parts, a regular file of mode 0644/0755; returns the mode."""
    name = info.filename
    assert name and not name.startswith("/") and "\\" not in name, name
    parts = name.split("/")
    assert ".." not in parts and "." not in parts and "" not in parts, name
    assert not re.match(r"^[A-Za-z]:", name), name
    assert not info.is_dir(), name
    assert info.create_system == 3, name  # Unix: the mode bits below are what unzip applies
    assert info.date_time == (1980, 1, 1, 0, 0, 0), name
    assert not info.flag_bits & 0x1, name  # not encrypted
    mode = info.external_attr >> 16
    assert stat.S_ISREG(mode), f"{name}: {mode:o}"
    permissions = stat.S_IMODE(mode)
    assert permissions in {0o644, 0o755}, f"{name}: {permissions:o}"
    assert not permissions & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH | stat.S_IWGRP), name
    return permissions


def test_archives_carry_normalized_modes_and_safe_relative_names(tmp_path: Path) -> None:
    project = tmp_path / "project"
    install = project / "install"
    for name, (mode, _) in MODES.items():
        path = install / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")
        path.chmod(mode)
    (install / "app" / "linked.py").symlink_to("setuid.py")  # inside the tree: stored as a regular file
    for name, mode in DIRECTORY_MODES.items():
        (install / name).chmod(mode)
    (project / "instance").mkdir()
    (project / "static").mkdir()  # ./static/../instance: a relative path with `..` that stays inside
    (project / "instance" / "config.json").write_text("{}\n")
    (project / "instance" / "config.json").chmod(0o4666)
    absolute = tmp_path / "elsewhere" / "settings.ini"
    absolute.parent.mkdir()
    absolute.write_text("[x]\n")
    absolute.chmod(0o6777)
    (project / "drover.yml").write_text(SETTINGS.format(absolute=absolute))

    result = run_drover(
        "--install-path", "install", "--package-only", "--json", "--archive-dir", "out", "dev", cwd=project
    )

    assert result.returncode == 0, result.stderr
    modes: dict[str, int] = {}
    for archive_name in ("function.zip", "requirements.zip"):
        with zipfile.ZipFile(project / "out" / archive_name) as archive:
            for info in archive.infolist():
                modes[info.filename] = assert_safe_entry(info)
                archive.read(info)  # the local header's name and CRC are checked on read
    expected = {name if name.startswith("app/") else f"python/{name}": mode for name, (_, mode) in MODES.items()}
    expected |= {"app/linked.py": 0o755, "config.json": 0o644, "settings.ini": 0o755}  # a directory's contents
    assert modes == expected


@pytest.mark.parametrize("name", ["../escape.py", "/etc/cron.d/job", "app/../../escape.py", "app/./../x.py"])
def test_the_archive_writer_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    """Defence in depth: whatever the packaging step hands it, the writer never stores such a name."""
    source = tmp_path / "source.py"
    source.write_text("x = 1\n")
    archive = tmp_path / "out" / "function.zip"
    with pytest.raises(PackagingError, match="refusing unsafe archive name"):
        write_zip(archive, [PackageFile(name, str(source), False, source.stat().st_size)])
    assert list(archive.parent.iterdir()) == []  # no partial archive, no spool directory left


# -- the IAM policy cannot drift -----------------------------------------------------------------

POLICY_BEGIN, POLICY_END = "<!-- policy:begin -->", "<!-- policy:end -->"
# Actions the policy holds although no recorded call needs them; SECURITY.md says why, after the policy.
DELIBERATE = frozenset({"s3:GetObjectVersion"})
NEVER = ("lambda:CreateFunction", "lambda:DeleteFunction", "iam:", "s3:Delete")
BUCKET, PREFIX = "drover-artifacts", "deploys"
PARAMETERS = "drover-test-parameters"


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    parameters: dict[str, Any]


@dataclass
class OperationLog:
    """Every operation drover's clients call (botocore `before-call`) with the arguments drover gave."""

    calls: list[Call] = field(default_factory=list)

    def install(self, clients: AwsClients) -> None:
        assert clients.session is not None
        clients.session.events.register("before-parameter-build.*.*", self._keep_parameters)
        clients.session.events.register("before-call.*.*", self._record)

    def _keep_parameters(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[PARAMETERS] = dict(params)

    def _record(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        self.calls.append(Call(model.service_model.service_name, model.name, context.get(PARAMETERS, {})))


def function_arn(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def layer_arn(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"


def s3_reads(location: dict[str, Any]) -> list[tuple[str, str]]:
    """Lambda reads an S3 archive with the caller's permissions: GetObject, GetObjectVersion for a version."""
    if "S3Bucket" not in location:
        return []
    resource = f"arn:aws:s3:::{location['S3Bucket']}/{location['S3Key']}"
    reads = [("s3:GetObject", resource)]
    if location.get("S3ObjectVersion"):
        reads.append(("s3:GetObjectVersion", resource))
    return reads


def iam_requests(call: Call) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs a call needs."""
    parameters = call.parameters
    if call.service == "s3":
        bucket = f"arn:aws:s3:::{parameters['Bucket']}"
        if call.operation == "GetBucketLocation":
            return [("s3:GetBucketLocation", bucket)]
        resource = f"{bucket}/{parameters['Key']}"
        if call.operation == "HeadObject":  # authorized as GetObject (GetObjectVersion with a VersionId)
            action = "s3:GetObjectVersion" if parameters.get("VersionId") else "s3:GetObject"
            return [(action, resource)]
        return [(f"s3:{call.operation}", resource)]
    assert call.service == "lambda", call
    action = f"lambda:{call.operation}"
    if "LayerName" in parameters:
        layer = layer_arn(parameters["LayerName"])
        version = parameters.get("VersionNumber")
        requests = [(action, f"{layer}:{version}" if version else layer)]
        return requests + s3_reads(parameters.get("Content", {}))
    if call.operation == "TagResource":
        return [(action, parameters["Resource"])]
    if call.operation == "ListFunctions":  # no resource-level permission exists for it
        return [(action, "*")]
    return [(action, function_arn(parameters["FunctionName"])), *s3_reads(parameters)]


def security_policy(substitutions: dict[str, str]) -> dict[str, Any]:
    """The policy JSON between the markers in SECURITY.md, with its placeholders filled in."""
    text = SECURITY.read_text(encoding="utf-8")
    block = text.split(POLICY_BEGIN, 1)[1].split(POLICY_END, 1)[0].strip()
    body = block.removeprefix("```json").removesuffix("```")
    pattern = re.compile(r"\b(" + "|".join(sorted(substitutions, key=len, reverse=True)) + r")\b")
    return json.loads(pattern.sub(lambda match: substitutions[match[1]], body))


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    return any(
        statement["Effect"] == "Allow"
        and action in statement["Action"]
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"])
        for statement in policy["Statement"]
    )


@pytest.fixture
def recorded(tmp_path: Path, infra: Infrastructure) -> tuple[list[Call], dict[str, str]]:
    """Deploy scenarios that between them call every operation drover has; returns the calls."""
    log = OperationLog()
    project = Project(tmp_path, hooks=[log.install])
    infra.function("fn")
    infra.bucket(BUCKET, versioned=True)
    extension = infra.layer("extension")
    project.stage.update(
        supplemental_layer_arns=[extension],
        upload_bucket={"region_name": REGION, "bucket_name": BUCKET, "prefix": PREFIX},
        publish=True,
        alias="live",
        keep_layer_versions=1,
    )

    def code(version: int) -> None:
        project.write("app/__init__.py", f"def handler(event, context):\n    return {version}\n")
        project.write("dep/__init__.py", f"VERSION = {version}\n")

    code(1)
    first = project.deploy()  # first deploy: S3 upload, layer, code, layers list, tags, version, alias
    assert first.function_updated and first.requirements_updated and first.version == "1"
    assert not project.deploy().actions  # no-op
    code(2)
    second = project.deploy()  # code and requirements change: alias moves, the old layer version is pruned
    assert second.version == "2" and any(action.action == "delete-layer-versions" for action in second.actions)
    code(3)
    assert not any(action.done for action in project.deploy(dry_run=True).actions)  # dry run
    code(1)
    reverted = project.deploy()  # back to the first code: its archive is already in the bucket
    assert reverted.function_updated and reverted.bytes_uploaded < (reverted.function_size or 0) + (
        reverted.requirements_size or 0
    )
    project.stage.pop("upload_bucket")
    code(4)
    assert project.deploy().function_updated  # direct upload, no bucket
    substitutions = {
        "REGION": REGION,
        "ACCOUNT": ACCOUNT,
        "FUNCTION": "fn",
        "LAYER": "fn-requirements",
        "SUPPLEMENTAL_LAYER_ARNS": extension,
        "BUCKET": BUCKET,
        "PREFIX": PREFIX,
    }
    return log.calls, substitutions


def test_the_policy_in_security_md_allows_every_call_and_nothing_more(
    recorded: tuple[list[Call], dict[str, str]],
) -> None:
    calls, substitutions = recorded
    policy = security_policy(substitutions)
    # the scenarios reach every operation drover has
    operations = Counter(call.operation for call in calls)
    assert set(operations) >= {
        "GetFunction",
        "GetLayerVersion",
        "ListLayerVersions",
        "PublishLayerVersion",
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "TagResource",
        "ListVersionsByFunction",
        "PublishVersion",
        "GetAlias",
        "CreateAlias",
        "UpdateAlias",
        "DeleteLayerVersion",
        "GetBucketLocation",
        "HeadObject",
        "PutObject",
        "ListFunctions",
    }, operations
    # every call is allowed: its action, on its resource
    requests = [request for call in calls for request in iam_requests(call)]
    refused = sorted(
        {f"{action} on {resource}" for action, resource in requests if not allowed(policy, action, resource)}
    )
    assert refused == [], "add these to SECURITY.md's policy (or stop calling them)"
    called = {action for action, _ in requests}
    assert not [action for action in called if action.startswith(NEVER)]
    # and the policy grants nothing more, except what SECURITY.md explains
    granted = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert granted - called <= DELIBERATE, "remove these from SECURITY.md's policy, or explain them there"
    after_policy = SECURITY.read_text(encoding="utf-8").split(POLICY_END, 1)[1]
    for action in DELIBERATE:
        assert f"`{action}`" in after_policy, f"SECURITY.md must say why {action} is in the policy"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(":" in action and "*" not in action for action in statement["Action"]), statement
        unscoped = statement["Action"] == ["lambda:ListFunctions"]  # IAM has no resource for it
        assert unscoped or all(resource != "*" for resource in statement["Resource"]), statement


def test_the_policy_block_is_valid_json_with_only_the_documented_placeholders() -> None:
    text = SECURITY.read_text(encoding="utf-8")
    assert text.count(POLICY_BEGIN) == text.count(POLICY_END) == 1
    block = text.split(POLICY_BEGIN, 1)[1].split(POLICY_END, 1)[0]
    placeholders = set(re.findall(r"\b[A-Z][A-Z_]{2,}\b", block)) - {"Version"}
    assert placeholders == {"REGION", "ACCOUNT", "FUNCTION", "LAYER", "SUPPLEMENTAL_LAYER_ARNS", "BUCKET", "PREFIX"}
    for placeholder in placeholders:
        assert f"`{placeholder}`" in text.split(POLICY_BEGIN, 1)[0], f"SECURITY.md must explain {placeholder}"
    json.loads(block.strip().removeprefix("```json").removesuffix("```"))
