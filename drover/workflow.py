"""The deploy as a plan: an ordered list of steps, described by a dry run and applied by a deploy.

1. read the live function (waiting out an update in progress) and check drover can update it;
2. plan: compare the package's digests with the live function, its layer versions, published
   versions and alias, and list the steps that make them agree — building only the archives a
   step must upload;
3. preflight every limit and every setting AWS can check (bucket, supplemental layers) before any write;
4. dry run: describe every step | deploy: apply every step in order (layer, code, layers, tags,
   version, alias, prune), verify what AWS answered, and record each step done.

Both uses walk the same list, so the dry run shows exactly what the deploy would do. Steps whose
value is only known after an earlier write (the ARN of a new layer version, the number of a new
function version) are decided from the plan: a step that publishes makes every later step that
depends on the new value necessary.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drover.archive import ArchiveInfo
from drover.deploy import (
    TAG_CODE_SHA256,
    TAG_DEPENDENCY_KEY,
    TAG_FUNCTION_DIGEST,
    TAG_REQUIREMENTS_DIGEST,
    Alias,
    AwsClients,
    AwsError,
    CodeLocation,
    Invocation,
    LambdaTarget,
    LayerVersion,
    LiveFunction,
    archive_of,
    download_url,
    unqualified_arn,
)
from drover.errors import PreflightError, SettingsError, UpdateError, one_line
from drover.io import format_file_size
from drover.models import (
    DIRECT_UPLOAD_LIMIT,
    LAYER_VERSION_ARN_PATTERN,
    MAX_LAYERS,
    UNZIPPED_LIMIT,
    Architecture,
    DeployAction,
    DeployResult,
    Rollout,
    S3BucketFileVersion,
    SmokeTest,
    Stage,
)
from drover.packaging import HashedFile, PackageFile, PackagePlan
from drover.progress import NO_PROGRESS, Progress, tracked

logger = logging.getLogger("drover")
PENDING_LAYER = "(new requirements layer version)"

ArchiveBuilder = Callable[[str, Sequence[HashedFile | PackageFile]], ArchiveInfo]
"""Builds the archive of a partition ("function" or "requirements") and reports it in the result."""
Phase = Callable[[str], AbstractContextManager[None]]
LayerKey = tuple[str, str, str, str]
"""(region, layer name, requirements digest, architecture): what makes two requirements layer versions the same."""


class Uploads:
    """The S3 objects a run has put or found, by (region, bucket, key): stages that upload the same archive share
    one PUT. The first stage to need an object uploads it; the others wait for that upload's answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str], Future[tuple[S3BucketFileVersion, bool, str | None]]] = {}

    def put(
        self, where: tuple[str, str, str], upload: Callable[[], tuple[S3BucketFileVersion, bool, str | None]]
    ) -> tuple[S3BucketFileVersion, bool, str | None]:
        """upload()'s answer: (object, uploaded now, warning); a later caller gets (object, False, None)."""
        with self._lock:
            future = self._objects.get(where)
            first = future is None
            if future is None:
                future = self._objects[where] = Future()
        if not first:
            s3_object, _, _ = future.result()
            return s3_object, False, None
        try:
            answer = upload()
        except BaseException as error:
            with self._lock:  # a failed upload is not shared: the next stage that needs it tries again
                del self._objects[where]
            future.set_exception(error)
            raise
        future.set_result(answer)
        return answer


@dataclass
class Deployment:
    """One stage's deploy: what it was given, what planning decided, and the ledger of what its steps wrote.

    Steps carry their own inputs (archives, digests, layers, tags, rollout settings); from the deployment they
    read the target and the ledger (the live function after the previous write, the layer version and function
    version this run published) and record what they did there and in the result."""

    # given: the stage, the function as read, the package, how to build and report
    stage: Stage
    target: LambdaTarget
    live: LiveFunction  # also the ledger's: the function as the last write left it (its RevisionId)
    package: PackagePlan
    result: DeployResult
    build_archive: ArchiveBuilder
    phase: Phase
    dry_run: bool = False
    direct_upload_limit: int = DIRECT_UPLOAD_LIMIT
    stage_name: str = ""
    uploads: Uploads = field(default_factory=Uploads)  # shared by the stages of one run
    promotion: Promotion | None = None
    dependency_key: str | None = None  # the exact lock's key: recorded on a requirements layer this run publishes
    kept_layer: LayerVersion | None = None  # the attached layer records this key: no install ran, keep it attached
    audited_layer: LayerVersion | None = None  # --no-dependency-key: the attached layer the built archive must equal
    ignore_alarms_at_start: bool = False  # a rollout's alarms already in ALARM do not stop it (deploying a fix)
    layer_pending: bool = False  # a layer version this run publishes (this stage or another) is to be attached
    prunes: bool = True  # the stage that applies keep_layer_versions to its layer name (one per name in a run)
    # decided while planning (every AWS read happens then)
    architecture: Architecture = "x86_64"
    function_archive: ArchiveInfo | None = None
    requirements_archive: ArchiveInfo | None = None
    desired_layers: list[str] = field(default_factory=list)
    use_bucket: bool = True
    publishes_layer: bool = False  # this stage's plan publishes the requirements archive as a new layer version
    rolls_out: bool = False  # the plan moves the alias by a rollout (its alarms are checked in preflight)
    # the ledger: found while planning, then written by the steps for the steps after them and for the report
    layer_arn: str | None = None  # the requirements layer version to attach (None until a new one is published)
    version: str | None = None  # the function version that serves this code (found, or published by this run)
    alias: Alias | None = None  # the alias as the last write left it (its RevisionId)
    rollout_from: str | None = None  # the version the alias served before this run's rollout (once recorded)
    traffic_moved: bool = False  # the rollout has changed the alias (a failure from here on rolls it back)

    @property
    def requirements_digest(self) -> str | None:
        """The digest of the requirements this run deploys: the kept layer's, or the package's."""
        return self.kept_layer.claimed_digest if self.kept_layer is not None else self.package.requirements.digest

    @property
    def code_sha256(self) -> str:
        """The CodeSha256 the function runs once deployed: the built archive's, or the live one when none was built."""
        return self.function_archive.code_sha256 if self.function_archive else self.live.code_sha256

    def warn(self, warning: str) -> None:
        logger.warning(warning)
        self.result.warnings.append(warning)

    def resolve(self, layers: list[str]) -> list[str]:
        """The layers to attach, with the layer version this run published in place of the placeholder."""
        if PENDING_LAYER in layers and self.layer_arn is None:
            raise UpdateError(
                f"the requirements layer version for {self.live.name} was not published; nothing attached"
            )
        return [self.layer_arn if arn == PENDING_LAYER and self.layer_arn else arn for arn in layers]


