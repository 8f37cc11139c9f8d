"""One pipeline for one stage or many: a run of one stage is a run of one stage.

Every stage of a run goes through the same actions, in this order, each a small step over the stages still
standing (a stage that fails leaves the run; the others go on):

1. connect   read each live function (at most MAX_CONCURRENT_FUNCTIONS at a time) and check drover can update it;
2. install   once per distinct install request: stages with the same inputs share one install (and the dependency
             key, decided on every function they deploy); a failed install fails every stage that shares it;
3. package   walk and hash once per distinct layout, each file read once; each distinct archive built once;
4. plan      each requirements layer version the run needs (region, layer name, digest, architecture) is looked up
             once, then each stage's steps; every AWS read happens here, before any write;
5. preflight every limit and setting AWS can check, for every stage;
6. layers    publish each missing requirements layer version once; a failed publish fails every stage that was to
             attach it, before any write of theirs: no function's code changes before its layer exists;
7. apply     each stage's own steps (code, layers, tags, version, alias, prune), stages concurrently.

A dry run walks the same actions and describes the steps instead of applying them. A run of one stage raises
its failure; a run of several lists every stage, failed or not.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from drover.archive import ARCHIVE_NAMES, ArchiveInfo, archive_scratch, record_archive
from drover.errors import DroverError, InstallError, SettingsError, one_line
from drover.models import DeployResult, MultiResult, RunTotals, StageFailure
from drover.options import DEFAULT_ARCHITECTURE, NO_INSTALL, AttachedLayer, InstallOutcome, RunOptions
from drover.packaging import HashedFile, PackageFile, PackageLayout, PackagePlan, Partition, PendingPlan, hash_files
from drover.progress import NO_PROGRESS, Progress, tracked

if TYPE_CHECKING:
    from drover.deploy import AwsClients, LambdaTarget, LayerVersion, LiveFunction
    from drover.install import InstallRequest
    from drover.models import InstallSummary, Stage
    from drover.options import Timings
    from drover.workflow import ArchiveBuilder, Deployment, LayerKey, Step, Uploads

logger = logging.getLogger("drover")
Mode = Literal["package-only", "dry-run", "deploy"]

MAX_CONCURRENT_FUNCTIONS = 8
STAGE_INSTALLS_SUFFIX = ".stages"  # <install path>.stages/<key>: the installs of stages with their own requirements
current_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("drover_stage", default=None)


class StagePrefix(logging.Filter):
    """Prefix each log line with the stage it is about, so interleaved lines of concurrent stages stay readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        stage = current_stage.get()
        if stage and not getattr(record, "drover_stage_prefixed", False):
            record.msg = f"[{stage.replace('%', '%%')}] {record.msg}"
            record.drover_stage_prefixed = True
        return True


class StageWork(Protocol):
    """What the pipeline asks of a stage (drover.Drover is one): its settings, and the work done on one stage."""

    stage_name: str
    stage: Stage
    options: RunOptions
    timings: Timings
    progress: DeployResult | None

    @property
    def installs(self) -> bool: ...
    @property
    def install_inputs(self) -> tuple[Path | None, Path | None]: ...
    def track(self, result: DeployResult) -> None: ...
    def located(self, error: BaseException) -> BaseException: ...
    def clients_for(self, region_name: str) -> AwsClients: ...
    def install(
        self,
        install_path: Path,
        architecture: str,
        attached: Sequence[AttachedLayer] = (),
        outputs: Sequence[Path] = (),
    ) -> InstallOutcome: ...
    def install_request(
        self, install_path: Path, architecture: str, outputs: Sequence[Path] = ()
    ) -> InstallRequest: ...
    def layout(self, install_path: Path, skip: Sequence[Path] = ()) -> PackageLayout: ...
    def checked_layout(
        self, install_path: Path, skip: Sequence[Path] = (), *, dependencies_in_layer: bool = False
    ) -> PackageLayout: ...
    def package_aside(self, install_path: Path, skip: Sequence[Path] = ()) -> PendingPlan: ...
    def write_archive(
        self, kind: str, files: Sequence[HashedFile | PackageFile], path: Path, progress: Progress | None = None
    ) -> ArchiveInfo: ...
    def package_result(self, plan: PackagePlan, mode: str, install: InstallSummary | None = None) -> DeployResult: ...
    def deployment(
        self,
        target: LambdaTarget,
        live: LiveFunction,
        package: PackagePlan,
        result: DeployResult,
        build_archive: ArchiveBuilder,
        **extra: Any,
    ) -> Deployment: ...


