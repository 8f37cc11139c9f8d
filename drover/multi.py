"""Several stages in one run: packaging shared where the inputs are the same, AWS work concurrent.

1. read every live function (concurrently, at most MAX_CONCURRENT_FUNCTIONS at a time);
2. install and package once per distinct input: one walk and hash per (install path, patterns,
   extra paths, excludes), one archive per (kind, digest);
3. deploy every function concurrently, each function's steps in order; stages that need the same
   requirements layer version (region, layer name, digest, architecture) share one publish.

One stage failing does not stop the others; the result lists every stage, failed or not.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from drover.archive import ArchiveInfo, archive_scratch, record_archive, write_zip
from drover.core import DEFAULT_ARCHITECTURE, Drover, RunOptions
from drover.errors import DroverError, SettingsError, one_line
from drover.models import DeployResult, MultiResult, RunTotals, Settings, StageFailure
from drover.packaging import (
    HashedFile,
    PackageFile,
    PackageLayout,
    PackagePlan,
    Partition,
    hash_files,
)

if TYPE_CHECKING:
    from drover.deploy import AwsClients, LambdaTarget, LiveFunction
    from drover.workflow import SharedLayers

logger = logging.getLogger("drover")
T = TypeVar("T")
Mode = Literal["package-only", "dry-run", "deploy"]

MAX_CONCURRENT_FUNCTIONS = 8
current_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("drover_stage", default=None)


class StagePrefix(logging.Filter):
    """Prefix each log line with the stage it is about, so interleaved lines of concurrent stages stay readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        stage = current_stage.get()
        if stage and not getattr(record, "drover_stage_prefixed", False):
            record.msg = f"[{stage.replace('%', '%%')}] {record.msg}"
            record.drover_stage_prefixed = True
        return True


@dataclass
class _StageRun:
    name: str
    drover: Drover
    target: LambdaTarget | None = None
    live: LiveFunction | None = None
    plan: PackagePlan | None = None
    result: DeployResult | None = None
    failure: StageFailure | None = None


@dataclass
class _Archives:
    """Each distinct archive built once, whichever stage asks first; the others wait for it."""

    directory: Path
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
                future.set_result(build(self.directory / f"{kind}-{digest[:16]}.zip"))
            except BaseException as error:
                future.set_exception(error)
        return future.result()


def _failure(name: str, drover: Drover | None, error: BaseException, result: DeployResult | None) -> StageFailure:
    code = error.exit_code if isinstance(error, DroverError) else 1
    message = one_line(error)
    if not isinstance(error, DroverError):
        message = f"unexpected {type(error).__name__}: {message}"
    logger.error("stage %s failed: %s", name, message)
    return StageFailure(
        stage=name,
        function_name=drover.stage.function_name if drover else None,
        region_name=drover.stage.region_name if drover else None,
        error=message,
        exit_code=code,
        actions=[action for action in (result.actions if result else []) if action.done],
    )