class Step(ABC):
    """One write of the deploy. describe() is what a dry run shows; apply() does it and says what it did."""

    kind: str
    destructive = False  # deletes something: applied after every other write of the run, rechecked first

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason

    def describe(self) -> tuple[str, str, str]:
        return self.kind, self.target, self.reason

    @abstractmethod
    def apply(self, deployment: Deployment) -> str: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, {self.reason!r})"


class PublishLayer(Step):
    kind = "publish-layer"

    def __init__(
        self,
        target: str,
        reason: str,
        archive: ArchiveInfo,
        digest: str,
        architecture: Architecture,
        dependency_key: str | None,
    ) -> None:
        super().__init__(target, reason)
        self.archive, self.digest = archive, digest
        self.architecture, self.dependency_key = architecture, dependency_key

    def apply(self, deployment: Deployment) -> str:
        logger.info("Uploading requirements archive...")
        location = upload(deployment, self.archive, self.digest)
        layer = deployment.target.publish_layer(location, self.digest, self.architecture, self.dependency_key)
        deployment.result.requirements_layer_arn = layer.arn  # an interruption from here on names it
        logger.info("Published requirements layer %s", layer.arn)
        return _converge(
            deployment,
            layer,
            self.digest,
            f"published {layer.arn} (requirements digest {self.digest}, CodeSha256 {self.archive.code_sha256})",
        )


def _converge(deployment: Deployment, layer: LayerVersion, digest: str, done: str) -> str:
    """Adopt the lowest version recording this digest (a concurrent run may have published one too)."""
    adopted, deleted = deployment.target.converge_layer(digest, deployment.architecture, layer)
    deployment.layer_arn = deployment.result.requirements_layer_arn = adopted.arn
    deployment.result.requirements_updated = True
    if adopted.arn != layer.arn:
        fate = f"deleted {layer.arn}" if deleted else f"kept {layer.arn} (a function already uses it)"
        return (
            f"adopted {adopted.arn} (the lowest version recording requirements digest {digest}); {fate}, its duplicate"
        )
    return done


class UpdateCode(Step):
    kind = "update-code"

    def __init__(self, target: str, reason: str, archive: ArchiveInfo, digest: str) -> None:
        super().__init__(target, reason)
        self.archive, self.digest = archive, digest

    def apply(self, deployment: Deployment) -> str:
        logger.info("Uploading function archive...")
        location = upload(deployment, self.archive, self.digest)
        logger.info("Updating function resource...")
        deployment.live = deployment.target.update_code(location, deployment.live)
        deployment.result.function_updated = True
        logger.info(
            'Updated function "%s" resource; size: %s; ARN: %s',
            deployment.live.name,
            format_file_size(self.archive.size),
            deployment.live.arn,
        )
        return f"CodeSha256 is now {deployment.live.code_sha256}"


class UpdateLayers(Step):
    """Attach exactly these layers; PENDING_LAYER stands for the version this run publishes (resolved at apply)."""

    kind = "update-layers"

    def __init__(self, target: str, reason: str, layers: list[str]) -> None:
        super().__init__(target, reason)
        self.layers = layers

    def apply(self, deployment: Deployment) -> str:
        deployment.live = deployment.target.update_layers(deployment.resolve(self.layers), deployment.live)
        deployment.result.configuration_updated = True
        logger.info("Attached layers: %s", ", ".join(deployment.live.layer_arns) or "none")
        return f"layers are now {deployment.live.layer_arns}"


class Tag(Step):
    kind = "tag"

    def __init__(self, target: str, tags: dict[str, str]) -> None:
        super().__init__(target, f"record {', '.join(sorted(tags))}")
        self.tags = tags

    def apply(self, deployment: Deployment) -> str:
        deployment.target.tag_function(deployment.live, self.tags)
        return f"recorded {', '.join(sorted(self.tags))}"


class PublishVersion(Step):
    kind = "publish-version"

    def apply(self, deployment: Deployment) -> str:
        deployment.version = deployment.target.publish_version(deployment.live)
        deployment.result.version_published = True
        logger.info("Published version %s", deployment.version)
        return f"version {deployment.version}"


class PointAlias(Step):
    kind = "point-alias"

    def apply(self, deployment: Deployment) -> str:
        assert deployment.version is not None
        version = deployment.version
        deployment.result.alias_arn = deployment.target.point_alias(self.target, version, deployment.alias)
        logger.info("Alias %s now points at version %s (all of its traffic)", self.target, version)
        if deployment.rollout_from is not None:
            deployment.result.rollout = "completed"
        return f"now version {version}"


class PruneLayerVersions(Step):
    kind = "delete-layer-versions"
    destructive = True

    def __init__(self, target: str, reason: str, versions: list[LayerVersion]) -> None:
        super().__init__(target, reason)
        self.versions = versions

    def apply(self, deployment: Deployment) -> str:
        """Delete only what no function uses now: the attachments are read again after every write of the run,
        right before the deletes (a version a concurrent run attached meanwhile is kept, with a warning)."""
        checked = time.monotonic()
        attached = deployment.target.attached_layer_arns()
        kept = [version.version for version in self.versions if version.arn in attached]
        if kept:
            deployment.warn(
                f"requirements layer versions {kept} of {self.target} were attached to a function after this run "
                "planned to delete them; kept"
            )
        deleted: list[int] = []
        for version in self.versions:
            if version.version not in kept:
                deployment.target.delete_layer_version(version.version)
                deleted.append(version.version)
        window = time.monotonic() - checked
        logger.info(
            "Deleted requirements layer versions %s (attachments read %.3f s before the last delete)",
            ", ".join(map(str, deleted)) or "none",
            window,
        )
        kept_note = f"; kept {kept}, attached meanwhile" if kept else ""
        return f"keep_layer_versions is {deployment.stage.keep_layer_versions}: deleted {deleted}{kept_note}"


# -- reading and planning ------------------------------------------------------------------------


def connect(
    stage: Stage, clients: AwsClients, phase: Phase, progress: Progress = NO_PROGRESS
) -> tuple[LambdaTarget, LiveFunction]:
    """Read the live function (waiting out an update in progress) and check it is one drover can update."""
    target = LambdaTarget(stage, clients, progress=progress)
    with phase("read"):
        live = target.read_function()
        if live.last_update_status == "InProgress" or live.state == "Pending":
            logger.info("Waiting for an update in progress on %s", live.name)
            live = target.wait_until_updated()
    _check_function_kind(stage.function_name, stage.compatible_runtime, stage.architecture, live)
    return target, live


