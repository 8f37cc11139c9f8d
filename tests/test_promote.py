"""Promoting the exact artifact of one stage to another, against the moto server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import Drover
from drover.core import RunOptions
from drover.deploy import LAYER_DESCRIPTION_PREFIX, TAG_CODE_SHA256
from drover.errors import PreflightError, SettingsError
from drover.models import DeployResult
from drover.settings import load_settings
from drover.workflow import TAG_PROMOTED_FROM
from tests.aws import ACCOUNT, REGION, CallRecorder, Infrastructure, MotoServer, recording_clients, zip_bytes
from tests.github_fakes import run_action_process
from tests.test_multi import drover_cli

BUCKET = {"region_name": REGION, "bucket_name": "artifacts"}


def stage(function_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "region_name": REGION,
        "function_name": function_name,
        "compatible_runtime": "python3.12",
        "function_file_patterns": ["^app"],
        **extra,
    }


def project(root: Path, stages: dict[str, dict[str, Any]]) -> None:
    install = root / "install"
    (install / "lib").mkdir(parents=True)
    (install / "app.py").write_text("def handler(event, context):\n    return 'v1'\n")
    (install / "lib" / "dep.py").write_text("DEP = 1\n")
    (root / "drover.yml").write_text(yaml.safe_dump({"stages": stages}))


def deploy(root: Path, name: str, recorder: CallRecorder, **options: Any) -> DeployResult:
    recorder.clear()
    run_options = RunOptions(working_directory=root, aws=recording_clients(recorder), **options)
    return Drover(load_settings(root / "drover.yml"), name, options=run_options).update(root / "install")


def promote(root: Path, source: str, target: str, recorder: CallRecorder, **options: Any) -> DeployResult:
    recorder.clear()
    allow = options.pop("allow_untracked", False)
    settings = load_settings(root / "drover.yml")
    run_options = RunOptions(working_directory=root, aws=recording_clients(recorder), **options)
    return Drover(settings, target, options=run_options).promote(source, settings.stages[source], allow_untracked=allow)


def layer_content_sha(infra: Infrastructure, arn: str) -> tuple[str, str]:
    name, version = arn.split(":")[-2:]
    answer = infra.client("lambda").get_layer_version(LayerName=name, VersionNumber=int(version))
    return answer["Content"]["CodeSha256"], answer["Description"]


def test_promote_with_a_shared_layer_name_runs_the_same_code_and_the_same_layer_version(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(
        tmp_path,
        {
            "staging": stage("api-staging", requirements_layer_name="deps", upload_bucket=BUCKET),
            "prod": stage("api-prod", requirements_layer_name="deps", publish=True),
        },
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    source = deploy(tmp_path, "staging", recorder)

    planned = promote(tmp_path, "staging", "prod", recorder, dry_run=True)
    assert recorder.writes == []
    result = promote(tmp_path, "staging", "prod", recorder)

    target = infra.configuration("api-prod")
    assert target["CodeSha256"] == source.code_sha256 == result.code_sha256
    assert [layer["Arn"] for layer in target["Layers"]] == [source.requirements_layer_arn]
    assert "PublishLayerVersion" not in recorder.writes and "PutObject" not in recorder.writes  # nothing rebuilt
    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in result.actions]
    assert result.version == "1" and infra.tags("api-prod")[TAG_CODE_SHA256] == source.code_sha256

    again = promote(tmp_path, "staging", "prod", recorder)
    assert recorder.writes == [] and again.actions == []


def test_promote_under_another_layer_name_copies_the_layer_content_and_code_from_the_bucket(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(
        tmp_path,
        {
            "staging": stage("api-staging", upload_bucket=BUCKET),
            "prod": stage("api-prod", supplemental_layer_arns=[]),
        },
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    supplemental = infra.layer("extension")
    settings_text = yaml.safe_load((tmp_path / "drover.yml").read_text())
    settings_text["stages"]["prod"]["supplemental_layer_arns"] = [supplemental]
    (tmp_path / "drover.yml").write_text(yaml.safe_dump(settings_text))
    recorder = CallRecorder()
    source = deploy(tmp_path, "staging", recorder)
    (tmp_path / "install" / "app.py").write_text("def handler(event, context):\n    return 'v2, not promoted'\n")

    planned = promote(tmp_path, "staging", "prod", recorder, dry_run=True)
    result = promote(tmp_path, "staging", "prod", recorder)

    target = infra.configuration("api-prod")
    assert target["CodeSha256"] == source.code_sha256
    arns = [layer["Arn"] for layer in target["Layers"]]
    assert arns[0] == supplemental and ":layer:api-prod-requirements:" in arns[1]  # target's own settings
    assert source.requirements_layer_arn is not None
    source_sha, _ = layer_content_sha(infra, source.requirements_layer_arn)
    target_sha, description = layer_content_sha(infra, arns[1])
    assert target_sha == source_sha
    assert description == LAYER_DESCRIPTION_PREFIX + str(source.requirements_digest)
    assert result.requirements_digest == source.requirements_digest
    assert [a.action for a in planned.actions] == [a.action for a in result.actions]
    assert "s3://artifacts/" in planned.actions[0].reason


class _ZipServer:
    """Serves one zip over HTTP: what a pre-signed Code.Location URL is."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/code.zip?X-Amz-Signature=secret"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_untracked_source_is_refused_unless_allowed_then_copied_from_its_code_location(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    project(tmp_path, {"staging": stage("api-staging"), "prod": stage("api-prod")})
    code = zip_bytes({"app.py": "def handler(event, context):\n    return 'hand made'\n"})
    infra.function("api-staging")
    infra.client("lambda").update_function_code(FunctionName="api-staging", ZipFile=code)
    infra.function("api-prod")

    refused = drover_cli("--promote-from", "staging", "prod", cwd=tmp_path, server=aws)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert "unknown provenance" in line and "--allow-untracked-source" in line

    server = _ZipServer(code)
    recorder = CallRecorder()

    def locate(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Configuration", {}).get("FunctionName") == "api-staging":
            parsed["Code"] = {"Location": server.url, "RepositoryType": "S3"}

    try:
        settings = load_settings(tmp_path / "drover.yml")
        clients = recording_clients(recorder)
        assert clients.session is not None
        clients.session.events.register("after-call.lambda.GetFunction", locate)
        options = RunOptions(working_directory=tmp_path, aws=clients)
        result = Drover(settings, "prod", options=options).promote(
            "staging", settings.stages["staging"], allow_untracked=True
        )
    finally:
        server.stop()

    source_sha = infra.configuration("api-staging")["CodeSha256"]
    assert infra.configuration("api-prod")["CodeSha256"] == source_sha == result.code_sha256
    assert "secret" not in str(result.model_dump())


def test_a_promotion_across_architectures_is_refused_before_any_write(tmp_path: Path, infra: Infrastructure) -> None:
    project(tmp_path, {"staging": stage("api-staging"), "prod": stage("api-prod")})
    infra.function("api-staging")
    infra.function("api-prod", architecture="arm64")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)

    with pytest.raises(PreflightError, match="same runtime and architecture"):
        promote(tmp_path, "staging", "prod", recorder)
    assert recorder.writes == []


def test_the_action_promotes_with_promote_from_and_reports_the_source_code_sha(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    import json
    import os

    project(tmp_path, {"staging": stage("api-staging", upload_bucket=BUCKET), "prod": stage("api-prod")})
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    source = deploy(tmp_path, "staging", CallRecorder())
    outputs = tmp_path / "outputs"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "INPUT_STAGE": "prod",
        "INPUT_PROMOTE-FROM": "staging",
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_WORKSPACE": str(tmp_path),
    }
    action = run_action_process(env, tmp_path)

    assert action.returncode == 0, action.stderr
    text = outputs.read_text()
    assert f"code-sha256={source.code_sha256}\n" in text and "changed=true" in text
    document = json.loads(text.split("result-json<<", 1)[1].split("\n", 1)[1].rsplit("\n", 2)[0])
    assert document["stage"] == "prod" and document["requirements_digest"] == source.requirements_digest
    assert infra.configuration("api-prod")["CodeSha256"] == source.code_sha256
    assert "promoted from stage 'staging'" in action.stdout + action.stderr


def test_a_layer_whose_content_cannot_be_read_is_a_preflight_error_before_any_write(
    tmp_path: Path, infra: Infrastructure
) -> None:
    """moto's layer Location is "s3://" (real Lambda gives a pre-signed URL): with no S3 copy, nothing can be read."""
    project(tmp_path, {"staging": stage("api-staging"), "prod": stage("api-prod")})
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)

    with pytest.raises(PreflightError, match=r"cannot be read: the source stage has no upload_bucket.*share the"):
        promote(tmp_path, "staging", "prod", recorder)
    assert recorder.writes == []