@dataclass
class StageRun:
    """One stage's way through the pipeline: what each action found or decided for it."""

    drover: StageWork
    target: LambdaTarget | None = None
    live: LiveFunction | None = None
    install_dir: Path | None = None
    outcome: InstallOutcome = NO_INSTALL
    install_index: int = 0  # this stage's place among the functions its install was decided for
    kept_layer: LayerVersion | None = None  # the dependencies are this attached layer's: no install of them
    plan: PackagePlan | None = None
    result: DeployResult | None = None
    deployment: Deployment | None = None
    steps: list[Step] = field(default_factory=list)
    error: Exception | None = None
    failure: StageFailure | None = None

    @property
    def name(self) -> str:
        return self.drover.stage_name

    @property
    def standing(self) -> bool:
        return self.error is None


@dataclass
class LayerGroup:
    """The stages that attach one requirements layer version: looked up once, published (when missing) once."""

    runs: list[StageRun]
    planner: StageRun | None = None  # the stage whose deployment planned the publish
    step: Step | None = None


@dataclass
class _Archives:
    """Each distinct archive built once, whichever stage asks first; the others wait for it."""

    directory: Path
    named_by_digest: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    built: dict[tuple[str, str], Future[ArchiveInfo]] = field(default_factory=dict)

    def get(self, kind: str, digest: str, build: Callable[[Path], ArchiveInfo]) -> ArchiveInfo:
        with self.lock:
            future = self.built.get((kind, digest))
            owner = future is None
            if future is None:
                future = self.built[(kind, digest)] = Future()
        if owner:
            try:
                future.set_result(build(self.directory / archive_name(kind, digest, self.named_by_digest)))
            except BaseException as error:
                future.set_exception(error)
        return future.result()


def archive_name(kind: str, digest: str, named_by_digest: bool) -> str:
    """function.zip for a run of one stage (what the docs promise); kind-digest.zip when several share a directory.

    Never a stage name: a name is the user's text, not a safe path component."""
    return f"{kind}-{digest[:16]}.zip" if named_by_digest else ARCHIVE_NAMES[kind]


def stage_installs(install_path: Path) -> Path:
    """Where the installs of stages with their own requirements go: beside the install path, never inside it
    (the install path's own install replaces it whole, and its walk must not see them)."""
    resolved = install_path.resolve()
    return resolved.with_name(resolved.name + STAGE_INSTALLS_SUFFIX)


def _failure(name: str, drover: StageWork, error: BaseException, result: DeployResult | None) -> StageFailure:
    code = error.exit_code if isinstance(error, DroverError) else 1
    message = one_line(error)
    if not isinstance(error, DroverError):
        message = f"unexpected {type(error).__name__}: {message}"
    return StageFailure(
        stage=name,
        function_name=drover.stage.function_name,
        region_name=drover.stage.region_name,
        error=message,
        exit_code=code,
        actions=[action for action in (result.actions if result else []) if action.done],
    )