def run_steps(deployment: Deployment, steps: Sequence[Step]) -> None:
    """Dry run: describe every step. Deploy: apply every step in order and record each one done."""
    if deployment.dry_run:
        deployment.result.actions += [_action(step) for step in steps]
        return
    with deployment.phase("deploy"):
        for step in steps:
            try:
                outcome = step.apply(deployment)
            except BaseException as error:
                if deployment.rollout_from is None:
                    raise
                note = roll_back(deployment)  # a rollout that failed (or was stopped) puts the alias back first
                if not isinstance(error, Exception):
                    raise
                raise RolloutError(f"{one_line(error)}; {note}") from error
            deployment.result.actions.append(_action(step, outcome))


def _action(step: Step, outcome: str | None = None) -> DeployAction:
    """A planned step (would do, with its reason) or, given what it did, a done one."""
    kind, target, reason = step.describe()
    done = outcome is not None
    at = datetime.now(UTC).isoformat(timespec="seconds") if done else None
    return DeployAction(action=kind, target=target, reason=outcome or reason, done=done, at=at)


def finish(deployment: Deployment) -> None:
    """Report what the function runs now (deploy: every layer resolved; dry run: as planned)."""
    if not deployment.dry_run:
        deployment.resolve(deployment.desired_layers)
    result, live = deployment.result, deployment.live
    result.requirements_layer_arn = deployment.layer_arn
    result.function_arn = live.arn
    result.code_sha256 = live.code_sha256
    result.version = deployment.version
    result.changed = any(action.done for action in result.actions)


def plan(deployment: Deployment, layer_step: Step | None = None) -> list[Step]:
    """The steps that make the live function run this package, decided from what AWS reports now.

    layer_step publishes the requirements layer version this stage attaches (plan_layer's answer); when another
    stage of the run publishes it, deployment.layer_pending is set instead and no step of this stage publishes."""
    stage, live = deployment.stage, deployment.live
    deployment.architecture = layer_architecture(stage, live)
    _audit_attached_layer(deployment)
    publishing = layer_step is not None or deployment.layer_pending
    steps: list[Step] = [layer_step] if layer_step is not None else []
    code = _plan_code(deployment)
    if code:
        steps.append(code)
    layers = _plan_layers(deployment, publishing=publishing)
    if layers:
        steps.append(layers)
    tags = _desired_tags(deployment)
    if tags:
        steps.append(Tag(live.name, tags))
    if stage.publish:
        steps += _plan_version(deployment, changing=bool(layer_step or code or layers))
    if stage.keep_layer_versions and deployment.prunes:
        prune = _plan_prune(deployment, stage.keep_layer_versions, publishing=publishing)
        if prune:
            steps.append(prune)
    return steps


def layer_architecture(stage: Stage, live: LiveFunction) -> Architecture:
    """The architecture a requirements layer version is published for: the stage's, else the live function's."""
    return stage.architecture or ("arm64" if live.architecture == "arm64" else "x86_64")


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


def plan_layer(deployment: Deployment) -> Step | None:
    """The layer version this stage attaches: kept (dependency key), found by content, or a PublishLayer step."""
    deployment.architecture = layer_architecture(deployment.stage, deployment.live)
    requirements, kept = deployment.package.requirements, deployment.kept_layer
    if kept is not None:
        logger.info(
            "Requirements layer %s (attached) records this dependency key; keeping it (its content was not rebuilt)",
            kept.arn,
        )
        deployment.layer_arn = kept.arn
        return None
    if requirements.digest is None:
        logger.info("Skipping requirements upload")
        return None
    found = deployment.target.find_layer_version(
        requirements.digest,
        deployment.architecture,
        deployment.live.layer_arns,
        lambda: requirements_archive(deployment).code_sha256,
    )
    for forged in found.forged:
        deployment.warn(
            f"requirements layer version {forged.arn} records digest {requirements.digest} in its description, but "
            f"its content (CodeSha256 {forged.code_sha256}) is not this archive's "
            f"({requirements_archive(deployment).code_sha256}); not used — something other than drover published it"
        )
    if found.found is not None:
        logger.info("Requirements layer %s already holds digest %s", found.found.arn, requirements.digest[:12])
        deployment.layer_arn = found.found.arn
        return None
    archive = requirements_archive(deployment)
    deployment.publishes_layer = True
    reason = f"no version holds this requirements archive (digest {requirements.digest})"
    return PublishLayer(
        deployment.stage.layer_name,
        reason,
        archive,
        requirements.digest,
        deployment.architecture,
        deployment.dependency_key,
    )


def requirements_archive(deployment: Deployment) -> ArchiveInfo:
    """The requirements archive drover would publish, built on first need (reproducible: its SHA-256 is what
    Lambda computes as the CodeSha256 of a layer version holding it)."""
    if deployment.requirements_archive is None:
        deployment.requirements_archive = deployment.build_archive(
            "requirements", deployment.package.requirements.files
        )
    return deployment.requirements_archive


def _audit_attached_layer(deployment: Deployment) -> None:
    """--no-dependency-key: the tree installed anyway must be, byte for byte, the layer the key would have kept."""
    layer = deployment.audited_layer
    if layer is None:
        return
    built = requirements_archive(deployment).code_sha256
    if layer.code_sha256 != built:
        raise UpdateError(
            f"dependency key audit failed: the attached layer {layer.arn} records dependency key "
            f"{deployment.dependency_key}, the same as this lock's, but its content (CodeSha256 {layer.code_sha256}) "
            f"is not the installed tree's archive ({built}) — a key match would have kept the wrong dependencies; "
            "nothing was changed (deploy with --no-dependency-key to publish the right layer, and find out who "
            "published that version)"
        )
    if deployment.result.install is not None:
        deployment.result.install.verified = True
    logger.info("Dependency key audit: the installed tree is byte for byte the attached layer %s", layer.arn)


def _plan_code(deployment: Deployment) -> Step | None:
    """The live CodeSha256 is the truth; the tags only let an unchanged function skip building its zip."""
    function, live = deployment.package.function, deployment.live
    if live.tags.get(TAG_FUNCTION_DIGEST) == function.digest and live.tags.get(TAG_CODE_SHA256) == live.code_sha256:
        logger.info("Function code unchanged (CodeSha256 %s)", live.code_sha256)
        return None
    archive = deployment.build_archive("function", function.files)
    deployment.function_archive = archive
    if archive.code_sha256 == live.code_sha256:
        logger.info("Function code unchanged (CodeSha256 %s)", live.code_sha256)
        return None
    reason = f"live CodeSha256 {live.code_sha256 or 'none'} differs from the package's {archive.code_sha256}"
    assert function.digest is not None
    return UpdateCode(live.name, reason, archive, function.digest)