def test_a_promotions_result_and_summary_say_it_was_copied_not_built_empty(
    tmp_path: Path, infra: Infrastructure
) -> None:
    from drover.report import render_summary

    project(
        tmp_path,
        {
            "staging": stage("api-staging", requirements_layer_name="deps", upload_bucket=BUCKET),
            "prod": stage("api-prod", requirements_layer_name="deps"),
        },
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)

    result = promote(tmp_path, "staging", "prod", recorder)

    assert result.promoted_from == "staging"
    rows = [line for line in render_summary(result).splitlines() if " package |" in line]
    assert len(rows) == 2 and all("0 files" not in row and "stage staging" in row for row in rows), rows


def test_a_build_deployed_after_a_promotion_no_longer_claims_to_be_promoted(
    tmp_path: Path, infra: Infrastructure
) -> None:

    project(
        tmp_path,
        {
            "staging": stage("api-staging", requirements_layer_name="deps", upload_bucket=BUCKET),
            "prod": stage("api-prod", requirements_layer_name="deps"),
        },
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)
    promote(tmp_path, "staging", "prod", recorder)
    assert infra.tags("api-prod")[TAG_PROMOTED_FROM].endswith(":function:api-staging")

    (tmp_path / "install" / "app.py").write_text("def handler(event, context):\n    return 'a hotfix built for prod'\n")
    planned = deploy(tmp_path, "prod", recorder, dry_run=True)
    built = deploy(tmp_path, "prod", recorder)

    assert infra.tags("api-prod").get(TAG_PROMOTED_FROM, "none") == "none"  # prod runs its own build now
    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in built.actions]


