# ruff: noqa: F811  (the offline-wheelhouse fixtures of test_install are imported and requested by name)
"""Trust only what AWS computed: a layer version is reused, adopted, audited or promoted on its content (Lambda's
Content.CodeSha256, S3's stored SHA-256), never on a description or tag that anyone with write rights on the same
names can write; anything destructive is rechecked right before it happens."""

from __future__ import annotations

import ast
import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from drover import workflow
from drover.deploy import LambdaTarget, layer_description, parse_layer_description
from drover.errors import UpdateError
from tests.aws import CallRecorder, Infrastructure, zip_bytes
from tests.deploy_support import Project
from tests.test_dependency_key import cold_project, deployed, fresh_runner  # noqa: F401
from tests.test_install import caches, offline, wheelhouse  # noqa: F401
from tests.test_promote import BUCKET, deploy, layer_content_sha, project, promote, stage

ROOT = Path(__file__).resolve().parent.parent
OTHER_BYTES = zip_bytes({"python/evil.py": "STOLEN = True\n"})


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def publish_forgery(infra: Infrastructure, layer_name: str, description: str, content: bytes = OTHER_BYTES) -> str:
    """What a co-tenant with lambda:PublishLayerVersion on the same name can do: any bytes, any description."""
    return str(
        infra.client("lambda").publish_layer_version(
            LayerName=layer_name,
            Description=description,
            Content={"ZipFile": content},
            CompatibleRuntimes=["python3.12"],
        )["LayerVersionArn"]
    )


@pytest.fixture
def tree(tmp_path: Path, infra: Infrastructure) -> Project:
    infra.function("fn")
    project = Project(tmp_path)
    project.write("app/__init__.py", "def handler(event, context):\n    return 1\n")
    project.write("dep/__init__.py", "VERSION = 1\n")
    return project


def test_a_version_whose_description_claims_this_digest_but_holds_other_bytes_is_never_attached(
    tree: Project, infra: Infrastructure
) -> None:
    digest = tree.deploy(package_only=True).requirements_digest
    assert digest is not None
    forged = publish_forgery(infra, "fn-requirements", layer_description(digest))

    result = tree.deploy()

    attached = [layer["Arn"] for layer in infra.configuration()["Layers"]]
    assert forged not in attached and result.requirements_layer_arn in attached
    assert result.requirements_layer_arn != forged
    assert any(forged in warning and "not used" in warning for warning in result.warnings), result.warnings
    published = [action for action in result.actions if action.action == "publish-layer"]
    assert published and published[0].done
    own_sha, _ = layer_content_sha(infra, str(result.requirements_layer_arn))
    assert own_sha != sha256_b64(OTHER_BYTES)
    again = tree.deploy()  # the forgery is still there: reported again, never adopted
    assert not again.changed and again.requirements_layer_arn == result.requirements_layer_arn


def test_an_attached_forgery_with_this_digest_and_key_fails_the_audit_naming_both_sha256s(
    deployed: Project, infra: Infrastructure
) -> None:
    description = infra.layer_versions("fn-requirements")[-1]["Description"]
    digest, key = parse_layer_description(description)
    assert digest is not None and key is not None
    forged = publish_forgery(infra, "fn-requirements", layer_description(digest, key))
    infra.client("lambda").update_function_configuration(FunctionName="fn", Layers=[forged])
    fresh_runner(deployed)

    with pytest.raises(UpdateError, match="dependency key audit failed") as caught:
        deployed.deploy(requirements=deployed.root / "requirements.txt", verify_dependencies=True)

    message = str(caught.value)
    assert forged in message and sha256_b64(OTHER_BYTES) in message and "\n" not in message
    assert deployed.writes == []
    fresh_runner(deployed)  # without the audit the attached layer is trusted as what runs, and the output says so
    trusted = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert trusted.install is not None and trusted.install.skip_reason is not None
    assert forged in trusted.install.skip_reason and "not rebuilt" in trusted.install.skip_reason


def test_a_promotion_copies_the_layer_the_source_runs_not_the_one_its_tags_name(
    tmp_path: Path, infra: Infrastructure
) -> None:
    project(
        tmp_path,
        {"staging": stage("api-staging", upload_bucket=BUCKET), "prod": stage("api-prod", upload_bucket=BUCKET)},
    )
    infra.bucket("artifacts")
    infra.function("api-staging")
    infra.function("api-prod")
    recorder = CallRecorder()
    deploy(tmp_path, "staging", recorder)
    first = promote(tmp_path, "staging", "prod", recorder)
    assert first.requirements_layer_arn is not None
    # behind drover's back (the console): the source now runs other requirements, its tags unchanged
    claimed = "e" * 64
    infra.client("s3").put_object(
        Bucket="artifacts", Key=f"{claimed}.zip", Body=OTHER_BYTES, ChecksumAlgorithm="SHA256"
    )
    swapped = str(
        infra.client("lambda").publish_layer_version(
            LayerName="api-staging-requirements",
            Description=layer_description(claimed),
            Content={"S3Bucket": "artifacts", "S3Key": f"{claimed}.zip"},
            CompatibleRuntimes=["python3.12"],
        )["LayerVersionArn"]
    )
    infra.client("lambda").update_function_configuration(FunctionName="api-staging", Layers=[swapped])

    result = promote(tmp_path, "staging", "prod", recorder)

    target_layers = [layer["Arn"] for layer in infra.configuration("api-prod")["Layers"]]
    assert len(target_layers) == 1
    target_sha, _ = layer_content_sha(infra, target_layers[0])
    assert target_sha == sha256_b64(OTHER_BYTES)  # what the source runs
    assert result.source_layer_arns == [swapped]
    assert any("promoting what it runs" in warning for warning in result.warnings), result.warnings