class Pipeline:
    """Deploy (or dry-run, or package) one or several stages of one settings file in one run."""

    def __init__(
        self,
        drovers: Sequence[StageWork],
        install_path: Path,
        options: RunOptions,
        *,
        max_workers: int = MAX_CONCURRENT_FUNCTIONS,
    ) -> None:
        self.runs = [StageRun(drover) for drover in drovers]
        self.install_path = install_path
        self.options = options
        self.max_workers = max_workers
        self.several = len(self.runs) > 1
        # stages packaged and uploaded concurrently would interleave their bars: progress for one stage only
        self.concurrent_progress = NO_PROGRESS if self.several else options.progress
        self.layers_published = 0
        self._scratch = contextlib.ExitStack()
        if self.several and not any(isinstance(existing, StagePrefix) for existing in logger.filters):
            logger.addFilter(StagePrefix())

    # -- the two ways out: one stage's result (its failure raised), or every stage's -------------------------

    def run_one(self) -> DeployResult:
        self.execute()
        run = self.runs[0]
        if run.error is not None:
            raise run.error
        assert run.result is not None
        return run.result

    def run(self) -> MultiResult:
        start = time.perf_counter()
        self.execute()
        return self._result(time.perf_counter() - start)

    def progress(self) -> list[DeployResult | None]:
        """What each stage has written so far (for an interruption's report)."""
        return [run.drover.progress for run in self.runs]

    def execute(self) -> None:
        with self._scratch:  # a dry run's installs, removed when the run ends
            if self.options.package_only:
                self._package_only()
            else:
                self._deploy()
        for run in self.runs:
            if run.error is not None and self.several:
                run.failure = _failure(run.name, run.drover, run.drover.located(run.error), run.result)
                logger.error("stage %s failed: %s", run.name, run.failure.error)

    # -- package only: no AWS call at all --------------------------------------------------------------------

    def _package_only(self) -> None:
        self._install(attach=False)
        named_by_digest = self.several
        publish = _keep_every_archive if named_by_digest else None
        with archive_scratch(self.options.archive_dir, publish) as directory:
            built: dict[tuple[object, ...], tuple[PackagePlan, list[tuple[ArchiveInfo, str]], str | None]] = {}
            for run in self._standing():
                with self._stage(run):
                    try:
                        key = self._walk_key(run)
                        if key not in built:
                            built[key] = self._build_archives(run, directory, named_by_digest)
                        plan, archives, problem = built[key]
                        result = run.drover.package_result(plan, "package-only", run.outcome.summary)
                        for archive, kind in archives:
                            record_archive(result, archive, kind, self.options.archive_dir)
                        if problem:
                            result.warnings.append(problem)
                        result.timings = dict(run.drover.timings)
                        run.result = result
                    except Exception as error:
                        run.error = error
            self._raise_a_single_failure()

    def _build_archives(
        self, run: StageRun, directory: Path, named_by_digest: bool
    ) -> tuple[PackagePlan, list[tuple[ArchiveInfo, str]], str | None]:
        """Build the stage's archives; each file is read once (the writer hashes what it compresses)."""
        from drover.packaging import unzipped_limit_problem

        assert run.install_dir is not None
        with run.drover.timings.phase("package"):
            layout = run.drover.layout(run.install_dir, self._skip())
        problem = unzipped_limit_problem(layout)
        if problem:
            logger.warning("%s (a deploy would stop here)", problem)
        written: list[tuple[ArchiveInfo, str]] = []
        with tempfile.TemporaryDirectory(prefix=".building-", dir=directory) as building:
            for kind, files in (("function", layout.function), ("requirements", layout.requirements)):
                if files:
                    written.append((run.drover.write_archive(kind, files, Path(building) / ARCHIVE_NAMES[kind]), kind))
            archives: list[tuple[ArchiveInfo, str]] = []
            for archive, kind in written:  # all of a stage's archives, or none of them
                digest = Partition(kind, archive.files).digest or ""
                final = directory / archive_name(kind, digest, named_by_digest)
                os.replace(archive.path, final)
                archives.append((replace(archive, path=final), kind))
        partitions = {kind: Partition(kind, archive.files) for archive, kind in archives}
        plan = PackagePlan(
            partitions["function"], partitions.get("requirements", Partition("requirements", ())), layout.warnings
        )
        return plan, archives, problem

    # -- deploy / dry run ------------------------------------------------------------------------------------

    def _deploy(self) -> None:
        pending = self._package_aside()
        try:
            self._connect()
            self._install(attach=True)
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        self._package(pending)
        named_by_digest = self.several
        publish = _keep_every_archive if named_by_digest else None
        with archive_scratch(self.options.archive_dir, publish) as directory:
            archives = _Archives(directory, named_by_digest)
            groups = self._plan(archives)
            self._each(self._preflight)
            self._publish_layers(groups)
            self._each(self._apply)
            self._each(self._prune_and_finish)  # deletes only after every write of the run
            self._raise_a_single_failure()

    def _package_aside(self) -> PendingPlan | None:
        """A run of one stage that installs nothing: its tree is final, so it is walked and hashed in a child
        process while AWS is read."""
        if self.several or self.runs[0].drover.installs or self.options.package_only:
            return None
        return self.runs[0].drover.package_aside(self.install_path, self._skip())

    def _connect(self) -> None:
        from drover import workflow

        clients: dict[str, AwsClients] = {}
        for run in self._standing():  # made here: boto3 sessions are not safe to make clients from in threads
            region = run.drover.stage.region_name
            try:
                if region not in clients:
                    clients[region] = run.drover.clients_for(region)
                    _ = clients[region].lambda_, clients[region].s3
            except Exception as error:
                run.error = error

        def connect(run: StageRun) -> None:
            drover = run.drover
            run.target, run.live = workflow.connect(
                drover.stage, clients[drover.stage.region_name], drover.timings.phase, self.concurrent_progress
            )

        self._each(connect)

    def _install(self, *, attach: bool) -> None:
        """Install once per distinct request; a failed install fails every stage that shares it."""
        groups: dict[tuple[object, ...], list[StageRun]] = {}
        for run in self._standing():
            if not run.drover.installs:
                run.install_dir = self.install_path
                continue
            key = self._install_key(run)
            groups.setdefault(key, []).append(run)
        default_taken = False
        for key, runs in groups.items():
            first = runs[0]
            directory = self.install_path
            if first.drover.install_inputs != (self.options.install_source, self.options.requirements) or default_taken:
                directory = self._stage_install_dir(key)
            else:
                default_taken = True
            self._install_group(runs, directory, attach=attach)
        if attach:
            self._each(self._keep_recorded_layer, [run for run in self._standing() if not run.drover.installs])

    def _install_key(self, run: StageRun) -> tuple[object, ...]:
        request = run.drover.install_request(self.install_path, self._architecture(run))
        return (
            str(request.source.resolve()) if request.source else None,
            str(request.requirements.resolve()) if request.requirements else None,
            request.runtime,
            request.architecture,
            request.exclude_runtime_packages,
            request.package_exclude_patterns,
        )

    def _architecture(self, run: StageRun) -> str:
        stage = run.drover.stage
        return stage.architecture or (run.live.architecture if run.live else None) or DEFAULT_ARCHITECTURE

    def _stage_install_dir(self, key: tuple[object, ...]) -> Path:
        if self.install_path.resolve() == self.options.working_directory.resolve():
            raise SettingsError(
                "stages with their own requirements or install_source are installed beside --install-path, "
                "which is the working directory here — pass --install-path DIR (e.g. build/lambda)"
            )
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        return stage_installs(self.install_path) / digest

    def _install_group(self, runs: list[StageRun], directory: Path, *, attach: bool) -> None:
        first = runs[0]
        attached = (
            [
                AttachedLayer(partial(run.target.attached_requirements_layer, run.live.layer_arns), run.live.tags)
                for run in runs
                if run.target is not None and run.live is not None
            ]
            if attach
            else []
        )
        with self._stage(first):
            try:
                directory = self._install_target(first, directory)
                outcome = _install_with_permission(
                    first.drover, directory, self._architecture(first), attached, self._outputs()
                )
            except Exception as error:  # every stage that shares this install fails, before any write
                for run in runs:
                    run.error = error
                return
        for index, run in enumerate(runs):
            run.install_dir, run.outcome, run.install_index = directory, outcome, index
            run.kept_layer = outcome.kept_layer(index)

    def _install_target(self, run: StageRun, directory: Path) -> Path:
        """A dry run never replaces an install path: it reads it as it is when it holds this very install, else
        installs into a scratch sibling that the run removes."""
        from drover.install import holds_this_install

        if not self.options.dry_run:
            return directory
        if holds_this_install(run.drover.install_request(directory, self._architecture(run))):
            return directory
        directory.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix=f".{directory.name}.dry-run-", dir=directory.parent)
        return Path(self._scratch.enter_context(scratch))

    def _keep_recorded_layer(self, run: StageRun) -> None:
        """An install path that a key-matched run filled holds only the project: keep the layer it recorded."""
        from drover.install import dependencies_elsewhere

        record = dependencies_elsewhere(self.install_path)
        if record is None:
            return
        assert run.target is not None and run.live is not None
        fix = (
            "rerun with the --requirements/--install-source that filled it (the dependency key then keeps the "
            "layer), or install the dependencies into it"
        )
        attached = run.target.attached_requirements_layer(run.live.layer_arns)
        layer: LayerVersion | None = None
        if record.code_sha256 is not None and attached is not None and attached.code_sha256 == record.code_sha256:
            layer = attached  # the very content the install path was made for
        elif record.layer_arn is not None and record.code_sha256 is not None:
            recorded = run.target.read_layer_version(record.layer_arn)
            layer = recorded if recorded is not None and recorded.code_sha256 == record.code_sha256 else None
        if layer is None:
            raise SettingsError(
                f"{self.install_path} holds only the project: its dependencies were left in requirements layer "
                f"{record.layer_arn or '(not recorded)'}, which {run.drover.stage.function_name} cannot keep — {fix}"
            )
        run.kept_layer = layer
        warning = (
            f"{self.install_path} holds only the project (its dependencies are in {layer.arn}, recorded by the run "
            "that installed it): keeping that layer attached"
        )
        logger.warning(warning)
        run.outcome = InstallOutcome(dependency_key=_recorded_key(layer, run.live.tags), kept_layers=(layer,))

    def _package(self, pending: PendingPlan | None) -> None:
        """One walk per distinct layout; each file hashed once."""
        plans: dict[tuple[object, ...], PackagePlan | Exception] = {}
        hashed: dict[PackageFile, HashedFile] = {}
        for run in self._standing():
            key = self._walk_key(run)
            if key not in plans:
                with self._stage(run), run.drover.timings.phase("package"):
                    try:
                        plans[key] = self._walk_and_hash(run, hashed, pending)
                    except Exception as error:
                        plans[key] = error
            planned = plans[key]
            if isinstance(planned, Exception):
                run.error = planned
                continue
            run.plan = planned
            with self._stage(run):  # its digest lines carry the stage's name
                result = run.drover.package_result(planned, self.options.deploy_mode, run.outcome.summary)
            if run.kept_layer is not None:
                result.requirements_digest = run.kept_layer.claimed_digest
                if run.outcome.summary is None:
                    result.warnings.append(
                        f"{self.install_path} holds only the project: kept requirements layer {run.kept_layer.arn}"
                    )
            run.result = result
            run.drover.track(result)  # what an interruption reports

    def _walk_key(self, run: StageRun) -> tuple[object, ...]:
        stage = run.drover.stage
        return (
            str(run.install_dir.resolve()) if run.install_dir else None,
            tuple(pattern.pattern for pattern in stage.function_file_patterns),
            tuple(str(path) for path in stage.function_extra_paths),
            tuple(pattern.pattern for pattern in stage.package_exclude_patterns),
            run.kept_layer is not None,
        )

    def _walk_and_hash(
        self, run: StageRun, hashed: dict[PackageFile, HashedFile], pending: PendingPlan | None
    ) -> PackagePlan:
        assert run.install_dir is not None
        progress = self.options.progress
        if pending is not None:
            with tracked(progress, "Hashing files"):
                plan = pending.result()
            run.drover.timings["package"] = max(run.drover.timings.get("package", 0.0), pending.seconds)
            if run.kept_layer is not None:
                plan = PackagePlan(plan.function, Partition("requirements", ()), plan.warnings)
            return plan
        layout = run.drover.checked_layout(
            run.install_dir, self._skip(), dependencies_in_layer=run.kept_layer is not None
        )
        with tracked(progress, "Hashing files"):
            return self._hash(layout, hashed)

    def _hash(self, layout: PackageLayout, hashed: dict[PackageFile, HashedFile]) -> PackagePlan:
        unread = [file for file in (*layout.function, *layout.requirements) if file not in hashed]
        for done in hash_files(unread, self.options.workers):
            hashed[done.file] = done
        return PackagePlan(
            Partition("function", tuple(hashed[file] for file in layout.function)),
            Partition("requirements", tuple(hashed[file] for file in layout.requirements)),
            layout.warnings,
        )

    def _skip(self) -> list[Path]:
        """What no stage's walk may read: every output of this run (archives, other stages' installs)."""
        return [stage_installs(self.install_path)]

    def _outputs(self) -> list[Path]:
        """What no install's walk of a project may read: every install of this run (the archive dir is the stage's)."""
        return [self.install_path, stage_installs(self.install_path)]

    # -- plan: every AWS read, layers first ------------------------------------------------------------------

    def _plan(self, archives: _Archives) -> list[LayerGroup]:
        from drover.workflow import Uploads

        uploads = Uploads()
        for run in self._standing():
            run.deployment = self._deployment(run, archives, uploads)
        groups = self._layer_groups()
        for group in groups:
            self._plan_layer_group(group)
        pruning: set[tuple[str, str]] = set()
        for run in self._standing():
            assert run.deployment is not None
            stage = run.drover.stage
            name = (stage.region_name, stage.layer_name)
            run.deployment.prunes = bool(stage.keep_layer_versions) and name not in pruning
            if run.deployment.prunes:
                pruning.add(name)
        grouped = {id(run) for group in groups for run in group.runs}
        self._each(lambda run: self._plan_stage(run, grouped=id(run) in grouped))
        return groups

    def _deployment(self, run: StageRun, archives: _Archives, uploads: Uploads) -> Deployment:
        assert run.target is not None and run.live is not None and run.plan is not None and run.result is not None
        result, plan, drover = run.result, run.plan, run.drover

        def build_archive(kind: str, files: Sequence[HashedFile | PackageFile]) -> ArchiveInfo:
            partition = plan.function if kind == "function" else plan.requirements
            assert partition.digest is not None
            archive = archives.get(
                kind, partition.digest, lambda path: drover.write_archive(kind, files, path, self.concurrent_progress)
            )
            record_archive(result, archive, kind, self.options.archive_dir)
            return archive

        result.function_arn = run.live.arn
        return drover.deployment(
            run.target,
            run.live,
            plan,
            result,
            build_archive,
            dependency_key=run.outcome.dependency_key,
            kept_layer=run.kept_layer,
            audited_layer=run.outcome.audited_layer(run.install_index),
            uploads=uploads,
        )

    def _layer_groups(self) -> list[LayerGroup]:
        from drover.workflow import layer_architecture

        groups: dict[LayerKey, LayerGroup] = {}
        for run in self._standing():
            assert run.plan is not None and run.live is not None
            digest, stage = run.plan.requirements.digest, run.drover.stage
            if digest is None or run.kept_layer is not None:
                continue
            key = (stage.region_name, stage.layer_name, digest, layer_architecture(stage, run.live))
            groups.setdefault(key, LayerGroup([])).runs.append(run)
        return list(groups.values())

    def _plan_layer_group(self, group: LayerGroup) -> None:
        """The first stage looks the layer version up (or plans its publish); the others attach the same one."""
        from drover import workflow

        planner = group.runs[0]
        assert planner.deployment is not None
        with self._stage(planner), planner.drover.timings.phase("compare"):
            try:
                group.step = workflow.plan_layer(planner.deployment)
            except Exception as error:  # the stages that need this layer cannot go on without it
                for run in group.runs:
                    run.error = error
                return
        group.planner = planner
        for run in group.runs:
            assert run.deployment is not None
            if group.step is not None:
                run.deployment.layer_pending = True
            else:
                run.deployment.layer_arn = planner.deployment.layer_arn

    def _plan_stage(self, run: StageRun, *, grouped: bool) -> None:
        from drover import workflow

        deployment = run.deployment
        assert deployment is not None
        with run.drover.timings.phase("compare"):
            if not grouped:
                workflow.plan_layer(deployment)  # kept or none: no AWS read, no step
            run.steps = workflow.plan(deployment)

    def _preflight(self, run: StageRun) -> None:
        from drover import workflow

        assert run.deployment is not None
        workflow.preflight(run.deployment)

    # -- writes: layers, then each stage ---------------------------------------------------------------------

    def _publish_layers(self, groups: Sequence[LayerGroup]) -> None:
        """Each missing layer version published once, before any stage that attaches it writes anything."""
        from drover import workflow

        for group in groups:
            standing = [run for run in group.runs if run.standing]
            if group.step is None or not standing:
                continue
            publisher = standing[0]
            deployment = publisher.deployment
            assert deployment is not None
            with self._stage(publisher):
                try:
                    step = group.step if publisher is group.planner else workflow.plan_layer(deployment)
                    if step is not None:
                        workflow.run_steps(deployment, [step])
                except Exception as error:  # no stage that needs this layer writes anything
                    for run in standing:
                        run.error = error
                    continue
            if step is not None and not deployment.dry_run:
                self.layers_published += 1
            for run in standing:
                assert run.deployment is not None
                run.deployment.layer_arn = deployment.layer_arn

    def _apply(self, run: StageRun) -> None:
        from drover import workflow

        assert run.deployment is not None
        workflow.run_steps(run.deployment, [step for step in run.steps if not step.destructive])

    def _prune_and_finish(self, run: StageRun) -> None:
        from drover import workflow

        assert run.deployment is not None and run.result is not None
        workflow.run_steps(run.deployment, [step for step in run.steps if step.destructive])
        workflow.finish(run.deployment)
        run.result.timings = dict(run.drover.timings)

    # -- how the actions run -------------------------------------------------------------------------------

    def _raise_a_single_failure(self) -> None:
        """A run of one stage that failed raises inside the archive scratch: it leaves no archive behind."""
        failed = self.runs[0].error
        if not self.several and failed is not None:
            raise failed

    def _standing(self) -> list[StageRun]:
        return [run for run in self.runs if run.standing]

    def _each(self, work: Callable[[StageRun], None], runs: Sequence[StageRun] | None = None) -> None:
        """work(run) for each standing stage: in this thread for one, else concurrently; a failure is the stage's."""
        pending = [run for run in (self._standing() if runs is None else runs) if run.standing]
        if len(pending) <= 1:
            for run in pending:
                self._guarded(run, work)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(pending)))
        try:
            for future in [pool.submit(self._guarded, run, work) for run in pending]:
                future.result()
        finally:  # interrupted (SIGINT/SIGTERM): stages not started yet never start; running ones finish
            pool.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, run: StageRun, work: Callable[[StageRun], None]) -> None:
        with self._stage(run):
            try:
                work(run)
            except Exception as error:  # one stage's failure is its own; the others go on
                run.error = error

    @contextmanager
    def _stage(self, run: StageRun) -> Iterator[None]:
        token = current_stage.set(run.name if self.several else None)
        try:
            yield
        finally:
            current_stage.reset(token)

    # -- the result ----------------------------------------------------------------------------------------

    def _result(self, seconds: float) -> MultiResult:
        entries: list[DeployResult | StageFailure] = []
        for run in self.runs:
            if run.failure is not None:
                entries.append(run.failure)
            elif run.result is not None:
                entries.append(run.result)
        done = [entry for entry in entries if isinstance(entry, DeployResult)]
        mode: Mode = "package-only" if self.options.package_only else self.options.deploy_mode
        return MultiResult(
            mode=mode,
            results=entries,
            succeeded=[entry.stage for entry in done],
            failed=[entry.stage for entry in entries if isinstance(entry, StageFailure)],
            totals=RunTotals(
                stages=len(entries),
                succeeded=len(done),
                failed=len(entries) - len(done),
                changed=sum(1 for entry in entries if any(action.done for action in entry.actions)),  # failed too
                layer_versions_published=self.layers_published,
                bytes_uploaded=sum(run.result.bytes_uploaded for run in self.runs if run.result is not None),
                seconds=round(seconds, 3),
            ),
        )


