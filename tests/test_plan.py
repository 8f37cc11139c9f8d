"""One plan, two uses: the dry run lists exactly the steps the deploy then applies, and a rerun does nothing.

Each scenario brings the moto server's function into some state (usually: deployed once, then
something changed in the package, in drover.yml or behind drover's back), then:
1. a dry run writes nothing and lists its steps (kind + target);
2. the real deploy applies exactly those steps, in that order, all done;
3. the steps are the ones the scenario expects (so the comparison cannot pass vacuously);
4. a second dry run and a second deploy list and do nothing.

Then what lands is verified: objects at the content-addressed key, Lambda's CodeSha256 answers,
and the configuration errors AWS reveals before any write.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drover import UpdateError
from drover.deploy import TAG_FUNCTION_DIGEST, MissingCredentials
from drover.errors import PreflightError
from drover.models import DeployResult
from tests.aws import REGION, Infrastructure, zip_bytes
from tests.deploy_support import Project, assert_truthful

ROOT = Path(__file__).resolve().parent.parent
V2_CODE = "def handler(event, context):\n    return 'v2'\n"
V1_CODE = "def handler(event, context):\n    return 'v1'\n"
FIRST = ["publish-layer", "update-code", "update-layers", "tag"]

Setup = Callable[[Project, Infrastructure], None]


@pytest.fixture
def project(tmp_path: Path, infra: Infrastructure) -> Project:
    project = Project(tmp_path)
    project.write("app/__init__.py", V1_CODE)
    project.write("dep/__init__.py", "VERSION = 1\n")
    infra.function(Environment={"Variables": {"OWNED_BY": "infrastructure"}}, MemorySize=256)
    return project


def deployed(project: Project, infra: Infrastructure) -> None:
    project.deploy()


def code_changed(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    project.write("app/__init__.py", V2_CODE)


def layer_changed(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    project.write("dep/__init__.py", "VERSION = 2\n")


def both_changed(project: Project, infra: Infrastructure) -> None:
    layer_changed(project, infra)
    project.write("app/__init__.py", V2_CODE)


def publish_turned_on(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    project.stage["publish"] = True


def alias_moved_elsewhere(project: Project, infra: Infrastructure) -> None:
    """Versions 1 and 2 exist; someone points the alias back at 1: drover moves it to 2 (reused, not republished)."""
    code_changed(project, infra)
    project.deploy()
    infra.client("lambda").update_alias(FunctionName="fn", Name="live", FunctionVersion="1")


def weighted_alias(project: Project, infra: Infrastructure) -> None:
    """The alias points at 2 but sends half its traffic to 1: not what drover says it deployed."""
    code_changed(project, infra)
    project.deploy()
    infra.client("lambda").update_alias(
        FunctionName="fn", Name="live", FunctionVersion="2", RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}}
    )


def rolled_back(project: Project, infra: Infrastructure) -> None:
    """v1 (version 1), v2 (version 2), then the package goes back to v1: version 1 is reused, the alias moves."""
    code_changed(project, infra)
    project.deploy()
    project.write("app/__init__.py", V1_CODE)


def layer_attached_elsewhere(project: Project, infra: Infrastructure) -> None:
    """Another function (another stage sharing the layer name) uses version 1: it must survive pruning."""
    result = project.deploy()
    infra.function(name="other-stage")
    infra.client("lambda").update_function_configuration(
        FunctionName="other-stage", Layers=[str(result.requirements_layer_arn)]
    )
    project.write("dep/__init__.py", "VERSION = 2\n")


def supplemental_added(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    project.stage["supplemental_layer_arns"] = [infra.layer("extension")]


def supplemental_removed(project: Project, infra: Infrastructure) -> None:
    project.stage["supplemental_layer_arns"] = [infra.layer("extension")]
    project.deploy()
    project.stage["supplemental_layer_arns"] = []


def foreign_layer(project: Project, infra: Infrastructure) -> None:
    result = project.deploy()
    monitoring = infra.layer("monitoring-extension")
    infra.client("lambda").update_function_configuration(
        FunctionName="fn", Layers=[monitoring, str(result.requirements_layer_arn)]
    )


def drifted_code(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    infra.client("lambda").update_function_code(FunctionName="fn", ZipFile=zip_bytes({"console.py": "edited = 1\n"}))


def lost_tags(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    arn = infra.configuration()["FunctionArn"]
    infra.client("lambda").untag_resource(Resource=arn, TagKeys=[TAG_FUNCTION_DIGEST])


def through_a_bucket(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts", versioned=True)
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}


def nothing(project: Project, infra: Infrastructure) -> None:
    pass


@dataclass(frozen=True)
class Scenario:
    setup: Setup
    expect: list[str]  # the kinds of the steps, in order
    stage: dict[str, Any] = field(default_factory=dict)
    then: Callable[[DeployResult, Infrastructure], None] | None = None


def alias_serves_only(version: str) -> Callable[[DeployResult, Infrastructure], None]:
    def check(result: DeployResult, infra: Infrastructure) -> None:
        alias = infra.client("lambda").get_alias(FunctionName="fn", Name="live")
        assert alias["FunctionVersion"] == version and result.version == version
        assert not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")

    return check


def layer_versions(*expected: int) -> Callable[[DeployResult, Infrastructure], None]:
    def check(result: DeployResult, infra: Infrastructure) -> None:
        assert sorted(version["Version"] for version in infra.layer_versions("fn-requirements")) == list(expected)

    return check


def published(version: str, new: bool) -> Callable[[DeployResult, Infrastructure], None]:
    def check(result: DeployResult, infra: Infrastructure) -> None:
        assert (result.version, result.version_published) == (version, new)

    return check


ALIAS = {"alias": "live"}
SCENARIOS = {
    "first-deploy": Scenario(nothing, FIRST),
    "unchanged": Scenario(deployed, []),
    "code-only": Scenario(code_changed, ["update-code", "tag"]),
    "layer-only": Scenario(layer_changed, ["publish-layer", "update-layers", "tag"]),
    "code-and-layer": Scenario(both_changed, FIRST),
    "publish": Scenario(nothing, [*FIRST, "publish-version"], {"publish": True}, published("1", True)),
    "publish-turned-on-unchanged": Scenario(publish_turned_on, ["publish-version"], {}, published("1", True)),
    "publish-alias-unchanged": Scenario(lambda project, infra: project.deploy(), [], ALIAS, published("1", False)),
    "publish-alias-code-changed": Scenario(
        code_changed, ["update-code", "tag", "publish-version", "point-alias"], ALIAS, alias_serves_only("2")
    ),
    "alias-moved-elsewhere": Scenario(alias_moved_elsewhere, ["point-alias"], ALIAS, alias_serves_only("2")),
    "weighted-alias": Scenario(weighted_alias, ["point-alias"], ALIAS, alias_serves_only("2")),
    "rollback-reuses-a-version": Scenario(
        rolled_back, ["update-code", "tag", "point-alias"], ALIAS, alias_serves_only("1")
    ),
    "prune": Scenario(
        layer_changed,
        ["publish-layer", "update-layers", "tag", "delete-layer-versions"],
        {"keep_layer_versions": 1},
        layer_versions(2),
    ),
    "prune-spares-a-version-attached-elsewhere": Scenario(
        layer_attached_elsewhere,
        ["publish-layer", "update-layers", "tag"],
        {"keep_layer_versions": 1},
        layer_versions(1, 2),
    ),
    "supplemental-layer-added": Scenario(supplemental_added, ["update-layers"]),
    "supplemental-layer-removed": Scenario(supplemental_removed, ["update-layers"]),
    "foreign-layer-present": Scenario(foreign_layer, ["update-layers"]),
    "drifted-code": Scenario(drifted_code, ["update-code"]),
    "lost-tags": Scenario(lost_tags, ["tag"]),
    "through-a-bucket": Scenario(through_a_bucket, FIRST),
}


def steps(result: DeployResult) -> list[tuple[str, str]]:
    return [(action.action, action.target) for action in result.actions]


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_the_dry_run_lists_exactly_what_the_deploy_does_and_a_rerun_does_nothing(
    project: Project, infra: Infrastructure, scenario: Scenario
) -> None:
    project.stage.update(scenario.stage)
    scenario.setup(project, infra)

    dry = project.deploy(dry_run=True)
    assert project.writes == [], "a dry run writes nothing"
    assert not any(action.done for action in dry.actions)
    real = project.deploy()

    assert steps(real) == steps(dry), "the dry run listed other steps than the deploy applied"
    assert [kind for kind, _ in steps(real)] == scenario.expect
    assert all(action.done for action in real.actions)
    assert real.changed == bool(scenario.expect)
    assert_truthful(real, infra)
    if scenario.then:
        scenario.then(real, infra)
    assert project.deploy(dry_run=True).actions == []
    again = project.deploy()
    assert project.writes == [] and again.actions == [], f"a rerun should do nothing: {steps(again)}"
    assert again.version == real.version and not again.version_published


def test_a_weighted_alias_is_named_in_a_warning(project: Project, infra: Infrastructure) -> None:
    project.stage.update(ALIAS)
    weighted_alias(project, infra)

    result = project.deploy(dry_run=True)

    assert any("version 1: 50%" in warning and "removes those weights" in warning for warning in result.warnings)


# -- what lands is verified ------------------------------------------------------------------------


def package_sha256(project: Project) -> tuple[str, str]:
    """(function digest, CodeSha256) of the function zip drover builds for the current tree."""
    result = project.deploy(package_only=True, archive_dir=project.root / "expected")
    assert result.function_archive is not None and result.function_digest is not None
    data = Path(result.function_archive).read_bytes()
    return result.function_digest, base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize(
    ("checksum", "warning"),
    [("SHA256", "holds other bytes than function.zip"), ("CRC32", "has no SHA-256 checksum S3 verified")],
)
def test_a_planted_object_at_the_content_key_is_detected_and_replaced(
    project: Project, infra: Infrastructure, checksum: str, warning: str
) -> None:
    """Same key, same metadata, other bytes (with S3's SHA-256 of those bytes, or with none)."""
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    digest, sha256 = package_sha256(project)
    planted = zip_bytes({"app/__init__.py": "def handler(event, context):\n    return 'pwned'\n"})
    s3 = infra.client("s3")
    s3.put_object(
        Bucket="deploy-artifacts",
        Key=f"{digest}.zip",
        Body=planted,
        Metadata={"code-sha256": sha256},
        ChecksumAlgorithm=checksum,
    )

    result = project.deploy()

    assert infra.configuration()["CodeSha256"] == sha256, "drover's code runs, not the planted bytes"
    assert project.writes.count("PutObject") == 2, "both archives uploaded, the planted one replaced"
    head = s3.head_object(Bucket="deploy-artifacts", Key=f"{digest}.zip", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256
    assert any(f"{digest}.zip {warning}" in text for text in result.warnings), result.warnings
    (put,) = [params for params in project.parameters_of("PutObject") if params["Key"] == f"{digest}.zip"]
    assert put["ChecksumSHA256"] == sha256, "S3 is given the SHA-256 to verify"
    project.deploy()
    assert project.writes == []


def test_an_object_with_the_archives_checksum_is_reused(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    project.deploy()
    project.write("app/__init__.py", V2_CODE)
    project.deploy()
    project.write("app/__init__.py", V1_CODE)

    result = project.deploy()

    assert result.function_updated and "PutObject" not in project.writes and result.bytes_uploaded == 0


def forge(operation: str, rewrite: Callable[[dict[str, Any]], None]) -> Callable[[Any], None]:
    """An after-call hook changing what Lambda answered to drover's clients."""

    def hook(clients: Any) -> None:
        def after(parsed: dict[str, Any], **_: Any) -> None:
            rewrite(parsed)

        clients.session.events.register(f"after-call.lambda.{operation}", after)

    return hook


def test_a_code_sha256_that_differs_from_the_archive_fails_the_run_and_tags_nothing(
    project: Project, infra: Infrastructure
) -> None:
    _, sha256 = package_sha256(project)
    project.hooks.append(forge("UpdateFunctionCode", lambda parsed: parsed.update(CodeSha256="Zm9yZ2Vk")))

    with pytest.raises(
        UpdateError, match="Lambda reports CodeSha256 Zm9yZ2Vk, but the archive drover built has " + re.escape(sha256)
    ):
        project.deploy()

    assert "TagResource" not in project.writes
    assert TAG_FUNCTION_DIGEST not in infra.tags()


def test_a_layer_whose_code_sha256_differs_fails_before_it_is_attached(project: Project, infra: Infrastructure) -> None:
    project.hooks.append(forge("PublishLayerVersion", lambda parsed: parsed["Content"].update(CodeSha256="b3RoZXI=")))

    with pytest.raises(
        UpdateError, match=r"PublishLayerVersion of .*fn-requirements:1: Lambda reports CodeSha256 b3RoZXI="
    ):
        project.deploy()

    assert project.writes == ["PublishLayerVersion"]


def test_an_object_that_vanishes_before_lambda_reads_it_is_caught(project: Project, infra: Infrastructure) -> None:
    """moto (like a bucket lifecycle rule or another writer) leaves Lambda with other code: CodeSha256 says so."""
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    s3 = infra.client("s3")

    def delete_after_put(clients: Any) -> None:
        def after(params: dict[str, Any], **_: Any) -> None:
            s3.delete_object(Bucket=params["S3Bucket"], Key=params["S3Key"])

        clients.session.events.register("before-parameter-build.lambda.UpdateFunctionCode", after)

    project.hooks.append(delete_after_put)

    with pytest.raises(
        UpdateError, match=r"Lambda reports CodeSha256 .* but the archive drover built has .* s3://deploy-artifacts/"
    ):
        project.deploy()
    assert "TagResource" not in project.writes


# -- configuration AWS reveals: exit 2, before any write ------------------------------------------


def test_a_missing_bucket_falls_back_to_a_direct_upload_with_a_warning(project: Project, infra: Infrastructure) -> None:
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "no-such-bucket"}

    result = project.deploy()

    assert result.function_updated and "PutObject" not in project.writes
    assert any("'no-such-bucket', which does not exist (uploading directly instead)" in w for w in result.warnings)
    again = project.deploy()
    assert any("nothing needed uploading" in warning for warning in again.warnings), "noticed on a no-op run too"


def test_a_missing_bucket_with_a_large_archive_is_a_preflight_error(project: Project, infra: Infrastructure) -> None:
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "no-such-bucket"}

    with pytest.raises(
        PreflightError, match=r"upload_bucket.bucket_name is 'no-such-bucket', which does not exist.*create bucket"
    ) as raised:
        project.deploy(direct_upload_limit=10)
    assert raised.value.exit_code == 2 and project.writes == []


def test_a_supplemental_layer_that_does_not_exist_is_a_preflight_error(project: Project, infra: Infrastructure) -> None:
    missing = f"arn:aws:lambda:{REGION}:123456789012:layer:never-published:3"
    project.stage["supplemental_layer_arns"] = [missing]

    with pytest.raises(PreflightError, match=rf"supplemental_layer_arns: {missing} does not exist") as raised:
        project.deploy()
    assert raised.value.exit_code == 2 and project.writes == []


def test_no_credentials_is_a_configuration_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    from drover import Drover, RunOptions
    from drover.deploy import AwsClients
    from drover.settings import load_settings

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project.root / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project.root / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = RunOptions(working_directory=project.root, aws=AwsClients(REGION, session=boto3.Session()))

    with pytest.raises(MissingCredentials, match="no AWS credentials found") as raised:
        Drover(load_settings(project.write_settings()), "test", options=options).update(project.install)
    assert raised.value.exit_code == 2


def test_the_dry_run_warns_about_a_foreign_layer_it_would_detach(
    project: Project, infra: Infrastructure, caplog: pytest.LogCaptureFixture
) -> None:
    foreign_layer(project, infra)
    with caplog.at_level(logging.WARNING, logger="drover"):
        result = project.deploy(dry_run=True)
    assert "monitoring-extension" in caplog.text
    assert any("detaches" in action.reason for action in result.actions)


# -- the shape of the code -------------------------------------------------------------------------


def imports_of(path: Path) -> set[str]:
    """The drover modules a module imports (anywhere in it, type-checking imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drover"):
            names.add(node.module)
            names.update(f"drover.{alias.name}" for alias in node.names if node.module == "drover")
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("drover"))
    return names


def module_graph() -> dict[str, set[str]]:
    """drover's modules and the drover modules each imports; a package's modules (drover/install/*.py) are in it
    too, an import of a package standing for an import of its __init__ (it runs first)."""
    modules = {}
    for path in sorted((ROOT / "drover").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "drover":
            modules[name] = path
    return {name: imports_of(path) & set(modules) - {name} for name, path in modules.items()}


def test_drover_modules_import_each_other_without_a_cycle() -> None:
    graph = module_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert {"drover.install", "drover.install.plan", "drover.install.target"} <= set(graph), "the install package too"
    assert "drover.cli" not in graph["drover.github"], "the Action adapter does not import the CLI adapter"
    assert "drover.core" not in graph["drover.workflow"], "the workflow gets an archive builder, not the Drover"
    for adapter in ("drover.cli", "drover.github"):
        importers = {module for module, imported in graph.items() if adapter in imported} - {"drover.__main__"}
        assert not importers, f"{sorted(importers)} import the adapter {adapter}"


def test_only_deploy_py_touches_botocore() -> None:
    for path in (ROOT / "drover").rglob("*.py"):
        if path.relative_to(ROOT).as_posix() == "drover/deploy.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(name.split(".")[0] in {"boto3", "botocore"} for name in names), path.name
    deploy = (ROOT / "drover" / "deploy.py").read_text()
    handlers = [node for node in ast.walk(ast.parse(deploy)) if isinstance(node, ast.ExceptHandler)]
    botocore_handlers = [node for node in handlers if node.type is not None and "botocore" in ast.unparse(node.type)]
    assert len({id(node) for node in botocore_handlers}) == 3, "one boundary: aws_call's three handlers"


def test_a_misspelt_aws_parameter_fails_mypy(tmp_path: Path) -> None:
    """The clients are typed with the boto3 stubs: mypy --strict catches a parameter name AWS would refuse."""
    import subprocess
    import sys

    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from drover.deploy import AwsClients\n\n\n"
        "def deploy(clients: AwsClients) -> None:\n"
        '    clients.lambda_.update_function_code(FunctionName="fn", ZipFile=b"")\n'
        '    clients.lambda_.update_function_code(FunctionNme="fn", ZipFile=b"")\n'
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert errors and all("snippet.py:6:" in line for line in errors), checked.stdout
    assert "FunctionNme" in checked.stdout
