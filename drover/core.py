"""The Drover workflow: package, compare with the live function, apply only what differs."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from drover.archive import ARCHIVE_NAMES, ArchiveInfo, archive_scratch, record_archive, write_zip
from drover.errors import PackagingError, SettingsError, UpdateError
from drover.io import format_file_size
from drover.models import ALIAS_PATTERN, DIRECT_UPLOAD_LIMIT, DeployResult, InstallSummary, Settings, Stage
from drover.packaging import (
    HashedFile,
    PackageFile,
    PackageLayout,
    PackagePlan,
    Partition,
    PendingPlan,
    layout_package,
    plan_aside,
    unzipped_limit_problem,
)
from drover.progress import NO_PROGRESS, Progress, tracked
from drover.settings import select_stage

if TYPE_CHECKING:
    from drover.deploy import AwsClients, LambdaTarget, LayerVersion, LiveFunction
    from drover.install import InstallRequest
    from drover.workflow import ArchiveBuilder, Deployment

logger = logging.getLogger("drover")

DEFAULT_ARCHITECTURE = "x86_64"


@dataclass
class RunOptions:
    """How a run behaves beyond what drover.yml says."""

    working_directory: Path = field(default_factory=Path.cwd)
    archive_dir: Path | None = None
    package_only: bool = False
    dry_run: bool = False
    publish: bool | None = None
    alias: str | None = None
    workers: int | None = None
    aws: AwsClients | None = None
    install_source: Path | None = None
    requirements: Path | None = None
    verbose: bool = False
    direct_upload_limit: int = DIRECT_UPLOAD_LIMIT
    function_name: str | None = None  # a per-run override of the stage's function_name (one stage only)
    region_name: str | None = None  # a per-run override of the stage's region_name (one stage only)
    progress: Progress = NO_PROGRESS  # where long work (install, packaging, uploads) reports; adapters render it
    verify_dependencies: bool = False  # --no-dependency-key: install anyway, fail if the attached layer differs

    @property
    def deploy_mode(self) -> Literal["dry-run", "deploy"]:
        """The mode of a run that talks to AWS (package-only runs never do)."""
        return "dry-run" if self.dry_run else "deploy"


class Timings(dict[str, float]):
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - start, 3)


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
    ) -> None:
        self.stage_name = stage
        self.options = options or RunOptions()
        self.stage = _apply_overrides(select_stage(settings, stage), self.options)
        self.interactive = interactive
        self.timings = timings if timings is not None else Timings()  # the Action's also opens log groups
        self.install_summary: InstallSummary | None = None
        self.dependency_key: str | None = None  # the exact lock's key, recorded on a layer this run publishes
        self.kept_layer: LayerVersion | None = None  # the attached layer whose dependency key matched: kept as is
        self._audited_layer: LayerVersion | None = None  # --no-dependency-key: the layer the install must match
        self.progress: DeployResult | None = None  # the deploy's result while it runs: what an interruption reports

    def layout(self, install_path: Path) -> PackageLayout:
        """Walk and partition the files (an archive dir inside the install path is left out)."""
        skip = [self.options.archive_dir] if self.options.archive_dir is not None else []
        return layout_package(self.stage, install_path, self.options.working_directory, skip)

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

    def package_aside(self, install_path: Path) -> PendingPlan:
        """Walk and hash in a child process while the caller talks to AWS (nothing is installed first).

        Its errors are raised by result(), where package() would have raised them.
        """
        return plan_aside(lambda: self.checked_layout(install_path), self.options.workers)

    def checked_layout(self, install_path: Path) -> PackageLayout:
        """The layout a deploy packages: PackagingError when it is over Lambda's unzipped limit."""
        layout = self.layout(install_path)
        if self.kept_layer is not None:  # the dependencies are the attached layer's: only function code is read
            layout = PackageLayout(layout.function, ())
        problem = unzipped_limit_problem(layout)
        if problem:
            raise PackagingError(problem)
        return layout

    def update(self, install_path: Path) -> DeployResult:
        """Install (when asked), package, and make the live function run exactly this package."""
        if self.options.package_only:
            return self.build(install_path)
        # nothing to install: the tree is final, so it is hashed (in a child process) while AWS is read
        aside = None if self._installs else self.package_aside(install_path)
        try:
            from drover import workflow  # pulls in botocore; package-only runs never import it

            clients = self.clients_for(self.stage.region_name)
            target, live = workflow.connect(self.stage, clients, self.timings.phase, self.options.progress)
            architecture = self.stage.architecture or live.architecture  # install for the live architecture
            self.install(
                install_path, architecture, lambda: target.attached_requirements_layer(live.layer_arns), live.tags
            )
        except BaseException:
            if aside is not None:
                aside.cancel()
            raise
        plan, result = self.package(install_path, aside)
        if aside is not None:  # the walk and hash overlapped the AWS read: their own time, not the wait
            self.timings["package"] = max(self.timings["package"], aside.seconds)
        self._audit_dependency_key(plan)
        if self.kept_layer is not None:
            result.requirements_digest = self.kept_layer.digest
        result.mode = self.options.deploy_mode
        self.progress = result
        with archive_scratch(self.options.archive_dir) as directory:

            def build_archive(kind: str, files: Sequence[HashedFile | PackageFile]) -> ArchiveInfo:
                archive = self.write_archive(kind, files, directory / ARCHIVE_NAMES[kind])
                record_archive(result, archive, kind, self.options.archive_dir)
                return archive

            deployment = self.deployment(
                target,
                live,
                plan,
                result,
                build_archive,
                dependency_key=self.dependency_key,
                kept_layer=self.kept_layer,
            )
            workflow.deploy(deployment)
        result.timings = dict(self.timings)
        return result

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
            result = DeployResult(
                stage=self.stage_name,
                mode=self.options.deploy_mode,
                function_name=self.stage.function_name,
                region_name=self.stage.region_name,
                function_digest=promotion.function_digest,
                requirements_digest=promotion.requirements_digest,
                function_file_count=0,
                requirements_file_count=0,
                function_unzipped_size=0,
                requirements_unzipped_size=0,
                promoted_from=source_name,
            )
            empty = PackagePlan(Partition("function", ()), Partition("requirements", ()))

            def no_build(kind: str, files: Sequence[HashedFile | PackageFile]) -> ArchiveInfo:
                raise AssertionError(f"a promotion builds no {kind} archive")  # pragma: no cover

            deployment = self.deployment(
                target, live, empty, result, no_build, stage_name=self.stage_name, promotion=promotion
            )
            self.progress = result  # what an interruption reports
            workflow.promote(deployment)
        result.timings = dict(self.timings)
        return result

    def build(self, install_path: Path) -> DeployResult:
        """Package-only: build both archives (the requirements one when non-empty) and report them.

        Each file is read once: the archive writer hashes what it compresses, and the digests come
        from those hashes.
        """
        self.install(install_path, self.stage.architecture or DEFAULT_ARCHITECTURE)
        with self.timings.phase("package"):
            layout = self.layout(install_path)
        problem = unzipped_limit_problem(layout)
        if problem:
            logger.warning("%s (a deploy would stop here)", problem)
        archives: list[tuple[ArchiveInfo, str]] = []
        with archive_scratch(self.options.archive_dir) as directory:
            for kind, files in (("function", layout.function), ("requirements", layout.requirements)):
                if files:
                    archives.append((self.write_archive(kind, files, directory / ARCHIVE_NAMES[kind]), kind))
            partitions = {kind: Partition(kind, archive.files) for archive, kind in archives}
            plan = PackagePlan(partitions["function"], partitions.get("requirements", Partition("requirements", ())))
            result = self.package_result(plan, "package-only")
            for archive, kind in archives:
                record_archive(result, archive, kind, self.options.archive_dir)
        if problem:
            result.warnings.append(problem)
        result.timings = dict(self.timings)
        return result

    @property
    def _installs(self) -> bool:
        return self.options.install_source is not None or self.options.requirements is not None

    def install(
        self,
        install_path: Path,
        architecture: str,
        attached_layer: Callable[[], LayerVersion | None] | None = None,
        live_tags: Mapping[str, str] | None = None,
    ) -> None:
        """pip/uv install the install source and requirements into install_path, when either is given.

        With an exact lock whose dependency key the attached requirements layer (read through attached_layer)
        records, the dependencies are not installed: only the project is, and the deploy keeps that layer.
        """
        # each run decides afresh: a Drover deploying twice must not keep the first run's layer or key
        self.kept_layer = self._audited_layer = None
        self.dependency_key = None
        self.install_summary = None
        if not self._installs:
            return
        from drover.install import DEPENDENCY_KEY_SKIP, install

        request = self._install_request(install_path, architecture)
        with self.timings.phase("install"):
            layer = self._layer_with_same_key(request, attached_layer, live_tags or {})
            skip = layer is not None and not self.options.verify_dependencies
            with tracked(self.options.progress, "Installing packages"):
                installed = install(request, dependencies=not skip)
        if installed.dependencies_skipped:
            self.kept_layer = layer
        elif layer is not None and self.options.verify_dependencies:
            self._audited_layer = layer
        self.install_summary = InstallSummary(
            skipped=installed.skipped or installed.dependencies_skipped,
            installer=installed.installer,
            lock=installed.lock,
            excluded_packages=list(installed.excluded_packages),
            excluded_bytes=installed.excluded_bytes,
            seconds=round(installed.seconds, 3),
            skip_reason=DEPENDENCY_KEY_SKIP
            if installed.dependencies_skipped
            else ("install inputs unchanged" if installed.skipped else None),
            dependency_key=self.dependency_key,
        )

    def _install_request(self, install_path: Path, architecture: str) -> InstallRequest:
        from drover.install import InstallRequest

        return InstallRequest(
            target=install_path,
            source=self.options.install_source,
            requirements=self.options.requirements,
            runtime=self.stage.compatible_runtime,
            architecture=architecture,
            exclude_runtime_packages=self.stage.exclude_runtime_packages,
            verbose=self.options.verbose,
            package_exclude_patterns=tuple(pattern.pattern for pattern in self.stage.package_exclude_patterns),
        )

    def _layer_with_same_key(
        self,
        request: InstallRequest,
        attached_layer: Callable[[], LayerVersion | None] | None,
        live_tags: Mapping[str, str],
    ) -> LayerVersion | None:
        """The attached requirements layer when it holds this run's dependency key (a deploy only): its
        description records the key, or the function's tags record the key beside the layer's digest (a
        layer reused by digest keeps the description of the run that published it).

        function_file_patterns pick files out of the installed tree, which only an install can produce, so
        with patterns there is no key."""
        from drover.deploy import TAG_DEPENDENCY_KEY, TAG_REQUIREMENTS_DIGEST
        from drover.install import check_request, dependency_key

        if attached_layer is None or self.stage.function_file_patterns:
            return None
        check_request(request)  # bad paths fail as they would in the install, before any key is read
        self.dependency_key = dependency_key(request)
        if self.dependency_key is None:
            logger.info("No exact lock: no dependency key, the install runs")
            return None
        layer = attached_layer()
        tagged = live_tags.get(TAG_DEPENDENCY_KEY) == self.dependency_key
        recorded = layer is not None and (
            layer.dependency_key == self.dependency_key
            or (tagged and layer.digest is not None and live_tags.get(TAG_REQUIREMENTS_DIGEST) == layer.digest)
        )
        if layer is None or not recorded or layer.digest is None:
            logger.info("Dependency key %s: the attached layer records another; installing", self.dependency_key[:12])
            return None
        logger.info("Dependency key %s matches the attached layer %s", self.dependency_key[:12], layer.arn)
        return layer

    def _audit_dependency_key(self, plan: PackagePlan) -> None:
        """--no-dependency-key: the tree installed anyway must be the layer the key would have kept."""
        layer = self._audited_layer
        if layer is None or self.install_summary is None:
            return
        if plan.requirements.digest != layer.digest:
            raise UpdateError(
                f"dependency key audit failed: the attached layer {layer.arn} records dependency key "
                f"{self.dependency_key}, the same as this lock's, but its requirements digest {layer.digest} differs "
                f"from the installed tree's {plan.requirements.digest} — a key match would have deployed the wrong "
                "dependencies; report this as a drover bug (and deploy with --no-dependency-key meanwhile)"
            )
        self.install_summary.verified = True
        logger.info("Dependency key audit: the installed tree matches the attached layer %s", layer.arn)

    def write_archive(self, kind: str, files: Sequence[HashedFile | PackageFile], path: Path) -> ArchiveInfo:
        progress = self.options.progress
        total = sum(item.size for item in files)
        with self.timings.phase("archive"), tracked(progress, f"Packaging {path.name}", total, files=len(files)):
            archive = write_zip(path, files, self.options.workers, lambda size: progress.advance(size, files=1))
        logger.debug("Built %s archive: %s, %d files", kind, format_file_size(archive.size), archive.file_count)
        return archive

    def package_result(self, plan: PackagePlan, mode: str) -> DeployResult:
        logger.info("Requirements digest: %s", plan.requirements.digest)
        logger.info("Function digest: %s", plan.function.digest)
        return DeployResult(
            install=self.install_summary,
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
        )


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
