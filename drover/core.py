"""The Drover workflow: package, compare with the live function, apply only what differs."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from drover.archive import ArchiveInfo, write_zip
from drover.errors import FunctionNotFound, PackagingError, SettingsError
from drover.io import format_file_size
from drover.models import ALIAS_PATTERN, DeployResult, InstallSummary, Settings, Stage
from drover.options import DEFAULT_ARCHITECTURE, NO_INSTALL, AttachedLayer, InstallOutcome, RunOptions, Timings
from drover.packaging import (
    HashedFile,
    PackageFile,
    PackageLayout,
    PackagePlan,
    Partition,
    PendingPlan,
    function_entries,
    layout_package,
    plan_aside,
    unzipped_limit_problem,
)
from drover.progress import Progress, tracked
from drover.settings import select_stage, setting_location

if TYPE_CHECKING:
    from drover.deploy import AwsClients, LambdaTarget, LayerVersion, LiveFunction
    from drover.install import InstallRequest
    from drover.workflow import ArchiveBuilder, Deployment

logger = logging.getLogger("drover")
__all__ = ["DEFAULT_ARCHITECTURE", "NO_INSTALL", "AttachedLayer", "Drover", "InstallOutcome", "RunOptions", "Timings"]


class Drover:
    """Publish and update a Lambda function and its requirements layer from a package directory."""

    def __init__(
        self,
        settings: Settings,
        stage: str,
        interactive: bool = False,
        *,
        options: RunOptions | None = None,
        timings: Timings | None = None,
        settings_file: Path | None = None,
    ) -> None:
        self.stage_name = stage
        self.options = options or RunOptions()
        self.stage = _apply_overrides(select_stage(settings, stage), self.options)
        self.interactive = interactive
        self.timings = timings if timings is not None else Timings()  # the Action's also opens log groups
        self.progress: DeployResult | None = None  # the deploy's result while it runs: what an interruption reports
        self.settings_file = settings_file  # where the stage was read, for errors that point at its lines

    def located(self, error: BaseException) -> BaseException:
        """A function-not-found error naming where function_name and region_name were set; others unchanged."""
        if not isinstance(error, FunctionNotFound):
            return error
        origins = {key: self._origin(key) for key in OVERRIDE_NAMES}
        return error.located({key: origin for key, origin in origins.items() if origin})

    def _origin(self, key: str) -> str | None:
        """'--function-name (function-name)' when the option set it, else 'drover.yml:LINE:COLUMN' (None: unknown)."""
        overridden = self.options.function_name if key == "function_name" else self.options.region_name
        if overridden:
            return OVERRIDE_NAMES[key]
        return setting_location(self.settings_file, self.stage_name, key) if self.settings_file else None

    def track(self, result: DeployResult) -> None:
        """From here on an interruption reports what this result records as done."""
        self.progress = result

    def layout(self, install_path: Path, skip: Sequence[Path] = ()) -> PackageLayout:
        """Walk and partition the files (an archive dir inside the install path is left out)."""
        skipped = [*skip, *([self.options.archive_dir] if self.options.archive_dir is not None else [])]
        return layout_package(self.stage, install_path, self.options.working_directory, skipped)

    def package(self, install_path: Path, pending: PendingPlan | None = None) -> tuple[PackagePlan, DeployResult]:
        """Walk, partition and hash every byte; no archive is written. Size limits are checked before any read.

        Given a pending plan (package_aside's), it is waited for instead.
        """
        with self.timings.phase("package"):
            if pending is None:
                layout = self.checked_layout(install_path)
                pending = PendingPlan(lambda: layout, self.options.workers)  # hashed here
            with tracked(self.options.progress, "Hashing files"):
                plan = pending.result()
        return plan, self.package_result(plan, "deploy")

    def package_aside(self, install_path: Path, skip: Sequence[Path] = ()) -> PendingPlan:
        """Walk and hash in a child process while the caller talks to AWS (nothing is installed first).

        Its errors are raised by result(), where package() would have raised them.
        """
        return plan_aside(lambda: self.checked_layout(install_path, skip), self.options.workers)

    def checked_layout(
        self, install_path: Path, skip: Sequence[Path] = (), *, dependencies_in_layer: bool = False
    ) -> PackageLayout:
        """The layout a deploy packages: PackagingError when it is over Lambda's unzipped limit.

        dependencies_in_layer: the dependencies are a kept layer's, so only function code is read."""
        layout = self.layout(install_path, skip)
        if dependencies_in_layer:
            layout = PackageLayout(layout.function, (), layout.warnings)
        problem = unzipped_limit_problem(layout)
        if problem:
            raise PackagingError(problem)
        return layout

    def update(self, install_path: Path) -> DeployResult:
        """Install (when asked), package, and make the live function run exactly this package: a run of one stage."""
        from drover.pipeline import Pipeline

        return Pipeline([self], install_path, self.options).run_one()

    def roll_back(self) -> DeployResult:
        """Point the stage's alias back at the version it served before the last drover rollout."""
        from drover import workflow

        target, live = workflow.connect(self.stage, self.clients_for(self.stage.region_name), self.timings.phase)
        result = self._empty_result()
        deployment = self.deployment(target, live, _EMPTY_PLAN, result, _no_build)
        self.track(result)
        workflow.roll_back_alias(deployment)
        result.timings = dict(self.timings)
        return result

    def _empty_result(self, **fields: Any) -> DeployResult:
        """The result of a run that builds nothing (a promotion, a rollback)."""
        empty: dict[str, Any] = {
            "function_digest": None,
            "requirements_digest": None,
            "function_file_count": 0,
            "requirements_file_count": 0,
            "function_unzipped_size": 0,
            "requirements_unzipped_size": 0,
        }
        return DeployResult(
            stage=self.stage_name,
            mode=self.options.deploy_mode,
            function_name=self.stage.function_name,
            region_name=self.stage.region_name,
            **{**empty, **fields},
        )

    def build(self, install_path: Path) -> DeployResult:
        """Package-only: build both archives (the requirements one when non-empty) and report them."""
        from dataclasses import replace

        from drover.pipeline import Pipeline

        return Pipeline([self], install_path, replace(self.options, package_only=True)).run_one()

    def deployment(
        self,
        target: LambdaTarget,
        live: LiveFunction,
        package: PackagePlan,
        result: DeployResult,
        build_archive: ArchiveBuilder,
        **extra: Any,
    ) -> Deployment:
        """The deploy context of this run's stage: what every deploy, promotion or multi-stage run shares."""
        from drover.workflow import Deployment

        return Deployment(
            stage=self.stage,
            target=target,
            live=live,
            package=package,
            result=result,
            build_archive=build_archive,
            phase=self.timings.phase,
            dry_run=self.options.dry_run,
            direct_upload_limit=self.options.direct_upload_limit,
            stage_name=self.stage_name,
            ignore_alarms_at_start=self.options.ignore_alarms_at_start,
            **extra,
        )

    def clients_for(self, region_name: str) -> AwsClients:
        """The run's clients for a region: the given ones (their session, for another region), or new ones."""
        from drover.deploy import AwsClients

        given = self.options.aws
        if given is None:
            return AwsClients(region_name)
        if given.region_name == region_name:
            return given
        return given.for_region(region_name)

    def promote(self, source_name: str, source: Stage, *, allow_untracked: bool = False) -> DeployResult:
        """Make this stage's function run exactly what the source stage's function runs: its code, its requirements."""
        from drover import workflow
        from drover.deploy import LambdaTarget

        if source.function_identity == self.stage.function_identity:  # no AWS call needed to tell
            region, _, name = source.function_identity
            raise workflow.same_function(source_name, source, self.stage_name, self.stage, f"{name} in {region}")
        target, live = workflow.connect(self.stage, self.clients_for(self.stage.region_name), self.timings.phase)
        source_target = LambdaTarget(source, self.clients_for(source.region_name))
        with tempfile.TemporaryDirectory(prefix=".drover-promote-") as scratch:
            promotion = workflow.read_source(
                source_name,
                source_target,
                Path(scratch),
                self.timings.phase,
                allow_untracked=allow_untracked,
                target_name=self.stage_name,
                target=self.stage,
                target_live=live,
            )
            logger.info(
                "Promoting %s (CodeSha256 %s) from stage %s",
                promotion.live.name,
                promotion.live.code_sha256,
                source_name,
            )
            result = self._empty_result(
                function_digest=promotion.function_digest,
                requirements_digest=promotion.requirements_digest,
                promoted_from=source_name,
            )
            deployment = self.deployment(target, live, _EMPTY_PLAN, result, _no_build, promotion=promotion)
            self.track(result)
            workflow.promote(deployment)
        result.timings = dict(self.timings)
        return result

    @property
    def install_inputs(self) -> tuple[Path | None, Path | None]:
        """(install source, requirements): the stage's own when drover.yml names either, else the run's."""
        if self.stage.install_source is not None or self.stage.requirements is not None:
            return self.stage.install_source, self.stage.requirements
        return self.options.install_source, self.options.requirements

    @property
    def installs(self) -> bool:
        return self.install_inputs != (None, None)

    def install(
        self,
        install_path: Path,
        architecture: str,
        attached: Sequence[AttachedLayer] = (),
        outputs: Sequence[Path] = (),
    ) -> InstallOutcome:
        """pip/uv install the install source and requirements into install_path, when either is given.

        attached: the functions this install is for (a deploy). When an exact lock's dependency key is what
        every one of their attached requirements layers records, the dependencies are not installed: only the
        project is, each function keeps its layer, and the install path records which layer holds them.
        outputs: the run's other outputs (other installs), never read as the project's files.
        """
        if not self.installs:
            return NO_INSTALL
        from drover.install import DEPENDENCY_KEY_SKIP, install

        request = self.install_request(install_path, architecture, outputs)
        with self.timings.phase("install"):
            key, layers = self._layers_with_same_key(request, attached)
            skip = bool(layers) and all(layers) and not self.options.verify_dependencies
            holder = layers[0] if skip and layers else None
            with tracked(self.options.progress, "Installing packages"):
                installed = install(
                    request,
                    dependencies=not skip,
                    dependencies_layer=(holder.arn, holder.code_sha256 or "") if holder is not None else None,
                )
        summary = InstallSummary(
            skipped=installed.skipped or installed.dependencies_skipped,
            installer=installed.installer,
            lock=installed.lock,
            excluded_packages=list(installed.excluded_packages),
            excluded_bytes=installed.excluded_bytes,
            seconds=round(installed.seconds, 3),
            skip_reason=f"{DEPENDENCY_KEY_SKIP} {holder.arn} (trusted as what the function runs; not rebuilt)"
            if installed.dependencies_skipped and holder is not None
            else ("install inputs unchanged" if installed.skipped else None),
            dependency_key=key,
        )
        return InstallOutcome(
            summary=summary,
            dependency_key=key,
            kept_layers=tuple(layers) if installed.dependencies_skipped else (),
            audited_layers=tuple(layers) if self.options.verify_dependencies else (),
        )

    def install_request(self, install_path: Path, architecture: str, outputs: Sequence[Path] = ()) -> InstallRequest:
        """outputs: the run's other outputs (the default install path, other stages' installs); the archive dir is
        added: the install's walk of the project skips them all."""
        from drover.install import InstallRequest

        source, requirements = self.install_inputs
        outputs = [*outputs, *([self.options.archive_dir] if self.options.archive_dir is not None else [])]
        return InstallRequest(
            target=install_path,
            source=source,
            requirements=requirements,
            runtime=self.stage.compatible_runtime,
            architecture=architecture,
            exclude_runtime_packages=self.stage.exclude_runtime_packages,
            verbose=self.options.verbose,
            package_exclude_patterns=tuple(pattern.pattern for pattern in self.stage.package_exclude_patterns),
            skip=tuple(outputs),
        )

    def _layers_with_same_key(
        self, request: InstallRequest, attached: Sequence[AttachedLayer]
    ) -> tuple[str | None, list[LayerVersion | None]]:
        """The lock's dependency key, and for each function the attached requirements layer when it holds that
        key (a deploy only): its description records the key, or the function's tags record the key beside the
        layer's digest (a layer reused by digest keeps the description of the run that published it).

        function_file_patterns pick files out of the installed tree, which only an install can produce, so
        with patterns there is no key."""
        from drover.install import check_request, dependency_key

        if not attached or self.stage.function_file_patterns:
            return None, []
        check_request(request)  # bad paths fail as they would in the install, before any key is read
        key = dependency_key(request)
        if key is None:
            logger.info(
                "No exact lock (hash-pinned requirements, uv.lock, poetry.lock or pylock.toml): no dependency key"
            )
            return None, []
        layers = [_layer_recording(key, function) for function in attached]
        if all(layers):
            logger.info("Dependency key %s matches the attached layer %s", key[:12], layers[0].arn)  # type: ignore[union-attr]
        else:
            logger.info("Dependency key %s: the attached layer records another; installing", key[:12])
        return key, layers

    def write_archive(
        self, kind: str, files: Sequence[HashedFile | PackageFile], path: Path, progress: Progress | None = None
    ) -> ArchiveInfo:
        progress = self.options.progress if progress is None else progress
        total = sum(item.size for item in files)
        with self.timings.phase("archive"), tracked(progress, f"Packaging {path.name}", total, files=len(files)):
            archive = write_zip(path, files, self.options.workers, lambda size: progress.advance(size, files=1))
        logger.debug("Built %s archive: %s, %d files", kind, format_file_size(archive.size), archive.file_count)
        return archive

    def package_result(self, plan: PackagePlan, mode: str, install: InstallSummary | None = None) -> DeployResult:
        logger.info("Requirements digest: %s", plan.requirements.digest)
        logger.info("Function digest: %s", plan.function.digest)
        for warning in plan.warnings:
            logger.warning(warning)
        return DeployResult(
            install=install,
            stage=self.stage_name,
            mode=mode,  # type: ignore[arg-type]
            function_name=self.stage.function_name,
            region_name=self.stage.region_name,
            function_digest=plan.function.digest,
            requirements_digest=plan.requirements.digest,
            function_file_count=plan.function.file_count,
            requirements_file_count=plan.requirements.file_count,
            function_unzipped_size=plan.function.unzipped_size,
            requirements_unzipped_size=plan.requirements.unzipped_size,
            function_entries=function_entries(plan),
            warnings=list(plan.warnings),
        )


_EMPTY_PLAN = PackagePlan(Partition("function", ()), Partition("requirements", ()))


def _no_build(kind: str, files: Sequence[HashedFile | PackageFile]) -> ArchiveInfo:
    raise AssertionError(f"this run builds no {kind} archive")  # pragma: no cover


def _layer_recording(key: str, function: AttachedLayer) -> LayerVersion | None:
    from drover.deploy import TAG_DEPENDENCY_KEY, TAG_REQUIREMENTS_DIGEST

    layer = function.read()
    if layer is None or layer.claimed_digest is None:
        return None
    tagged = (
        function.tags.get(TAG_DEPENDENCY_KEY) == key
        and function.tags.get(TAG_REQUIREMENTS_DIGEST) == layer.claimed_digest
    )
    return layer if layer.claimed_dependency_key == key or tagged else None


def _apply_overrides(stage: Stage, options: RunOptions) -> Stage:
    stage = _override_target(stage, options)
    updates: dict[str, object] = {}
    if options.publish is not None:
        updates["publish"] = options.publish
    if options.alias:
        if not ALIAS_PATTERN.fullmatch(options.alias):
            raise SettingsError(
                f"alias {options.alias!r} is not a valid alias name (letters, digits, - and _, not only digits)"
            )
        updates["alias"] = options.alias
        updates["publish"] = True
    return stage.model_copy(update=updates) if updates else stage


OVERRIDE_NAMES = {"function_name": "--function-name (function-name)", "region_name": "--region (region)"}


def _override_target(stage: Stage, options: RunOptions) -> Stage:
    """function_name and region_name given for this run, validated with the whole stage like drover.yml values."""
    updates = {
        key: value
        for key, value in (("function_name", options.function_name), ("region_name", options.region_name))
        if value
    }
    if not updates:
        return stage
    try:
        return Stage.model_validate({**stage.model_dump(), **updates})
    except ValidationError as error:
        detail = error.errors()[0]
        key = str(detail["loc"][0]) if detail["loc"] else ""
        given = OVERRIDE_NAMES.get(key)
        what = f"{given} {updates[key]!r}" if given else "the overridden stage"
        message = str(detail["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{what}: {message}") from None