def _plan_layers(deployment: Deployment, *, publishing: bool) -> Step | None:
    stage, live = deployment.stage, deployment.live
    requirements = [deployment.layer_arn or PENDING_LAYER] if (deployment.layer_arn or publishing) else []
    deployment.desired_layers = [*stage.supplemental_layer_arns, *requirements]
    foreign = [
        arn
        for arn in live.layer_arns
        if arn not in stage.supplemental_layer_arns and not _is_requirements_layer(stage.layer_name, arn)
    ]
    previous_requirements = TAG_REQUIREMENTS_DIGEST in live.tags  # drover deployed this function before
    for arn in foreign:
        if previous_requirements and arn.split(":")[-2].endswith("-requirements"):
            logger.info("Replacing %s (a requirements layer of an earlier requirements_layer_name)", arn)
            continue
        logger.warning(
            "layer %s is attached to %s but not named in drover.yml; it will be detached — add it to "
            "supplemental_layer_arns to keep it",
            arn,
            live.name,
        )
    if deployment.desired_layers == live.layer_arns:
        return None
    detached = f"; detaches {', '.join(foreign)}" if foreign else ""
    reason = f"layers {live.layer_arns} -> {deployment.desired_layers}{detached}"
    return UpdateLayers(live.name, reason, list(deployment.desired_layers))


def _is_requirements_layer(layer_name: str, arn: str) -> bool:
    match = LAYER_VERSION_ARN_PATTERN.match(arn)
    return bool(match and match["name"] == layer_name)


def _desired_tags(deployment: Deployment) -> dict[str, str]:
    package, live = deployment.package, deployment.live
    wanted = {
        TAG_FUNCTION_DIGEST: package.function.digest or "",
        TAG_REQUIREMENTS_DIGEST: deployment.requirements_digest or "none",
        TAG_CODE_SHA256: deployment.code_sha256,
    }
    if deployment.dependency_key or TAG_DEPENDENCY_KEY in live.tags:  # a stale key must never meet a new digest
        wanted[TAG_DEPENDENCY_KEY] = deployment.dependency_key or "none"
    if TAG_PROMOTED_FROM in live.tags:  # this run deploys its own build: no longer the promoted artifact
        wanted[TAG_PROMOTED_FROM] = "none"
    return {key: value for key, value in wanted.items() if live.tags.get(key) != value}


def _plan_version(deployment: Deployment, *, changing: bool, code_sha256: str | None = None) -> list[Step]:
    """Publish unless a version already runs the desired code and layers; move the alias unless it is there."""
    live, stage = deployment.live, deployment.stage
    code_sha = code_sha256 or deployment.code_sha256
    steps: list[Step] = []
    if PENDING_LAYER not in deployment.desired_layers:
        deployment.version = deployment.target.find_published_version(code_sha, deployment.desired_layers)
    if deployment.version is None:
        why = "the code or layers change" if changing else "no published version runs this code and these layers"
        steps.append(PublishVersion(live.name, f"publish is set and {why}"))
    else:
        logger.info("Version %s already runs this code and these layers", deployment.version)
    if stage.alias:
        steps += _plan_alias(deployment, stage.alias)
    return steps


def _plan_alias(deployment: Deployment, alias: str) -> list[Step]:
    current = deployment.alias = deployment.target.read_alias(alias)
    if current is not None:
        deployment.result.alias_arn = current.arn
        deployment.result.previous_version = current.version
    target = deployment.version or "the new version"
    rollout = deployment.stage.rollout
    smoke = [_smoke_test(deployment, rollout.smoke_test)] if rollout is not None and rollout.smoke_test else []
    if current is None:
        return [*smoke, PointAlias(alias, f"alias {alias} does not exist; create it at {target}")]
    if current.extra_weights:
        weights = ", ".join(
            f"version {version}: {weight:.0%}" for version, weight in sorted(current.extra_weights.items())
        )
        deployment.warn(
            f"alias {alias} sends part of its traffic to other versions ({weights}); drover points all of it at "
            f"{target} and removes those weights"
        )
    if current.version == deployment.version and not current.extra_weights:
        return []
    if rollout is not None and current.version != deployment.version:
        return _plan_rollout(deployment, alias, current, rollout, smoke)
    extra = " and removes its other weights" if current.extra_weights else ""
    return [PointAlias(alias, f"alias {alias} points at version {current.version}; move it to {target}{extra}")]


# -- safe rollouts: smoke test, traffic shifted in steps on the alias, alarms watched, rollback -------------------

TAG_ROLLOUT_FROM = "drover:rollout-from"  # the version the alias served before the last drover rollout
ALARM_POLL_SECONDS = 15.0


class RolloutError(UpdateError):
    """A rollout that failed (smoke test, alarm) or was stopped; the alias was rolled back first."""


def _plan_rollout(
    deployment: Deployment, alias: str, current: Alias, rollout: Rollout, smoke: list[Step]
) -> list[Step]:
    target = deployment.version or "the new version"
    deployment.rolls_out = True
    steps: list[Step] = [
        StartRollout(
            alias, f"record version {current.version} (what {alias} serves now) to roll back to", current.version
        ),
        *smoke,
    ]
    if rollout.alarms:
        steps.append(
            CheckAlarms(alias, f"alarms {', '.join(rollout.alarms)} must not be in ALARM before traffic moves", rollout)
        )
    for percent in rollout.weights():
        watched = f", watching alarms {', '.join(rollout.alarms)}" if rollout.alarms else ""
        steps.append(
            ShiftTraffic(
                alias,
                f"{percent}% of {alias} to {target}, {100 - percent}% on {current.version}; wait "
                f"{rollout.interval_seconds} s{watched}",
                percent,
                rollout,
            )
        )
    steps.append(PointAlias(alias, f"all of {alias} to {target} (weights cleared): the rollout completes"))
    return steps


def _smoke_test(deployment: Deployment, smoke: SmokeTest) -> Step:
    target = f"version {deployment.version}" if deployment.version else "the new version"
    expect = f", expect {smoke.expect!r} in the answer" if smoke.expect else ""
    return SmokeTestStep(
        deployment.live.name,
        f"invoke {target} (not the alias) with {smoke.payload}{expect}, before any traffic reaches it",
        smoke,
    )


class StartRollout(Step):
    kind = "start-rollout"

    def __init__(self, target: str, reason: str, previous: str) -> None:
        super().__init__(target, reason)
        self.previous = previous

    def apply(self, deployment: Deployment) -> str:
        deployment.target.tag_function(deployment.live, {TAG_ROLLOUT_FROM: self.previous})
        deployment.rollout_from = deployment.result.previous_version = self.previous
        return f"version {self.previous} recorded ({TAG_ROLLOUT_FROM}); a failure from here on rolls back to it"


class SmokeTestStep(Step):
    kind = "smoke-test"

    def __init__(self, target: str, reason: str, smoke: SmokeTest) -> None:
        super().__init__(target, reason)
        self.smoke = smoke

    def apply(self, deployment: Deployment) -> str:
        assert deployment.version is not None
        answer = deployment.target.invoke(deployment.version, self.smoke.payload)
        problem = smoke_problem(answer, self.smoke.expect)
        if problem:
            raise RolloutError(f"smoke test of {deployment.live.name} version {deployment.version} failed: {problem}")
        logger.info("Smoke test of version %s passed", deployment.version)
        return f"version {deployment.version} answered {shorten_payload(answer.payload)}"