def test_a_version_attached_between_planning_and_pruning_is_kept(
    tree: Project, infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.stage["keep_layer_versions"] = 1
    first = tree.deploy()
    tree.write("dep/__init__.py", "VERSION = 2\n")
    infra.function("other")
    original = workflow.PruneLayerVersions.apply

    def attach_first(self: workflow.PruneLayerVersions, deployment: workflow.Deployment) -> str:
        # a concurrent matrix job attaches the old version after this run planned to delete it
        infra.client("lambda").update_function_configuration(
            FunctionName="other", Layers=[str(first.requirements_layer_arn)]
        )
        return original(self, deployment)

    monkeypatch.setattr(workflow.PruneLayerVersions, "apply", attach_first)

    second = tree.deploy()

    versions = [int(version["Version"]) for version in infra.layer_versions("fn-requirements")]
    assert 1 in versions, "a version in use was deleted"
    assert any("attached to a function after this run planned" in warning for warning in second.warnings)
    prune = [action for action in second.actions if action.action == "delete-layer-versions"]
    assert prune and "kept [1]" in prune[0].reason


def test_convergence_adopts_only_a_lower_version_with_the_same_content(
    tree: Project, infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = tree.deploy(package_only=True).requirements_digest
    assert digest is not None
    original = LambdaTarget.publish_layer
    forgeries: list[str] = []

    def forge_first(self: LambdaTarget, *args: Any, **kwargs: Any) -> Any:
        # published between drover's lookup and its own publish, with drover's description and other bytes
        forgeries.append(publish_forgery(infra, "fn-requirements", layer_description(digest)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LambdaTarget, "publish_layer", forge_first)

    result = tree.deploy()

    assert forgeries and result.requirements_layer_arn not in forgeries
    assert [layer["Arn"] for layer in infra.configuration()["Layers"]] == [result.requirements_layer_arn]
    assert len(infra.layer_versions("fn-requirements")) == 2  # nothing of drover's deleted for a forgery


# -- where descriptions and tags are read: each reader paired with a content check, or display only ------------

CLAIM_READERS = {
    # (module, function): why reading a description or tag there cannot make drover trust content it did not check
    ("deploy", "find_layer_version"): "lookup: a candidate counts only when Lambda's CodeSha256 equals the archive's; "
    "the attached version is what the function runs",
    ("deploy", "converge_layer"): "lookup: a lower version is adopted only when its CodeSha256 is the published one's",
    ("deploy", "claimed_digest"): "the accessor itself",
    ("deploy", "claimed_dependency_key"): "the accessor itself",
    ("core", "_layer_recording"): "the dependency key of the attached layer: what the function runs (trusted, said in "
    "install.skip_reason); --no-dependency-key audits it by content",
    ("pipeline", "_recorded_key"): "label: the key written beside a layer kept by content (the install path's record)",
    ("pipeline", "_package"): "label: the requirements digest reported for a kept layer",
    ("workflow", "requirements_digest"): "label: the digest tag written for a kept (attached) layer",
    ("workflow", "read_source"): "label for the copy; the copy is checked by the source layer's CodeSha256",
    ("workflow", "_plan_code"): "tags let an unchanged function skip building its zip only when the tagged CodeSha256 "
    "is the live CodeSha256 Lambda computed",
    ("workflow", "_desired_tags"): "compares tags to write only the ones that differ",
    ("pipeline", "_install_group"): "hands each function's tags to core._layer_recording (classified above)",
    ("pipeline", "_keep_recorded_layer"): "label: the key beside a layer the install path's record names, kept only "
    "when its CodeSha256 is the recorded one",
    ("workflow", "_plan_layers"): "display: whether to word the detach of an earlier requirements layer as a "
    "replacement (the layers attached are decided by the stage's settings)",
    ("workflow", "plan_rollback"): "--rollback: the version drover recorded (drover:rollout-from) to move the alias "
    "back to; moving an alias to a version of the same function is the user's explicit request",
    ("workflow", "apply"): "Tag.apply writes the tags its step carries; nothing is read from AWS",
    ("workflow", "plan_promotion"): "compares tags to write only the ones that differ; the source's key is a label",
}


def claim_readers() -> set[tuple[str, str]]:
    """Every function of drover that reads a layer description's claims or a function's tags."""
    found: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "drover").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                reads_claim = isinstance(node, ast.Attribute) and node.attr in {
                    "claimed_digest",
                    "claimed_dependency_key",
                    "tags",
                }
                parses = isinstance(node, ast.Name) and node.id == "parse_layer_description"
                if (reads_claim and isinstance(node.ctx, ast.Load)) or parses:
                    found.add((path.stem, function.name))
    return found


def test_every_reader_of_descriptions_and_tags_is_paired_with_a_content_check_or_only_labels() -> None:
    readers = claim_readers()
    unclassified = sorted(readers - set(CLAIM_READERS))
    assert unclassified == [], f"classify these readers of descriptions/tags in CLAIM_READERS: {unclassified}"
    stale = sorted(set(CLAIM_READERS) - readers)
    assert stale == [], f"these no longer read descriptions or tags; drop them from CLAIM_READERS: {stale}"


def test_the_claim_reader_scan_sees_a_new_reader(tmp_path: Path) -> None:
    """The scan is not vacuous: a function reading a claim is found."""
    sample = "def reuse(layer):\n    return layer.claimed_digest\n"
    tree = ast.parse(sample)
    names = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(child, ast.Attribute) and child.attr == "claimed_digest" for child in ast.walk(node))
    }
    assert names == {"reuse"}
    assert ("deploy", "find_layer_version") in claim_readers()
