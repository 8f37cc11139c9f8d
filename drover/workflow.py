"""The deploy workflow: small steps from a package plan to a live function that runs it.

1. read the live function (waiting out an update in progress);
2. decide, from digests, what differs: requirements layer, function code, layers list, tags;
3. build only the archives that must be uploaded;
4. preflight every limit before any write;
5. apply in an order a rerun can always finish: layer, code, configuration, tags, version, alias, prune.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from drover.archive import ArchiveInfo
from drover.core import FUNCTION_ARCHIVE, REQUIREMENTS_ARCHIVE, record_archive
from drover.deploy import (
    S3_FAILURES,
    TAG_CODE_SHA256,
    TAG_FUNCTION_DIGEST,
    TAG_REQUIREMENTS_DIGEST,
    AwsClients,
    CodeLocation,
    LambdaTarget,
    LiveFunction,
    s3_failure_message,
)
from drover.errors import PreflightError, UpdateError
from drover.io import format_file_size
from drover.models import LAYER_VERSION_ARN_PATTERN, MAX_LAYERS, UNZIPPED_LIMIT, DeployAction, DeployResult
from drover.packaging import PackagePlan

if TYPE_CHECKING:
    from drover.core import Drover

logger = logging.getLogger("drover")
PENDING_LAYER = "(new requirements layer version)"


@dataclass
class Decisions:
    """What differs between the package and the live function."""

    architecture: str
    layer_arn: str | None = None
    publish_layer: bool = False
    code_changed: bool = False
    desired_layers: list[str] = field(default_factory=list)
    foreign_layers: list[str] = field(default_factory=list)
    current_layers: list[str] = field(default_factory=list)
    function_archive: ArchiveInfo | None = None
    requirements_archive: ArchiveInfo | None = None

    @property
    def layers_changed(self) -> bool:
        return self.publish_layer or self.desired_layers != self.current_layers


def connect(drover: Drover) -> tuple[LambdaTarget, LiveFunction]:
    """Read the live function (waiting out an update in progress) and check it is one drover can update."""
    stage = drover.stage
    target = LambdaTarget(stage, drover.options.aws or AwsClients(stage.region_name))
    with drover.timings.phase("read"):
        live = target.read_function()
        if live.last_update_status == "InProgress" or live.state == "Pending":
            logger.info("Waiting for an update in progress on %s", live.name)
            live = target.wait_until_updated()
    _check_function_kind(stage.function_name, stage.compatible_runtime, stage.architecture, live)
    return target, live


def deploy(
    drover: Drover, target: LambdaTarget, live: LiveFunction, plan: PackagePlan, result: DeployResult, directory: Path
) -> None:
    stage = drover.stage
    result.function_arn = live.arn
    decisions = Decisions(architecture=stage.architecture or live.architecture, current_layers=live.layer_arns)
    with drover.timings.phase("compare"):
        _decide_layer(target, plan, decisions, live)
        _decide_code(drover, plan, decisions, live, result, directory)
        _decide_layers_list(target, decisions, live)
    limit = drover.options.direct_upload_limit
    if decisions.publish_layer:
        decisions.requirements_archive = drover.write_archive(
            "requirements", plan.requirements.files, directory / REQUIREMENTS_ARCHIVE
        )
        record_archive(result, decisions.requirements_archive, plan.requirements, drover.options.archive_dir)
    _preflight(target, plan, decisions, limit)
    actions = _planned_actions(plan, decisions, live)
    tags = _desired_tags(plan, decisions, live)
    if drover.options.dry_run:
        if tags:
            actions.append(_planned("tag", live.name, f"record {', '.join(tags)}"))
        if stage.publish:
            actions.append(_planned("publish-version", live.name, "publish is set"))
        result.actions = actions
        result.requirements_layer_arn = decisions.layer_arn
        result.code_sha256 = live.code_sha256
        return
    with drover.timings.phase("deploy"):
        live = _apply(drover, target, plan, decisions, live, result, limit)
    result.requirements_layer_arn = decisions.layer_arn
    result.function_arn = live.arn
    result.code_sha256 = live.code_sha256


def _check_function_kind(name: str, runtime: str, architecture: str | None, live: LiveFunction) -> None:
    if live.package_type != "Zip":
        raise PreflightError(f"function {name} is a container image function; drover deploys zip functions")
    if live.runtime != runtime:
        raise PreflightError(
            f"function {name} runs {live.runtime}, but compatible_runtime is {runtime} — make them match "
            "(change the function's runtime with your infrastructure tool, or fix drover.yml)"
        )
    if architecture is not None and architecture != live.architecture:
        raise PreflightError(
            f"function {name} is {live.architecture}, but the stage's architecture is {architecture} — make them match"
        )


def _decide_layer(target: LambdaTarget, plan: PackagePlan, decisions: Decisions, live: LiveFunction) -> None:
    digest = plan.requirements.digest
    if digest is None:
        logger.info("Skipping requirements upload")
        return
    existing = target.find_layer_version(digest, decisions.architecture, live.layer_arns)
    if existing is not None:
        logger.info("Requirements layer %s already holds digest %s", existing.arn, digest[:12])
        decisions.layer_arn = existing.arn
    else:
        decisions.publish_layer = True


def _decide_code(
    drover: Drover, plan: PackagePlan, decisions: Decisions, live: LiveFunction, result: DeployResult, directory: Path
) -> None:
    """The live CodeSha256 is the truth; the tags only let an unchanged function skip building its zip."""
    recorded_digest = live.tags.get(TAG_FUNCTION_DIGEST)
    recorded_sha = live.tags.get(TAG_CODE_SHA256)
    if recorded_digest == plan.function.digest and recorded_sha == live.code_sha256:
        logger.info("Function code unchanged (CodeSha256 %s)", live.code_sha256)
        return
    archive = drover.write_archive("function", plan.function.files, directory / FUNCTION_ARCHIVE)
    record_archive(result, archive, plan.function, drover.options.archive_dir)
    decisions.function_archive = archive
    decisions.code_changed = archive.code_sha256 != live.code_sha256
    if not decisions.code_changed:
        logger.info("Function code unchanged (CodeSha256 %s)", live.code_sha256)


def _decide_layers_list(target: LambdaTarget, decisions: Decisions, live: LiveFunction) -> None:
    stage = target.stage
    requirements = [decisions.layer_arn or PENDING_LAYER] if (decisions.layer_arn or decisions.publish_layer) else []
    decisions.desired_layers = [*stage.supplemental_layer_arns, *requirements]
    decisions.foreign_layers = [
        arn
        for arn in live.layer_arns
        if arn not in stage.supplemental_layer_arns and not _is_requirements_layer(stage.layer_name, arn)
    ]
    for arn in decisions.foreign_layers:
        logger.warning(
            "layer %s is attached to %s but not named in drover.yml; it will be detached — add it to "
            "supplemental_layer_arns to keep it",
            arn,
            live.name,
        )


def _is_requirements_layer(layer_name: str, arn: str) -> bool:
    match = LAYER_VERSION_ARN_PATTERN.match(arn)
    return bool(match and match["name"] == layer_name)


def _preflight(target: LambdaTarget, plan: PackagePlan, decisions: Decisions, limit: int) -> None:
    stage = target.stage
    uploads = [
        archive
        for archive in (decisions.requirements_archive, decisions.function_archive if decisions.code_changed else None)
        if archive
    ]
    if stage.upload_bucket is None:
        for archive in uploads:
            if archive.size > limit:
                raise PreflightError(
                    f"{archive.path.name} is {format_file_size(archive.size)} zipped, over Lambda's "
                    f"{format_file_size(limit)} direct upload limit — set upload_bucket in drover.yml to upload through S3"
                )
    elif uploads:
        target.check_bucket_region(stage.upload_bucket)
    if len(decisions.desired_layers) > MAX_LAYERS:
        raise PreflightError(f"{len(decisions.desired_layers)} layers exceed Lambda's limit of {MAX_LAYERS}")
    supplemental_size = sum(target.layer_code_size(arn) for arn in stage.supplemental_layer_arns)
    total = plan.function.unzipped_size + plan.requirements.unzipped_size + supplemental_size
    if total > UNZIPPED_LIMIT:
        raise PreflightError(
            f"function ({plan.function.unzipped_size} bytes) + requirements ({plan.requirements.unzipped_size} bytes) "
            f"+ supplemental layers (at least {supplemental_size} bytes) exceed Lambda's {UNZIPPED_LIMIT}-byte "
            "unzipped limit — exclude files or use fewer layers"
        )


def _planned_actions(plan: PackagePlan, decisions: Decisions, live: LiveFunction) -> list[DeployAction]:
    actions = []
    if decisions.publish_layer:
        reason = f"no version records requirements digest {plan.requirements.digest}"
        actions.append(_planned("publish-layer", target_layer_name(live, decisions), reason))
    if decisions.code_changed:
        assert decisions.function_archive is not None
        package_sha = decisions.function_archive.code_sha256
        reason = f"live CodeSha256 {live.code_sha256 or 'none'} differs from the package's {package_sha}"
        actions.append(_planned("update-code", live.name, reason))
    if decisions.layers_changed:
        detached = f"; detaches {', '.join(decisions.foreign_layers)}" if decisions.foreign_layers else ""
        reason = f"layers {live.layer_arns} -> {decisions.desired_layers}{detached}"
        actions.append(_planned("update-layers", live.name, reason))
    return actions


def _planned(action: str, target: str, reason: str) -> DeployAction:
    return DeployAction(action=action, target=target, reason=reason, done=False)


def target_layer_name(live: LiveFunction, decisions: Decisions) -> str:
    return decisions.layer_arn or live.name + " requirements layer"


def _desired_tags(plan: PackagePlan, decisions: Decisions, live: LiveFunction) -> dict[str, str]:
    code_sha = decisions.function_archive.code_sha256 if decisions.function_archive else live.code_sha256
    wanted = {
        TAG_FUNCTION_DIGEST: plan.function.digest or "",
        TAG_REQUIREMENTS_DIGEST: plan.requirements.digest or "none",
        TAG_CODE_SHA256: code_sha,
    }
    return {key: value for key, value in wanted.items() if live.tags.get(key) != value}


def _upload_location(
    target: LambdaTarget, archive: ArchiveInfo, digest: str, limit: int, result: DeployResult
) -> CodeLocation:
    """S3 when a bucket is set (falling back to a direct upload that fits), else direct."""
    if target.stage.upload_bucket is None:
        result.bytes_uploaded += archive.size
        return CodeLocation(archive)
    try:
        s3_object, uploaded = target.upload_to_s3(archive, digest)
    except S3_FAILURES as error:
        message = s3_failure_message(error)
        if archive.size > limit:
            raise UpdateError(
                f"uploading {archive.path.name} to s3://{target.stage.upload_bucket.bucket_name} failed ({message}), and at "
                f"{format_file_size(archive.size)} it is over the {format_file_size(limit)} direct upload limit"
            ) from None
        warning = (
            f"upload to s3://{target.stage.upload_bucket.bucket_name} failed ({message}); falling back to direct upload"
        )
        logger.warning(warning)
        result.warnings.append(warning)
        result.bytes_uploaded += archive.size
        return CodeLocation(archive)
    result.bytes_uploaded += archive.size if uploaded else 0
    return CodeLocation(archive, s3_object)


def _apply(
    drover: Drover,
    target: LambdaTarget,
    plan: PackagePlan,
    decisions: Decisions,
    live: LiveFunction,
    result: DeployResult,
    limit: int,
) -> LiveFunction:
    stage = target.stage
    if decisions.publish_layer:
        assert decisions.requirements_archive is not None and plan.requirements.digest is not None
        logger.info("Uploading requirements archive...")
        location = _upload_location(target, decisions.requirements_archive, plan.requirements.digest, limit, result)
        layer = target.publish_layer(location, plan.requirements.digest, decisions.architecture)
        decisions.layer_arn = layer.arn
        decisions.desired_layers = [arn if arn != PENDING_LAYER else layer.arn for arn in decisions.desired_layers]
        result.requirements_updated = True
        _done(result, "publish-layer", layer.arn, f"requirements digest {plan.requirements.digest}")
        logger.info("Published requirements layer %s", layer.arn)
    if decisions.code_changed:
        assert decisions.function_archive is not None and plan.function.digest is not None
        logger.info("Uploading function archive...")
        location = _upload_location(target, decisions.function_archive, plan.function.digest, limit, result)
        logger.info("Updating function resource...")
        live = target.update_code(location, live)
        result.function_updated = True
        _done(result, "update-code", live.name, f"CodeSha256 is now {live.code_sha256}")
        logger.info(
            'Updated function "%s" resource; size: %s; ARN: %s',
            live.name,
            format_file_size(decisions.function_archive.size),
            live.arn,
        )
    if decisions.desired_layers != live.layer_arns:
        live = target.update_layers(decisions.desired_layers, live)
        result.configuration_updated = True
        _done(result, "update-layers", live.name, f"layers are now {live.layer_arns}")
        logger.info("Attached layers: %s", ", ".join(live.layer_arns) or "none")
    tags = _desired_tags(plan, decisions, live)
    if tags:
        target.tag_function(live, tags)
        _done(result, "tag", live.name, f"recorded {', '.join(sorted(tags))}")
    if stage.publish:
        _publish(target, live, result)
    if stage.keep_layer_versions:
        deleted = target.prune_layer_versions(stage.keep_layer_versions, live.layer_arns)
        if deleted:
            _done(
                result,
                "delete-layer-versions",
                stage.layer_name,
                f"keep_layer_versions is {stage.keep_layer_versions}: deleted {deleted}",
            )
            logger.info("Deleted requirements layer versions %s", ", ".join(map(str, deleted)))
    return live


def _publish(target: LambdaTarget, live: LiveFunction, result: DeployResult) -> None:
    version = target.find_published_version(live)
    if version is None:
        version = target.publish_version(live)
        _done(result, "publish-version", live.name, f"version {version}")
        logger.info("Published version %s", version)
    else:
        logger.info("Version %s already runs this code and these layers", version)
    result.version = version
    if target.stage.alias:
        result.alias_arn, moved = target.point_alias(target.stage.alias, version)
        if moved:
            _done(result, "point-alias", target.stage.alias, f"now version {version}")
            logger.info("Alias %s now points at version %s", target.stage.alias, version)


def _done(result: DeployResult, action: str, target: str, reason: str) -> None:
    result.actions.append(DeployAction(action=action, target=target, reason=reason, done=True))