# -- promotion onto the same function --------------------------------------------------------------

FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:api-staging"


@pytest.mark.parametrize(("source_name", "target_name"), [("api-staging", FUNCTION_ARN), (FUNCTION_ARN, "api-staging")])
def test_a_promotion_onto_the_same_function_named_by_arn_and_by_name_is_refused_before_any_write(
    tmp_path: Path, infra: Infrastructure, source_name: str, target_name: str
) -> None:
    project(tmp_path, {"staging": stage(source_name), "prod": stage(target_name)})
    infra.function("api-staging")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)

    with pytest.raises(SettingsError) as raised:
        promote(tmp_path, "staging", "prod", recorder)

    message = str(raised.value)
    assert "stages staging and prod" in message and FUNCTION_ARN in message and "function_name" in message
    assert recorder.writes == []
    assert TAG_PROMOTED_FROM not in infra.tags("api-staging")


def test_the_cli_refuses_a_promotion_onto_the_same_function_with_exit_2(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    project(tmp_path, {"staging": stage(FUNCTION_ARN), "prod": stage("api-staging")})
    infra.function("api-staging")
    deploy(tmp_path, "staging", CallRecorder())

    refused = drover_cli("--promote-from", "staging", "prod", cwd=tmp_path, server=aws)

    assert refused.returncode == 2, refused.stderr
    [line] = refused.stderr.splitlines()
    assert "stages staging and prod" in line and "api-staging" in line


def test_stages_naming_one_function_in_one_form_are_refused_before_any_aws_call(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(tmp_path, {"staging": stage(FUNCTION_ARN), "prod": stage(FUNCTION_ARN, publish=True)})
    recorder = CallRecorder()

    with pytest.raises(SettingsError, match="stages staging and prod"):
        promote(tmp_path, "staging", "prod", recorder)
    assert recorder.calls == []


def test_a_functions_identity_is_its_region_account_and_name_whichever_form_names_it() -> None:
    from drover.models import Stage

    def identity(function_name: str, region_name: str = REGION) -> tuple[str, str | None, str]:
        return Stage.model_validate(stage(function_name, region_name=region_name)).function_identity

    assert identity(FUNCTION_ARN) == (REGION, ACCOUNT, "api-staging")
    assert identity("api-staging") == (REGION, None, "api-staging")  # the caller's account: known after reading
    assert identity(FUNCTION_ARN) != identity(FUNCTION_ARN.replace(ACCOUNT, "999999999999"))
    assert identity("api-staging") != identity("api-staging", "eu-west-1")


# -- promotion preflight: the checks a deploy makes, before any write ------------------------------


def _untracked_source(tmp_path: Path, infra: Infrastructure, target: dict[str, Any]) -> bytes:
    """A hand-made source function (code only, no layer) promoted to `target`: its code must be downloaded."""
    project(tmp_path, {"staging": stage("api-staging"), "prod": target})
    code = zip_bytes({"app.py": "def handler(event, context):\n    return 'hand made'\n"})
    infra.function("api-staging")
    infra.client("lambda").update_function_code(FunctionName="api-staging", ZipFile=code)
    infra.function("api-prod")
    return code


def _promote_untracked(tmp_path: Path, code: bytes, recorder: CallRecorder, **options: Any) -> DeployResult:
    """A promotion of the untracked source, whose code Lambda gives as a URL (served here)."""
    server = _ZipServer(code)

    def locate(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Configuration", {}).get("FunctionName") == "api-staging":
            parsed["Code"] = {"Location": server.url, "RepositoryType": "S3"}

    recorder.clear()
    try:
        settings = load_settings(tmp_path / "drover.yml")
        clients = recording_clients(recorder)
        assert clients.session is not None
        clients.session.events.register("after-call.lambda.GetFunction", locate)
        run_options = RunOptions(working_directory=tmp_path, aws=clients, **options)
        return Drover(settings, "prod", options=run_options).promote(
            "staging", settings.stages["staging"], allow_untracked=True
        )
    finally:
        server.stop()


MISSING_BUCKET = {"region_name": REGION, "bucket_name": "no-such-bucket"}


def test_a_copy_over_the_direct_limit_with_a_missing_upload_bucket_fails_preflight_before_any_write(
    tmp_path: Path, infra: Infrastructure
) -> None:
    code = _untracked_source(tmp_path, infra, stage("api-prod", upload_bucket=MISSING_BUCKET))
    recorder = CallRecorder()

    with pytest.raises(PreflightError, match=r"'no-such-bucket', which does not exist, and function\.zip .* limit"):
        _promote_untracked(tmp_path, code, recorder, direct_upload_limit=10)
    assert recorder.writes == []


def test_a_copy_over_the_direct_limit_without_an_upload_bucket_fails_preflight_before_any_write(
    tmp_path: Path, infra: Infrastructure
) -> None:
    code = _untracked_source(tmp_path, infra, stage("api-prod"))
    recorder = CallRecorder()

    with pytest.raises(PreflightError, match="direct upload limit — set upload_bucket"):
        _promote_untracked(tmp_path, code, recorder, direct_upload_limit=10)
    assert recorder.writes == []


def test_a_copy_with_a_missing_upload_bucket_is_uploaded_directly_as_a_deploy_would(
    tmp_path: Path, infra: Infrastructure
) -> None:
    code = _untracked_source(tmp_path, infra, stage("api-prod", upload_bucket=MISSING_BUCKET))
    recorder = CallRecorder()

    planned = _promote_untracked(tmp_path, code, recorder, dry_run=True)
    assert recorder.writes == []
    result = _promote_untracked(tmp_path, code, recorder)

    assert "PutObject" not in recorder.writes  # the missing bucket was known before the copy was uploaded
    assert any("'no-such-bucket', which does not exist (uploading directly instead)" in w for w in result.warnings)
    assert infra.configuration("api-prod")["CodeSha256"] == infra.configuration("api-staging")["CodeSha256"]
    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in result.actions]


# -- keep_layer_versions after a promotion ---------------------------------------------------------


def test_keep_layer_versions_prunes_the_targets_layer_after_a_promotion_publishes_a_copy(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(
        tmp_path,
        {"staging": stage("api-staging", upload_bucket=BUCKET), "prod": stage("api-prod", keep_layer_versions=1)},
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    attached_elsewhere = infra.layer("api-prod-requirements")
    infra.layer("api-prod-requirements")
    infra.function("other", Layers=[attached_elsewhere])
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)

    planned = promote(tmp_path, "staging", "prod", recorder, dry_run=True)
    assert recorder.writes == []
    result = promote(tmp_path, "staging", "prod", recorder)

    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in result.actions]
    assert ("delete-layer-versions", "api-prod-requirements") in [(a.action, a.target) for a in result.actions]
    remaining = [version["LayerVersionArn"] for version in infra.layer_versions("api-prod-requirements")]
    assert sorted(remaining) == sorted([attached_elsewhere, str(result.requirements_layer_arn)])
    assert [layer["Arn"] for layer in infra.configuration("api-prod")["Layers"]] == [result.requirements_layer_arn]


def test_keep_layer_versions_of_a_target_sharing_the_sources_layer_is_not_applied_and_says_why(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(
        tmp_path,
        {
            "staging": stage("api-staging", requirements_layer_name="deps", upload_bucket=BUCKET),
            "prod": stage("api-prod", requirements_layer_name="deps", keep_layer_versions=1),
        },
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)
    (tmp_path / "install" / "lib" / "dep.py").write_text("DEP = 2\n")
    deploy(tmp_path, "staging", recorder)
    assert len(infra.layer_versions("deps")) == 2

    planned = promote(tmp_path, "staging", "prod", recorder, dry_run=True)
    result = promote(tmp_path, "staging", "prod", recorder)

    assert "DeleteLayerVersion" not in recorder.writes and len(infra.layer_versions("deps")) == 2
    for run in (planned, result):
        [warning] = [warning for warning in run.warnings if "keep_layer_versions" in warning]
        assert "not applied" in warning and "deps" in warning and "staging" in warning
    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in result.actions]