def _install_with_permission(
    drover: StageWork,
    directory: Path,
    architecture: str,
    attached: Sequence[AttachedLayer],
    outputs: Sequence[Path],
) -> InstallOutcome:
    """The install, its permission failures an input problem (exit 2) that names the path and the fix."""
    try:
        return drover.install(directory, architecture, attached, outputs)
    except PermissionError as error:
        path = error.filename or directory
        raise InstallError(
            f"{path}: permission denied — the run cannot replace the install path {directory} (left by another "
            f"user such as root, or read-only): remove it or make it and its directory writable by this user "
            f"(e.g. sudo chown -R $(id -u) {directory}), or give another --install-path"
        ) from None


def _recorded_key(layer: LayerVersion, tags: Mapping[str, str]) -> str | None:
    """The dependency key a kept layer holds: its description's, or the function's tag beside its digest."""
    from drover.deploy import TAG_DEPENDENCY_KEY, TAG_REQUIREMENTS_DIGEST

    if layer.claimed_dependency_key:
        return layer.claimed_dependency_key
    return tags.get(TAG_DEPENDENCY_KEY) if tags.get(TAG_REQUIREMENTS_DIGEST) == layer.claimed_digest else None


def _keep_every_archive(scratch: Path, archive_dir: Path) -> None:
    """Several stages: each distinct archive, named by its digest, moves to --archive-dir."""
    for built in scratch.glob("*.zip"):
        os.replace(built, archive_dir / built.name)
