"""The deploy engine against a real moto server: each scenario checks the live state and the write calls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from drover import UpdateError
from drover.deploy import (
    LAMBDA_RETRY_CONFIG,
    RETRY_CONFIG,
    TAG_CODE_SHA256,
    TAG_FUNCTION_DIGEST,
    AwsClients,
    client_config,
    parse_live_function,
)
from drover.errors import PreflightError
from tests.aws import REGION, Infrastructure, inject_error, zip_bytes
from tests.deploy_support import Project, assert_truthful


@pytest.fixture
def project(tmp_path: Path, infra: Infrastructure) -> Project:
    project = Project(tmp_path)
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v1'\n")
    project.write("dep/__init__.py", "VERSION = 1\n")
    infra.function(Environment={"Variables": {"OWNED_BY": "infrastructure"}}, MemorySize=256, Timeout=30)
    return project


def test_first_deploy_publishes_and_attaches_the_requirements_layer(project: Project, infra: Infrastructure) -> None:
    result = project.deploy()

    live = infra.configuration()
    assert [layer["Arn"] for layer in live["Layers"]] == [result.requirements_layer_arn]
    assert result.requirements_layer_arn.endswith(":layer:fn-requirements:1")
    assert result.function_updated and result.requirements_updated and result.configuration_updated
    assert sorted(project.writes) == sorted(
        ["PublishLayerVersion", "UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"]
    )
    assert_truthful(result, infra)
    assert live["Environment"]["Variables"] == {"OWNED_BY": "infrastructure"}
    assert (live["MemorySize"], live["Timeout"]) == (256, 30)
    assert infra.tags()[TAG_FUNCTION_DIGEST] == result.function_digest
    assert infra.tags()[TAG_CODE_SHA256] == live["CodeSha256"]
    assert result.bytes_uploaded == result.function_size + result.requirements_size


def test_second_identical_deploy_makes_no_write_call_and_builds_no_archive(
    project: Project, infra: Infrastructure
) -> None:
    first = project.deploy()
    second = project.deploy()

    assert project.writes == []
    assert project.recorder.count() == {"GetFunction": 1, "GetLayerVersion": 1}
    assert second.function_size is None and second.requirements_size is None
    assert second.actions == [] and second.bytes_uploaded == 0
    assert not (second.function_updated or second.requirements_updated or second.configuration_updated)
    assert second.code_sha256 == first.code_sha256
    assert_truthful(second, infra)


def test_code_only_change_updates_only_the_code(project: Project, infra: Infrastructure) -> None:
    first = project.deploy()
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v2'\n")

    second = project.deploy()

    assert sorted(project.writes) == ["TagResource", "UpdateFunctionCode"]
    assert second.requirements_size is None, "the requirements archive must not be rebuilt"
    assert second.requirements_layer_arn == first.requirements_layer_arn
    assert second.code_sha256 != first.code_sha256
    assert_truthful(second, infra)


def test_requirements_change_publishes_one_version_attaches_it_and_prunes(
    project: Project, infra: Infrastructure
) -> None:
    project.stage["keep_layer_versions"] = 1
    first = project.deploy()
    project.write("dep/__init__.py", "VERSION = 2\n")

    second = project.deploy()

    assert project.writes.count("PublishLayerVersion") == 1
    assert second.requirements_layer_arn.endswith(":fn-requirements:2")
    assert [layer["Arn"] for layer in infra.configuration()["Layers"]] == [second.requirements_layer_arn]
    assert [version["Version"] for version in infra.layer_versions("fn-requirements")] == [2]
    assert "DeleteLayerVersion" in project.writes
    assert not second.function_updated
    assert first.requirements_layer_arn != second.requirements_layer_arn
    assert_truthful(second, infra)


def test_an_attached_layer_version_is_never_pruned(project: Project, infra: Infrastructure) -> None:
    project.stage["keep_layer_versions"] = 1
    project.deploy()
    project.write("dep/__init__.py", "VERSION = 2\n")
    project.deploy(dry_run=True)  # nothing changes: version 1 stays attached

    assert [version["Version"] for version in infra.layer_versions("fn-requirements")] == [1]


def test_out_of_band_code_change_is_detected_and_repaired(project: Project, infra: Infrastructure) -> None:
    first = project.deploy()
    infra.client("lambda").update_function_code(FunctionName="fn", ZipFile=zip_bytes({"console.py": "edited = True"}))
    assert infra.configuration()["CodeSha256"] != first.code_sha256

    repaired = project.deploy()

    assert repaired.function_updated
    assert infra.configuration()["CodeSha256"] == first.code_sha256
    assert "PublishLayerVersion" not in project.writes


def test_lost_tags_are_rewritten_without_updating_the_code(project: Project, infra: Infrastructure) -> None:
    project.deploy()
    infra.client("lambda").untag_resource(Resource=infra.configuration()["FunctionArn"], TagKeys=[TAG_FUNCTION_DIGEST])

    result = project.deploy()

    assert project.writes == ["TagResource"]
    assert not result.function_updated
    assert result.function_size is not None, "without the tag the zip is built to compare CodeSha256"


def test_supplemental_layers_keep_their_order_before_the_requirements_layer(
    project: Project, infra: Infrastructure
) -> None:
    second, first = infra.layer("zeta-extension"), infra.layer("alpha-extension")
    project.stage["supplemental_layer_arns"] = [second, first]

    result = project.deploy()

    assert [layer["Arn"] for layer in infra.configuration()["Layers"]] == [second, first, result.requirements_layer_arn]


def test_a_layer_not_named_in_drover_yml_is_detached_with_a_warning(
    project: Project, infra: Infrastructure, caplog: pytest.LogCaptureFixture
) -> None:
    monitoring = infra.layer("monitoring-extension")
    infra.client("lambda").update_function_configuration(FunctionName="fn", Layers=[monitoring])

    with caplog.at_level(logging.WARNING, logger="drover"):
        dry = project.deploy(dry_run=True)
    assert project.writes == []
    assert any(monitoring in action.reason for action in dry.actions if action.action == "update-layers")
    assert monitoring in caplog.text

    result = project.deploy()
    assert [layer["Arn"] for layer in infra.configuration()["Layers"]] == [result.requirements_layer_arn]


def test_no_requirements_means_no_layer_and_supplemental_layers_only(project: Project, infra: Infrastructure) -> None:
    project.stage["function_file_patterns"] = [".*"]
    extension = infra.layer("extension")
    project.stage["supplemental_layer_arns"] = [extension]

    result = project.deploy()

    assert result.requirements_digest is None and result.requirements_layer_arn is None
    assert [layer["Arn"] for layer in infra.configuration()["Layers"]] == [extension]
    assert "PublishLayerVersion" not in project.writes


def test_upload_through_a_versioned_bucket_at_content_addressed_keys(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts", versioned=True)
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts", "prefix": "lambda/"}

    first = project.deploy()

    keys = sorted(item["Key"] for item in infra.client("s3").list_objects_v2(Bucket="deploy-artifacts")["Contents"])
    assert keys == sorted([f"lambda/{first.function_digest}.zip", f"lambda/{first.requirements_digest}.zip"])
    (code_update,) = project.parameters_of("UpdateFunctionCode")
    assert code_update["S3Key"] == f"lambda/{first.function_digest}.zip"
    assert code_update["S3ObjectVersion"], "a versioned bucket's object version is passed to Lambda"
    (layer,) = project.parameters_of("PublishLayerVersion")
    assert layer["Content"]["S3ObjectVersion"]
    assert_truthful(first, infra)


def test_an_archive_already_in_the_bucket_is_not_uploaded_again(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    project.deploy()
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v2'\n")
    project.deploy()
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v1'\n")

    result = project.deploy()

    assert result.function_updated
    assert "PutObject" not in project.writes
    assert result.bytes_uploaded == 0


def test_s3_failure_falls_back_to_direct_upload_with_a_warning(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    project.hooks.append(
        lambda clients: inject_error(clients, "s3", "PutObject", "AccessDenied", "no s3:PutObject for you", 403)
    )

    result = project.deploy()

    assert result.function_updated and result.requirements_updated
    assert any("no s3:PutObject for you" in warning for warning in result.warnings)
    assert "ZipFile" in project.parameters_of("UpdateFunctionCode")[0]
    assert_truthful(result, infra)


def test_s3_failure_over_the_direct_limit_is_a_clear_error(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    project.hooks.append(
        lambda clients: inject_error(clients, "s3", "PutObject", "AccessDenied", "no s3:PutObject for you", 403)
    )

    with pytest.raises(UpdateError, match=r"no s3:PutObject for you.*direct upload limit"):
        project.deploy(direct_upload_limit=10)

    assert "UpdateFunctionCode" not in project.writes


def test_an_archive_over_the_direct_limit_without_a_bucket_fails_preflight(
    project: Project, infra: Infrastructure
) -> None:
    with pytest.raises(PreflightError, match="set upload_bucket"):
        project.deploy(direct_upload_limit=10)

    assert project.writes == []


def test_runtime_mismatch_fails_preflight(project: Project, infra: Infrastructure) -> None:
    project.stage["compatible_runtime"] = "python3.11"

    with pytest.raises(PreflightError, match=r"runs python3\.12, but compatible_runtime is python3\.11"):
        project.deploy()
    assert project.writes == []


def test_architecture_mismatch_fails_preflight(project: Project, infra: Infrastructure) -> None:
    project.stage["architecture"] = "arm64"

    with pytest.raises(PreflightError, match="is x86_64, but the stage's architecture is arm64"):
        project.deploy()
    assert project.writes == []


def test_the_stage_architecture_is_given_to_the_layer(tmp_path: Path, infra: Infrastructure) -> None:
    infra.function(name="arm-fn", architecture="arm64")
    project = Project(tmp_path, stage={"function_name": "arm-fn"})
    project.write("app/__init__.py", "x = 1\n")
    project.write("dep/__init__.py", "y = 1\n")

    project.deploy()

    (layer,) = project.parameters_of("PublishLayerVersion")
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert layer["CompatibleRuntimes"] == ["python3.12"]


def test_unzipped_size_over_the_limit_fails_preflight(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import drover.workflow

    monkeypatch.setattr(drover.workflow, "UNZIPPED_LIMIT", 10)
    with pytest.raises(PreflightError, match="unzipped limit"):
        project.deploy()
    assert project.writes == []


def test_missing_function_is_a_clear_error(tmp_path: Path, infra: Infrastructure) -> None:
    project = Project(tmp_path, stage={"function_name": "absent"})
    project.write("app/__init__.py", "x = 1\n")

    with pytest.raises(
        UpdateError, match="function absent not found in region us-east-1 — fix the name or the region, or create it"
    ):
        project.deploy()
    assert project.writes == []


def test_a_bucket_in_another_region_is_refused_before_any_write(project: Project, infra: Infrastructure) -> None:
    infra.bucket("eu-artifacts", region="eu-west-1")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "eu-artifacts"}

    with pytest.raises(PreflightError, match="eu-artifacts is in eu-west-1"):
        project.deploy()
    assert project.writes == []


def test_dry_run_reports_changes_and_writes_nothing(project: Project, infra: Infrastructure) -> None:
    before = infra.configuration()

    result = project.deploy(dry_run=True)

    assert project.writes == []
    assert result.mode == "dry-run"
    assert [action.action for action in result.actions] == ["publish-layer", "update-code", "update-layers", "tag"]
    assert not any(action.done for action in result.actions)
    assert infra.configuration()["CodeSha256"] == before["CodeSha256"]
    assert infra.layer_versions("fn-requirements") == []


def test_publish_and_alias_then_an_unchanged_rerun_reuses_the_version(project: Project, infra: Infrastructure) -> None:
    project.stage["alias"] = "live"

    first = project.deploy()
    alias = infra.client("lambda").get_alias(FunctionName="fn", Name="live")
    assert first.version == "1" and alias["FunctionVersion"] == "1"
    assert first.alias_arn == alias["AliasArn"]

    second = project.deploy()
    assert second.version == "1"
    assert project.writes == []

    project.write("app/__init__.py", "def handler(event, context):\n    return 'v3'\n")
    third = project.deploy()
    assert third.version == "2"
    assert infra.client("lambda").get_alias(FunctionName="fn", Name="live")["FunctionVersion"] == "2"


def test_publish_flag_from_the_command_line(project: Project, infra: Infrastructure) -> None:
    result = project.deploy(publish=True)

    assert result.version == "1"
    versions = infra.client("lambda").list_versions_by_function(FunctionName="fn")["Versions"]
    assert [version["Version"] for version in versions] == ["$LATEST", "1"]


# -- What moto cannot do (updates in progress, conflicts, failures): botocore's Stubber -------------


def stubbed_target(stage_overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    from botocore.stub import Stubber

    from drover.deploy import AwsClients, LambdaTarget
    from drover.models import Stage
    from tests.aws import boto_session

    clients = AwsClients(REGION, session=boto_session(), sleep=lambda seconds: None)
    stubber = Stubber(clients.lambda_)
    stage = Stage(
        region_name=REGION,
        function_name="fn",
        compatible_runtime="python3.12",
        function_file_patterns=["^app"],
        **(stage_overrides or {}),
    )
    return LambdaTarget(stage, clients), stubber


def function_response(status: str, reason: str | None = None, revision: str = "r1") -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "FunctionName": "fn",
        "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:fn",
        "Runtime": "python3.12",
        "CodeSha256": "abc=",
        "CodeSize": 10,
        "State": "Active",
        "LastUpdateStatus": status,
        "RevisionId": revision,
        "Architectures": ["x86_64"],
        "PackageType": "Zip",
    }
    if reason:
        configuration["LastUpdateStatusReason"] = reason
    return {"Configuration": configuration, "Tags": {}}


def code_location(tmp_path: Path) -> Any:
    from drover.archive import ArchiveInfo
    from drover.deploy import CodeLocation

    path = tmp_path / "function.zip"
    path.write_bytes(zip_bytes({"app.py": "x = 1"}))
    return CodeLocation(ArchiveInfo(path, path.stat().st_size, "abc=", 1))  # the CodeSha256 the stubs report


def test_waits_for_an_update_in_progress_then_succeeds() -> None:
    target, stubber = stubbed_target()
    stubber.add_response("get_function", function_response("InProgress"))
    stubber.add_response("get_function", function_response("InProgress"))
    stubber.add_response("get_function", function_response("Successful"))
    with stubber:
        live = target.wait_until_updated()
    assert live.last_update_status == "Successful"
    stubber.assert_no_pending_responses()


def test_a_failed_update_is_an_update_error_quoting_lambdas_reason() -> None:
    target, stubber = stubbed_target()
    stubber.add_response("get_function", function_response("InProgress"))
    stubber.add_response(
        "get_function", function_response("Failed", reason="Unzipped size must be smaller than 262144000 bytes")
    )
    with stubber, pytest.raises(UpdateError, match="update of fn failed: Unzipped size must be smaller than 262144000"):
        target.wait_until_updated()


def test_resource_conflict_waits_for_the_other_update_and_retries(tmp_path: Path) -> None:
    target, stubber = stubbed_target()
    live = parse_live_function(function_response("Successful"))
    stubber.add_client_error("update_function_code", "ResourceConflictException", "An update is in progress", 409)
    stubber.add_response("get_function", function_response("InProgress"))
    stubber.add_response("get_function", function_response("Successful", revision="r2"))
    stubber.add_response("update_function_code", {"FunctionName": "fn", "CodeSha256": "abc="})
    stubber.add_response("get_function", function_response("Successful", revision="r3"))
    with stubber:
        updated = target.update_code(code_location(tmp_path), live)
    assert updated.revision_id == "r3"
    stubber.assert_no_pending_responses()


def test_a_revision_conflict_is_a_clear_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    target, stubber = stubbed_target()
    live = parse_live_function(function_response("Successful"))
    stubber.add_client_error(
        "update_function_code",
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id.",
        412,
        expected_params={
            "FunctionName": "fn",
            "ZipFile": code_location(tmp_path).archive.path.read_bytes(),
            "RevisionId": "r1",
        },
    )
    # drover re-reads the function: only if its own update were live (a retried request) would it go on
    other_writer = function_response("Successful", revision="r2")
    other_writer["Configuration"]["CodeSha256"] = "other-writers-code="
    stubber.add_response("get_function", other_writer)
    with stubber, pytest.raises(UpdateError, match=r"PreconditionFailedException.*changed while drover was deploying"):
        target.update_code(code_location(tmp_path), live)
    stubber.assert_no_pending_responses()


def test_persistent_conflicts_give_up_with_a_hint(tmp_path: Path) -> None:
    from drover.deploy import CONFLICT_RETRIES

    target, stubber = stubbed_target()
    live = parse_live_function(function_response("Successful"))
    for _ in range(CONFLICT_RETRIES):
        stubber.add_client_error("update_function_code", "ResourceConflictException", "busy", 409)
        stubber.add_response("get_function", function_response("Successful"))
    stubber.add_client_error("update_function_code", "ResourceConflictException", "busy", 409)
    with (
        stubber,
        pytest.raises(UpdateError, match="ResourceConflictException: busy — another update is still in progress"),
    ):
        target.update_code(code_location(tmp_path), live)


# -- drover's own clients are botocore's (no boto3 session given) ---------------------------------


def test_clients_without_a_boto3_session_read_and_download_through_botocore(infra: Infrastructure, tmp_path) -> None:
    from drover.deploy import AwsClients, LambdaTarget
    from drover.models import S3BucketFileVersion, Stage

    infra.bucket("artifacts", versioned=True)
    body = zip_bytes({"app.py": b"x = 1\n"}) * 40  # a few hundred KiB: more than one chunk of the stream
    version = infra.client("s3").put_object(Bucket="artifacts", Key="code.zip", Body=body)["VersionId"]
    infra.client("s3").put_object(Bucket="artifacts", Key="code.zip", Body=b"a later version")
    clients = AwsClients(REGION)  # the default: a botocore session, as a CLI run makes
    target = LambdaTarget(
        Stage(region_name=REGION, function_name="fn", compatible_runtime="python3.12", function_file_patterns=["^a"]),
        clients,
    )

    target.download_object(
        S3BucketFileVersion(bucket_name="artifacts", key="code.zip", version_id=version), tmp_path / "a"
    )
    target.download_object(S3BucketFileVersion(bucket_name="artifacts", key="code.zip"), tmp_path / "b")

    assert clients.session is None
    assert (tmp_path / "a").read_bytes() == body
    assert (tmp_path / "b").read_bytes() == b"a later version"
    assert clients.for_region("eu-west-1").core is clients.core


def test_retries_are_drovers_unless_botocores_own_variables_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    def retries(service: str = "lambda", **variables: str) -> dict[str, Any]:
        for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        clients = AwsClients(REGION)
        return dict((clients.lambda_ if service == "lambda" else clients.s3).meta.config.retries)

    assert client_config("lambda", {}) is LAMBDA_RETRY_CONFIG
    assert client_config("s3", {}) is RETRY_CONFIG
    assert retries() == {"mode": "adaptive", "total_max_attempts": 7}  # Lambda's rate limit: bench/scale_bench.py
    assert retries("s3") == {"mode": "standard", "total_max_attempts": 7}
    assert retries(AWS_RETRY_MODE="standard") == {"mode": "standard", "total_max_attempts": 7}
    assert retries("s3", AWS_RETRY_MODE="adaptive") == {"mode": "adaptive", "total_max_attempts": 7}
    assert retries(AWS_MAX_ATTEMPTS="3") == {"mode": "adaptive", "total_max_attempts": 3}
    assert retries("s3", AWS_MAX_ATTEMPTS="3") == {"mode": "standard", "total_max_attempts": 3}
    assert retries(AWS_RETRY_MODE="legacy", AWS_MAX_ATTEMPTS="10") == {"mode": "legacy", "total_max_attempts": 10}
    with pytest.raises(PreflightError, match="AWS_RETRY_MODE='fast' is not one of standard, adaptive, legacy"):
        client_config("lambda", {"AWS_RETRY_MODE": "fast"})
    with pytest.raises(PreflightError, match="AWS_MAX_ATTEMPTS='0' is not a whole number"):
        client_config("lambda", {"AWS_MAX_ATTEMPTS": "0"})