class MultiStageRun:
    """Deploy (or dry-run, or package) several stages of one settings file in one run."""

    def __init__(
        self,
        settings: Settings,
        stages: Sequence[str],
        interactive: bool = False,
        *,
        options: RunOptions | None = None,
        max_workers: int = MAX_CONCURRENT_FUNCTIONS,
    ) -> None:
        self.options = options or RunOptions()
        duplicates = sorted({name for name in stages if list(stages).count(name) > 1})
        if duplicates:
            raise SettingsError(f"stage {duplicates[0]} is given twice; name each stage once")
        if self.options.function_name or self.options.region_name:
            raise SettingsError(
                "--function-name and --region override one stage's values; they cannot be used with several stages"
            )
        self.max_workers = max_workers
        if not any(isinstance(existing, StagePrefix) for existing in logger.filters):
            logger.addFilter(StagePrefix())
        self.runs = [_StageRun(name, Drover(settings, name, interactive, options=self.options)) for name in stages]
        functions: dict[tuple[str, str], str] = {}
        for run in self.runs:
            key = (run.drover.stage.region_name, run.drover.stage.short_function_name)
            if key in functions:
                raise SettingsError(
                    f"stages {functions[key]} and {run.name} both deploy function {key[1]} in {key[0]}; "
                    "deploy one of them per run"
                )
            functions[key] = run.name

    def update(self, install_path: Path) -> MultiResult:
        start = time.perf_counter()
        if self.options.package_only:
            self._package_only(install_path)
            layers = 0
        else:
            layers = self._deploy(install_path)
        return self._result(time.perf_counter() - start, layers)

    # -- package only: each stage's archives, in its own directory under --archive-dir ----------

    def _package_only(self, install_path: Path) -> None:
        for run in self.runs:
            archive_dir = self.options.archive_dir / run.name if self.options.archive_dir else None
            run.drover.options = replace(self.options, archive_dir=archive_dir)
            with self._stage(run):
                try:
                    run.result = run.drover.build(install_path)
                except DroverError as error:
                    run.failure = _failure(run.name, run.drover, error, None)

    # -- deploy / dry run -------------------------------------------------------------------------

    def _deploy(self, install_path: Path) -> int:
        from drover.workflow import SharedLayers

        clients = self._clients()
        self._concurrently(lambda run: self._connect(run, clients[run.drover.stage.region_name]))
        self._install(install_path)
        self._package(install_path)
        shared = SharedLayers()
        self._claim_layers(shared)
        with archive_scratch(self.options.archive_dir, self._keep_every_archive) as directory:
            archives = _Archives(directory)
            self._concurrently(lambda run: self._apply(run, archives, shared))
        return shared.published()

    def _claim_layers(self, shared: SharedLayers) -> None:
        """The first stage (in the order given) that needs a layer version publishes it, should none exist.

        Decided before the stages run concurrently, so a dry run and the deploy agree on who publishes.
        """
        from drover.workflow import layer_architecture

        for run in self.runs:
            if run.failure is not None or run.plan is None or run.live is None:
                continue
            digest, stage = run.plan.requirements.digest, run.drover.stage
            if digest is not None:
                architecture = layer_architecture(stage, run.live)
                shared.claim((stage.region_name, stage.layer_name, digest, architecture), run.name)

    def _clients(self) -> dict[str, AwsClients]:
        """One set of clients per region, made here (boto3 sessions are not safe to make clients from in threads)."""
        clients: dict[str, AwsClients] = {}
        for run in self.runs:
            region = run.drover.stage.region_name
            if region not in clients:
                clients[region] = run.drover.clients_for(region)
                _ = clients[region].lambda_, clients[region].s3
        return clients

    def _concurrently(self, work: Callable[[_StageRun], None]) -> None:
        pending = [run for run in self.runs if run.failure is None]
        if not pending:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(pending)))
        try:
            for future in [pool.submit(self._guarded, run, work) for run in pending]:
                future.result()
        finally:  # interrupted (SIGINT/SIGTERM): stages not started yet never start; running ones finish
            pool.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, run: _StageRun, work: Callable[[_StageRun], None]) -> None:
        with self._stage(run):
            try:
                work(run)
            except Exception as error:  # one stage's failure is its own; the others go on
                run.failure = _failure(run.name, run.drover, error, run.result)

    @contextmanager
    def _stage(self, run: _StageRun) -> Iterator[None]:
        token = current_stage.set(run.name if len(self.runs) > 1 else None)
        try:
            yield
        finally:
            current_stage.reset(token)

    def _connect(self, run: _StageRun, clients: AwsClients) -> None:
        from drover import workflow

        run.target, run.live = workflow.connect(run.drover.stage, clients, run.drover.timings.phase)

    def _install(self, install_path: Path) -> None:
        """Install once per distinct request; two different requests into one install path cannot both be met."""
        if not (self.options.install_source or self.options.requirements):
            return
        done: dict[tuple[str, str, bool], str] = {}
        for run in self.runs:
            if run.failure is not None or run.live is None:
                continue
            stage = run.drover.stage
            architecture = stage.architecture or run.live.architecture or DEFAULT_ARCHITECTURE
            key = (stage.compatible_runtime, architecture, stage.exclude_runtime_packages)
            if key in done:
                continue
            if done:
                first = next(iter(done.values()))
                run.failure = _failure(
                    run.name,
                    run.drover,
                    SettingsError(
                        f"stage {run.name} needs {key[0]} on {key[1]}, but stage {first} installs into "
                        f"{install_path} for another runtime or architecture — deploy them in separate runs"
                    ),
                    None,
                )
                continue
            with self._stage(run):
                try:
                    run.drover.install(install_path, architecture)
                except DroverError as error:
                    run.failure = _failure(run.name, run.drover, error, None)
                    return
            done[key] = run.name

    def _package(self, install_path: Path) -> None:
        """One walk per distinct (install path, patterns, extra paths, excludes); each file hashed once.

        Stages that differ only in their extra paths (one function file each, say) walk again, but
        the files they share (the requirements) are not read again.
        """
        plans: dict[tuple[object, ...], PackagePlan | DroverError] = {}
        hashed: dict[PackageFile, HashedFile] = {}
        for run in self.runs:
            if run.failure is not None:
                continue
            stage = run.drover.stage
            key = (
                str(install_path.resolve()),
                tuple(pattern.pattern for pattern in stage.function_file_patterns),
                tuple(str(path) for path in stage.function_extra_paths),
                tuple(pattern.pattern for pattern in stage.package_exclude_patterns),
            )
            if key not in plans:
                with self._stage(run), run.drover.timings.phase("package"):
                    try:
                        plans[key] = self._hash(run.drover.checked_layout(install_path), hashed)
                    except DroverError as error:
                        plans[key] = error
            planned = plans[key]
            if isinstance(planned, DroverError):
                run.failure = _failure(run.name, run.drover, planned, None)
                continue
            run.plan = planned
            with self._stage(run):
                run.result = run.drover.package_result(planned, self.options.deploy_mode)
                run.drover.progress = run.result  # what an interruption reports

    def _hash(self, layout: PackageLayout, hashed: dict[PackageFile, HashedFile]) -> PackagePlan:
        unread = [file for file in (*layout.function, *layout.requirements) if file not in hashed]
        for done in hash_files(unread, self.options.workers):
            hashed[done.file] = done
        return PackagePlan(
            Partition("function", tuple(hashed[file] for file in layout.function)),
            Partition("requirements", tuple(hashed[file] for file in layout.requirements)),
        )

    def _apply(self, run: _StageRun, archives: _Archives, shared: SharedLayers) -> None:
        from drover import workflow

        assert run.target is not None and run.live is not None and run.plan is not None and run.result is not None
        result, drover = run.result, run.drover

        def build_archive(kind: str, files: Sequence[HashedFile | PackageFile]) -> ArchiveInfo:
            partition = run.plan.function if kind == "function" else run.plan.requirements  # type: ignore[union-attr]
            assert partition.digest is not None

            def write(path: Path) -> ArchiveInfo:
                with drover.timings.phase("archive"):
                    return write_zip(path, files, self.options.workers)

            archive = archives.get(kind, partition.digest, write)
            record_archive(result, archive, kind, self.options.archive_dir)
            return archive

        deployment = drover.deployment(
            run.target, run.live, run.plan, result, build_archive, stage_name=run.name, shared_layers=shared
        )
        try:
            workflow.deploy(deployment)
        except BaseException as error:
            shared.abandon(run.name, error)
            raise
        result.timings = dict(drover.timings)

    @staticmethod
    def _keep_every_archive(scratch: Path, archive_dir: Path) -> None:
        """Several stages: each distinct archive, named by its digest, moves to --archive-dir."""
        for built in scratch.glob("*.zip"):
            os.replace(built, archive_dir / built.name)

    # -- the result -------------------------------------------------------------------------------

    def _result(self, seconds: float, layers: int) -> MultiResult:
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
                layer_versions_published=layers,
                bytes_uploaded=sum(run.result.bytes_uploaded for run in self.runs if run.result is not None),
                seconds=round(seconds, 3),
            ),
        )