def smoke_problem(answer: Invocation, expect: str | None) -> str | None:
    """Why an invocation fails the smoke test (None: it passes)."""
    if answer.function_error:
        return f"the function raised ({answer.function_error}): {shorten_payload(answer.payload)}"
    if answer.status >= 300:
        return f"status {answer.status}: {shorten_payload(answer.payload)}"
    if expect is not None and expect not in answer.payload:
        return f"the answer {shorten_payload(answer.payload)} does not contain {expect!r}"
    return None


def shorten_payload(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class CheckAlarms(Step):
    kind = "check-alarms"

    def __init__(self, target: str, reason: str, rollout: Rollout) -> None:
        super().__init__(target, reason)
        self.rollout = rollout

    def apply(self, deployment: Deployment) -> str:
        firing = _firing(deployment, self.rollout.alarms)
        if firing and deployment.ignore_alarms_at_start:
            deployment.warn(f"alarms {', '.join(firing)} are in ALARM before the rollout; going on as asked")
            return f"{', '.join(firing)} in ALARM, ignored (--ignore-alarms-at-start)"
        if firing:
            raise RolloutError(
                f"alarm {firing[0]} is in ALARM before any traffic moved to version {deployment.version} — fix what "
                "it reports, or pass --ignore-alarms-at-start to deploy a fix while it alarms"
            )
        return f"{', '.join(self.rollout.alarms)}: none in ALARM"


class ShiftTraffic(Step):
    kind = "shift-traffic"

    def __init__(self, target: str, reason: str, percent: int, rollout: Rollout) -> None:
        super().__init__(target, reason)
        self.percent = percent
        self.rollout = rollout

    def apply(self, deployment: Deployment) -> str:
        assert deployment.version is not None and deployment.alias is not None and deployment.rollout_from is not None
        deployment.traffic_moved = True
        deployment.alias = deployment.target.shift_alias(
            self.target, deployment.rollout_from, deployment.version, self.percent, deployment.alias
        )
        logger.info(
            "Alias %s: %d%% on version %s; watching for %d s",
            self.target,
            self.percent,
            deployment.version,
            self.rollout.interval_seconds,
        )
        waiting = f"Rollout {self.target}: {self.percent}% on version {deployment.version}, watching"
        with tracked(deployment.target.progress, waiting):  # a spinner and the time waited (CI: a line every 5 s)
            _watch(
                deployment, self.rollout, f"while {self.percent}% of {self.target} was on version {deployment.version}"
            )
        alarms = f"; alarms {', '.join(self.rollout.alarms)} stayed out of ALARM" if self.rollout.alarms else ""
        return f"{self.percent}% on version {deployment.version} for {self.rollout.interval_seconds} s{alarms}"


def _watch(deployment: Deployment, rollout: Rollout, when: str) -> None:
    """Wait the step's interval, checking the alarms every ALARM_POLL_SECONDS (and at both ends)."""
    waited = 0.0
    while True:
        firing = _firing(deployment, rollout.alarms)
        if firing:
            raise RolloutError(f"alarm {firing[0]} went into ALARM {when}")
        if waited >= rollout.interval_seconds:
            return
        pause = min(ALARM_POLL_SECONDS, rollout.interval_seconds - waited)
        deployment.target.clients.sleep(pause)
        waited += pause


def _firing(deployment: Deployment, alarms: list[str]) -> list[str]:
    states = deployment.target.alarm_states(alarms)
    missing = [name for name in alarms if name not in states]
    if missing:
        raise RolloutError(f"alarm {missing[0]} does not exist in {deployment.stage.region_name} any more")
    return [name for name in alarms if states[name] == "ALARM"]


def roll_back(deployment: Deployment) -> str:
    """Put the alias back on the version it served before the rollout, weights cleared; say where it is."""
    alias, previous = deployment.stage.alias, deployment.rollout_from
    assert alias is not None and previous is not None
    if not deployment.traffic_moved:
        note = f"alias {alias} never moved: it still serves version {previous}"
        deployment.result.rollout = "rolled-back"
    else:
        try:
            current = deployment.target.read_alias(alias)
            deployment.target.point_alias(alias, previous, current)
            note = f"alias {alias} is back on version {previous} (all of its traffic)"
            deployment.result.rollout = "rolled-back"
        except Exception as failure:
            note = (
                f"rolling alias {alias} back to version {previous} failed ({one_line(failure)}); it may still send "
                f"traffic to version {deployment.version} — run drover --rollback {deployment.stage_name}"
            )
    logger.error("Rollout stopped: %s", note)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    deployment.result.actions.append(DeployAction(action="roll-back", target=alias, reason=note, done=True, at=now))
    return note


def plan_rollback(deployment: Deployment) -> list[Step]:
    """`--rollback`: the alias back on the version it served before the last drover rollout."""
    alias = deployment.stage.alias
    if alias is None:
        raise SettingsError(f"stage {deployment.stage_name} has no alias, so there is nothing to roll back")
    previous = deployment.live.tags.get(TAG_ROLLOUT_FROM)
    if not previous:
        raise SettingsError(
            f"{deployment.live.name} records no rollout ({TAG_ROLLOUT_FROM} tag): drover has not rolled out a version "
            f"on alias {alias}, so there is nothing to roll back to"
        )
    current = deployment.alias = deployment.target.read_alias(alias)
    deployment.version = previous
    deployment.result.previous_version = current.version if current else None
    if current is not None and current.version == previous and not current.extra_weights:
        logger.info("Alias %s already serves version %s, the one recorded before the last rollout", alias, previous)
        return []
    where = f"version {current.version}" if current else "nothing (the alias is missing)"
    return [PointAlias(alias, f"alias {alias} serves {where}; put it back on version {previous} (weights cleared)")]


def roll_back_alias(deployment: Deployment) -> None:
    steps = plan_rollback(deployment)
    run_steps(deployment, steps)
    deployment.result.version = deployment.version
    deployment.result.rollout = "rolled-back" if steps else "none"
    finish(deployment)


def _plan_prune(deployment: Deployment, keep: int, *, publishing: bool) -> Step | None:
    """The newest `keep` versions stay (a version published by this run counts); attached ones are never deleted."""
    target, stage = deployment.target, deployment.stage
    versions = sorted(target.list_layer_versions(), key=lambda item: item.version, reverse=True)
    older = versions[keep - 1 :] if publishing else versions[keep:]
    candidates = [version for version in older if version.arn != deployment.layer_arn]
    if not candidates:
        return None
    attached = target.layers_attached_elsewhere(deployment.live.arn)
    kept = [version.version for version in candidates if version.arn in attached]
    if kept:
        logger.info("Keeping layer versions %s: other functions in the region use them", kept)
    doomed = [version for version in candidates if version.arn not in attached]
    if not doomed:
        return None
    numbers = [version.version for version in doomed]
    return PruneLayerVersions(stage.layer_name, f"keep_layer_versions is {keep}: delete versions {numbers}", doomed)


# -- preflight and uploads -----------------------------------------------------------------------


def preflight(deployment: Deployment, uploads: list[ArchiveInfo] | None = None) -> None:
    """Every Lambda limit and every setting AWS can check, before any write.

    uploads: the archives the steps upload; a deploy's are those it built for a change, a promotion's the
    copies it downloads (see promote).
    """
    stage, target, limit = deployment.stage, deployment.target, deployment.direct_upload_limit
    _check_rollout_alarms(deployment)
    uploads = _built_uploads(deployment) if uploads is None else uploads
    too_large = [archive for archive in uploads if archive.size > limit]
    if stage.upload_bucket is None:
        for archive in too_large:
            raise PreflightError(
                f"{archive.path.name} is {format_file_size(archive.size)} zipped, over Lambda's "
                f"{format_file_size(limit)} direct upload limit — set upload_bucket in drover.yml to upload through S3"
            )
    elif not target.bucket_exists(stage.upload_bucket):
        _missing_bucket(deployment, stage.upload_bucket.bucket_name, uploads, too_large)
    _check_layer_count(deployment)
    supplemental_size = sum(target.supplemental_layer_size(arn) for arn in stage.supplemental_layer_arns)
    package = deployment.package
    total = package.function.unzipped_size + package.requirements.unzipped_size + supplemental_size
    if total > UNZIPPED_LIMIT:
        raise PreflightError(
            f"function ({package.function.unzipped_size} bytes) + requirements ({package.requirements.unzipped_size} "
            f"bytes) + supplemental layers (at least {supplemental_size} bytes) exceed Lambda's {UNZIPPED_LIMIT}-byte "
            "unzipped limit — exclude files or use fewer layers"
        )


def _built_uploads(deployment: Deployment) -> list[ArchiveInfo]:
    """The archives a deploy built that its steps upload."""
    return [
        archive
        for archive, step_needs in (
            (deployment.requirements_archive, deployment.publishes_layer),
            (deployment.function_archive, _code_changes(deployment)),
        )
        if archive is not None and step_needs
    ]


def _check_rollout_alarms(deployment: Deployment) -> None:
    """A rollout's alarms must exist before anything is published: a typo would otherwise stop it half-way."""
    rollout = deployment.stage.rollout
    if not deployment.rolls_out or rollout is None or not rollout.alarms:
        return
    states = deployment.target.alarm_states(rollout.alarms)
    missing = [name for name in rollout.alarms if name not in states]
    if missing:
        raise PreflightError(
            f"rollout.alarms names {missing[0]!r}, which is not a CloudWatch alarm in {deployment.stage.region_name} — "
            "fix the name in drover.yml or create the alarm"
        )


def _check_layer_count(deployment: Deployment) -> None:
    if len(deployment.desired_layers) > MAX_LAYERS:
        raise PreflightError(f"{len(deployment.desired_layers)} layers exceed Lambda's limit of {MAX_LAYERS}")


def _code_changes(deployment: Deployment) -> bool:
    archive = deployment.function_archive
    return archive is not None and archive.code_sha256 != deployment.live.code_sha256


def _missing_bucket(
    deployment: Deployment, bucket: str, uploads: list[ArchiveInfo], too_large: list[ArchiveInfo]
) -> None:
    fix = f"create bucket {bucket} in {deployment.stage.region_name}, or fix upload_bucket.bucket_name in drover.yml"
    if too_large:
        archive = too_large[0]
        raise PreflightError(
            f"upload_bucket.bucket_name is {bucket!r}, which does not exist, and {archive.path.name} "
            f"({format_file_size(archive.size)}) is over the {format_file_size(deployment.direct_upload_limit)} "
            f"direct upload limit — {fix}"
        )
    deployment.use_bucket = False
    what = "uploading directly instead" if uploads else "nothing needed uploading this time"
    deployment.warn(f"upload_bucket.bucket_name is {bucket!r}, which does not exist ({what}) — {fix}")


def upload(deployment: Deployment, archive: ArchiveInfo, digest: str) -> CodeLocation:
    """S3 when a bucket is set (falling back to a direct upload that fits), else direct."""
    target, limit, bucket = deployment.target, deployment.direct_upload_limit, deployment.stage.upload_bucket
    if bucket is None or not deployment.use_bucket:
        deployment.result.bytes_uploaded += archive.size
        return CodeLocation(archive)
    where = (deployment.stage.region_name, bucket.bucket_name, target.content_key(digest))
    try:
        s3_object, uploaded, warning = deployment.uploads.put(where, lambda: target.upload_to_s3(archive, digest))
    except AwsError as error:
        if archive.size > limit:
            raise UpdateError(
                f"uploading {archive.path.name} to s3://{bucket.bucket_name} failed ({error}), and at "
                f"{format_file_size(archive.size)} it is over the {format_file_size(limit)} direct upload limit"
            ) from None
        deployment.warn(f"upload to s3://{bucket.bucket_name} failed ({error}); falling back to direct upload")
        deployment.result.bytes_uploaded += archive.size
        return CodeLocation(archive)
    if warning:
        deployment.result.warnings.append(warning)
    deployment.result.bytes_uploaded += archive.size if uploaded else 0
    return CodeLocation(archive, s3_object)


# -- promotion: the exact artifact of another stage ----------------------------------------------

TAG_PROMOTED_FROM = "drover:promoted-from"


@dataclass
class Promotion:
    """What the source stage's function runs: the code and requirements a promotion copies."""

    source_name: str
    source: LambdaTarget
    live: LiveFunction
    requirements_digest: str | None
    function_digest: str
    layer: LayerVersion | None  # the source's requirements layer version (None: no requirements)
    scratch: Path
    notes: list[str] = field(default_factory=list)  # where the source's tags disagree with what it runs
    code_object: S3BucketFileVersion | None = None
    layer_object: S3BucketFileVersion | None = None


def same_function(source_name: str, source: Stage, target_name: str, target: Stage, function: str) -> SettingsError:
    """The error of a promotion whose source and target stages name one function (it would promote onto itself)."""
    return SettingsError(
        f"stages {source_name} and {target_name} name the same function, {function} (function_name "
        f"{source.function_name!r} and {target.function_name!r}); a promotion copies one function onto another "
        f"— point stage {target_name}'s function_name at its own function"
    )


def read_source(
    source_name: str,
    source: LambdaTarget,
    scratch: Path,
    phase: Phase,
    *,
    allow_untracked: bool,
    target_name: str,
    target: Stage,
    target_live: LiveFunction,
) -> Promotion:
    """Read the source function, check it is not the target (by the ARNs Lambda answers: a name and an ARN
    can name one function) and that drover deployed what it runs (unless untracked sources are allowed)."""
    with phase("read"):
        live = source.read_function()
    if unqualified_arn(live.arn) == unqualified_arn(target_live.arn):
        raise same_function(source_name, source.stage, target_name, target, unqualified_arn(live.arn))
    tags = live.tags
    tracked = tags.get(TAG_CODE_SHA256) == live.code_sha256 and bool(tags.get(TAG_FUNCTION_DIGEST))
    if not tracked and not allow_untracked:
        raise PreflightError(
            f"stage {source_name}: the code of {live.name} (CodeSha256 {live.code_sha256}) was not deployed by "
            f"drover (its {TAG_CODE_SHA256} tag is {tags.get(TAG_CODE_SHA256) or 'missing'}), so what it runs is of "
            "unknown provenance — deploy it with drover first, or pass --allow-untracked-source "
            "(allow-untracked-source: true) to promote it anyway"
        )
    layer = None
    for arn in live.layer_arns:
        if _is_requirements_layer(source.stage.layer_name, arn):
            layer = source.read_layer_version(arn)
    digest = None
    notes: list[str] = []
    if layer is not None:  # what the source runs, not what its tags say
        digest = layer.claimed_digest
        if digest is None:
            raise PreflightError(
                f"stage {source_name}: requirements layer {layer.arn} records no requirements digest in its "
                "description, so drover cannot label a copy of it — deploy the source stage with drover first"
            )
        tagged = tags.get(TAG_REQUIREMENTS_DIGEST)
        if tracked and tagged not in (None, digest):
            notes.append(
                f"stage {source_name}: {live.name}'s {TAG_REQUIREMENTS_DIGEST} tag is {tagged}, but it runs {layer.arn} "
                f"(CodeSha256 {layer.code_sha256}); promoting what it runs"
            )
    return Promotion(
        source_name=source_name,
        source=source,
        live=live,
        requirements_digest=digest,
        function_digest=tags.get(TAG_FUNCTION_DIGEST) or f"untracked:{live.code_sha256}",
        layer=layer,
        scratch=scratch,
        notes=notes,
    )


def promote(deployment: Deployment) -> None:
    """Plan the promotion, preflight it as a deploy (its uploads are the copies it downloads), then describe or
    apply the steps."""
    deployment.result.function_arn = deployment.live.arn
    promotion = deployment.promotion
    assert promotion is not None
    deployment.result.source_layer_arns = list(promotion.live.layer_arns)
    for note in promotion.notes:
        deployment.warn(note)
    with deployment.phase("compare"):
        steps = plan_promotion(deployment)
    preflight(deployment, _copies_to_upload(deployment, steps))
    run_steps(deployment, steps)
    finish(deployment)


def plan_promotion(deployment: Deployment) -> list[Step]:
    promotion, stage, live = deployment.promotion, deployment.stage, deployment.live
    assert promotion is not None
    source = promotion.live
    deployment.architecture = "arm64" if live.architecture == "arm64" else "x86_64"
    if source.architecture != live.architecture or source.runtime != live.runtime:
        raise PreflightError(
            f"stage {promotion.source_name} runs {source.runtime} on {source.architecture}, but {live.name} runs "
            f"{live.runtime} on {live.architecture}; the same artifact only runs on the same runtime and "
            "architecture — make the functions match"
        )
    steps: list[Step] = []
    copy_layer = _plan_layer_copy(deployment, promotion)
    if copy_layer:
        steps.append(copy_layer)
    if live.code_sha256 != source.code_sha256:
        steps.append(CopyCode(live.name, _code_source(deployment, promotion)))
    else:
        logger.info("Function code already the source's (CodeSha256 %s)", live.code_sha256)
    layers = _plan_layers(deployment, publishing=copy_layer is not None)
    if layers:
        steps.append(layers)
    wanted = {
        TAG_FUNCTION_DIGEST: promotion.function_digest,
        TAG_REQUIREMENTS_DIGEST: promotion.requirements_digest or "none",
        TAG_CODE_SHA256: source.code_sha256,
        TAG_PROMOTED_FROM: unqualified_arn(source.arn),
    }
    # the source's key stays beside its digest; a target's own key must never meet the source's digest
    source_key = (
        source.tags.get(TAG_DEPENDENCY_KEY)
        if source.tags.get(TAG_REQUIREMENTS_DIGEST) == wanted[TAG_REQUIREMENTS_DIGEST]
        else None
    )
    if source_key or TAG_DEPENDENCY_KEY in live.tags:
        wanted[TAG_DEPENDENCY_KEY] = source_key or "none"
    tags = {key: value for key, value in wanted.items() if live.tags.get(key) != value}
    if tags:
        steps.append(Tag(live.name, tags))
    if stage.publish:
        steps += _plan_version(deployment, changing=bool(steps), code_sha256=source.code_sha256)
    if stage.keep_layer_versions:
        prune = _plan_promotion_prune(deployment, promotion, stage.keep_layer_versions, publishing=bool(copy_layer))
        if prune:
            steps.append(prune)
    return steps


def _shares_source_layer(deployment: Deployment, promotion: Promotion) -> bool:
    """The target's requirements layer is the source's: same layer name in the same region."""
    source_stage, stage = promotion.source.stage, deployment.stage
    return source_stage.layer_name == stage.layer_name and source_stage.region_name == stage.region_name


def _plan_promotion_prune(deployment: Deployment, promotion: Promotion, keep: int, *, publishing: bool) -> Step | None:
    """keep_layer_versions as a deploy applies it, except on a layer the target shares with the source: there a
    promotion publishes nothing, and pruning would delete the source stage's versions (its rollbacks)."""
    if not _shares_source_layer(deployment, promotion):
        return _plan_prune(deployment, keep, publishing=publishing)
    deployment.warn(
        f"keep_layer_versions ({keep}) was not applied: stage {deployment.stage_name} shares requirements layer "
        f"{deployment.stage.layer_name} with stage {promotion.source_name}, whose deploys publish its versions, and "
        f"a promotion publishes none — set keep_layer_versions on stage {promotion.source_name} to prune them"
    )
    return None


def _plan_layer_copy(deployment: Deployment, promotion: Promotion) -> Step | None:
    layer, digest, stage = promotion.layer, promotion.requirements_digest, deployment.stage
    if layer is None or digest is None:
        return None
    source_stage = promotion.source.stage
    if _shares_source_layer(deployment, promotion):
        deployment.layer_arn = layer.arn  # the very layer version the source runs
        return None
    source_content = layer.code_sha256 or ""
    found = deployment.target.find_layer_version(
        digest, deployment.architecture, deployment.live.layer_arns, lambda: source_content, trust_attached=False
    )
    for forged in found.forged:
        deployment.warn(
            f"requirements layer version {forged.arn} records digest {digest} in its description, but its content "
            f"(CodeSha256 {forged.code_sha256}) is not what {promotion.live.name} runs ({source_content}); not used"
        )
    if found.found is not None:
        logger.info(
            "Requirements layer %s holds what %s runs (CodeSha256 %s)", found.found.arn, layer.arn, source_content
        )
        deployment.layer_arn = found.found.arn
        return None
    key = promotion.source.content_key(digest) if source_stage.upload_bucket else None
    promotion.layer_object = promotion.source.verified_object(key, layer.code_sha256 or "") if key else None
    if promotion.layer_object is not None:
        where = f"s3://{promotion.layer_object.bucket_name}/{promotion.layer_object.key}"
    elif layer.location and layer.location.startswith(("https://", "http://")):
        where = f"{layer.arn}'s content location"
    else:
        bucket = source_stage.upload_bucket
        looked = (
            f"no object at s3://{bucket.bucket_name}/{key} whose S3-verified SHA-256 is the layer's (was the layer "
            "published before upload_bucket was set?)"
            if bucket is not None and key is not None
            else "the source stage has no upload_bucket"
        )
        raise PreflightError(
            f"the content of {layer.arn} cannot be read: {looked}, and Lambda gives its location as "
            f"{layer.location or 'nothing'} — share the requirements_layer_name between the stages, or deploy "
            "the source with an upload_bucket from the start"
        )
    return CopyLayer(stage.layer_name, f"publish the content of {layer.arn} (digest {digest}) from {where}")


def _code_source(deployment: Deployment, promotion: Promotion) -> str:
    source_code = promotion.live.code_sha256
    source_stage = promotion.source.stage
    if source_stage.upload_bucket is not None and not promotion.function_digest.startswith("untracked:"):
        key = promotion.source.content_key(promotion.function_digest)
        promotion.code_object = promotion.source.verified_object(key, source_code)
    origin = (
        f"s3://{promotion.code_object.bucket_name}/{promotion.code_object.key}"
        if promotion.code_object
        else f"{promotion.live.name}'s code location"
    )
    return (
        f"live CodeSha256 {deployment.live.code_sha256 or 'none'} differs from stage {promotion.source_name}'s "
        f"{source_code}; copy it from {origin}"
    )


LAYER_COPY = "requirements.zip"
CODE_COPY = "function.zip"


def _copies_to_upload(deployment: Deployment, steps: list[Step]) -> list[ArchiveInfo]:
    """The source's artifacts the steps download and then upload, at the zipped sizes Lambda reports (their
    unzipped sizes are unknown); none where Lambda in the target's region reads the source's S3 object in place."""
    promotion = deployment.promotion
    assert promotion is not None
    copies: list[tuple[str, S3BucketFileVersion | None, int, str]] = []
    layer = promotion.layer
    if layer is not None and any(isinstance(step, CopyLayer) for step in steps):
        copies.append((LAYER_COPY, promotion.layer_object, layer.code_size or 0, layer.code_sha256 or ""))
    if any(isinstance(step, CopyCode) for step in steps):
        copies.append((CODE_COPY, promotion.code_object, promotion.live.code_size, promotion.live.code_sha256))
    return [
        ArchiveInfo(Path(name), size, code_sha256, 0)
        for name, s3_object, size, code_sha256 in copies
        if _location_in_target(deployment, s3_object, code_sha256) is None
    ]


def _fetch(promotion: Promotion, s3_object: S3BucketFileVersion | None, url: str | None, name: str) -> ArchiveInfo:
    """Download the source's artifact into the scratch directory (from S3 when verified there, else its URL)."""
    path = promotion.scratch / name
    if s3_object is not None:
        promotion.source.download_object(s3_object, path)
    elif url:
        download_url(url, path)
    else:
        raise UpdateError(f"Lambda gave no code location for {promotion.live.name}; cannot copy its code")
    return archive_of(path)


def _location_in_target(
    deployment: Deployment, s3_object: S3BucketFileVersion | None, code_sha256: str
) -> CodeLocation | None:
    """The source's S3 object used in place, when Lambda in the target's region can read it."""
    promotion = deployment.promotion
    assert promotion is not None
    bucket = promotion.source.stage.upload_bucket
    if s3_object is None or bucket is None or bucket.region_name != deployment.stage.region_name:
        return None
    return CodeLocation(ArchiveInfo(Path(s3_object.key), 0, code_sha256, 0), s3_object)


class CopyLayer(Step):
    kind = "publish-layer"

    def apply(self, deployment: Deployment) -> str:
        promotion = deployment.promotion
        assert promotion is not None and promotion.layer is not None and promotion.requirements_digest is not None
        expected = promotion.layer.code_sha256 or ""
        location = _location_in_target(deployment, promotion.layer_object, expected)
        if location is None:
            archive = _fetch(promotion, promotion.layer_object, promotion.layer.location, LAYER_COPY)
            _check_copy(archive, expected, promotion.layer.arn)
            location = upload(deployment, archive, promotion.requirements_digest)
        layer = deployment.target.publish_layer(location, promotion.requirements_digest, deployment.architecture)
        logger.info("Published requirements layer %s (a copy of %s)", layer.arn, promotion.layer.arn)
        return _converge(
            deployment, layer, promotion.requirements_digest, f"published {layer.arn}, a copy of {promotion.layer.arn}"
        )


class CopyCode(Step):
    kind = "update-code"

    def apply(self, deployment: Deployment) -> str:
        promotion = deployment.promotion
        assert promotion is not None
        expected = promotion.live.code_sha256
        location = _location_in_target(deployment, promotion.code_object, expected)
        if location is None:
            url = None if promotion.code_object else promotion.source.code_location()
            archive = _fetch(promotion, promotion.code_object, url, CODE_COPY)
            _check_copy(archive, expected, promotion.live.name)
            location = upload(deployment, archive, promotion.function_digest)
        deployment.live = deployment.target.update_code(location, deployment.live)
        deployment.result.function_updated = True
        logger.info("Updated %s to stage %s's code", deployment.live.name, promotion.source_name)
        return f"CodeSha256 is now {deployment.live.code_sha256}, stage {promotion.source_name}'s"


def _check_copy(archive: ArchiveInfo, expected: str, what: str) -> None:
    if archive.code_sha256 != expected:
        raise UpdateError(
            f"the downloaded copy of {what} has CodeSha256 {archive.code_sha256}, but Lambda reports {expected}; "
            "nothing was changed — rerun drover"
        )
