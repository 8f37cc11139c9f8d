"""The one application service the CLI and the Action call: a request in, a result out.

It chooses between a promotion and a deploy (or dry run, or package-only build), runs 1..N stages through the
one pipeline, and is the only place that knows which stages started (for an interruption's report). The
adapters parse their inputs into a RunRequest and render what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drover.core import Drover
from drover.errors import FunctionNotFound, SettingsError, did_you_mean
from drover.models import DeployResult, MultiResult, Settings, Stage
from drover.options import RunOptions, Timings
from drover.settings import DEFAULT_SETTINGS_HINT, load_settings, select_stage


@dataclass(frozen=True)
class RunRequest:
    settings_file: Path
    stages: tuple[str, ...]
    install_path: Path
    options: RunOptions
    promote_from: str | None = None
    allow_untracked_source: bool = False
    rollback: bool = False  # put the alias back on the version it served before the last drover rollout
    interactive: bool = False
    timings: Callable[[], Timings] = Timings  # a run of one stage's timings (the Action's open log groups)
    settings_file_hint: str = DEFAULT_SETTINGS_HINT  # how to name another settings file, for a missing one


class Run:
    """One run of drover: prepare() checks everything that needs no AWS call, execute() does the work."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self.settings: Settings | None = None
        self.drovers: list[Drover] = []

    @property
    def stages(self) -> list[Stage]:
        return [drover.stage for drover in self.drovers]

    def progress(self) -> list[DeployResult | None]:
        """What each started stage has written so far: what an interruption or a failure reports."""
        return [drover.progress for drover in self.drovers]

    def prepare(self) -> list[Drover]:
        if self.drovers:
            return self.drovers
        request = self.request
        settings = self.settings = load_settings(request.settings_file, request.settings_file_hint)
        for name in (*request.stages, *([request.promote_from] if request.promote_from else [])):
            select_stage(settings, name, request.settings_file)  # an unknown stage names the settings file
        _check_request(request)
        several = len(request.stages) > 1
        self.drovers = [
            Drover(
                settings,
                name,
                request.interactive,
                options=request.options,
                timings=Timings() if several else request.timings(),
                settings_file=request.settings_file,
            )
            for name in request.stages
        ]
        _check_distinct_functions(self.drovers)
        return self.drovers

    def check_paths(self) -> None:
        """Every path the run reads and no install makes exists: checked with the other input, before any
        network call (the Action's OIDC token and STS exchange included). A promotion or rollback reads none."""
        from drover.packaging import check_install_path, extra_source

        if self.request.promote_from or self.request.rollback:
            return
        working_directory = self.request.options.working_directory
        for drover in self.prepare():
            for extra_path in drover.stage.extra_path_sources:
                extra_source(extra_path, working_directory)
            for what, path in zip(("install source", "requirements file"), drover.install_inputs, strict=True):
                if path is not None and not path.exists():
                    raise SettingsError(
                        f"{what} {path} does not exist (stage {drover.stage_name}) — {did_you_mean(path)}"
                        "create it or fix the path"
                    )
            if not drover.installs:
                check_install_path(self.request.install_path)

    def execute(self) -> DeployResult | MultiResult:
        """A promotion, or the pipeline over the stages: one stage's result (its failure raised), or every stage's."""
        drovers = self.prepare()
        try:
            return self._execute(drovers)
        except FunctionNotFound as error:  # one stage: point at its drover.yml lines
            raise drovers[0].located(error) from None

    def _execute(self, drovers: list[Drover]) -> DeployResult | MultiResult:
        from drover.pipeline import Pipeline

        request = self.request
        if request.rollback:
            return drovers[0].roll_back()
        if request.promote_from:
            assert self.settings is not None
            source = select_stage(self.settings, request.promote_from, request.settings_file)
            return drovers[0].promote(request.promote_from, source, allow_untracked=request.allow_untracked_source)
        pipeline = Pipeline(drovers, request.install_path, request.options)
        return pipeline.run() if len(drovers) > 1 else pipeline.run_one()


def _check_request(request: RunRequest) -> None:
    options = request.options
    duplicates = sorted({name for name in request.stages if request.stages.count(name) > 1})
    if duplicates:
        raise SettingsError(f"stage {duplicates[0]} is given twice; name each stage once")
    if len(request.stages) > 1 and (options.function_name or options.region_name):
        raise SettingsError(
            "--function-name and --region override one stage's values; they cannot be used with several stages"
        )
    if request.promote_from:
        if len(request.stages) != 1:
            raise SettingsError("--promote-from SOURCE_STAGE takes exactly one target STAGE")
        if options.package_only or options.install_source or options.requirements:
            raise SettingsError("--promote-from copies what the source runs; it builds and installs nothing")
    elif request.allow_untracked_source:
        raise SettingsError("--allow-untracked-source only applies with --promote-from")
    if request.rollback:
        if len(request.stages) != 1 or request.promote_from:
            raise SettingsError("--rollback takes exactly one STAGE (and no --promote-from)")
        if options.package_only or options.install_source or options.requirements or options.dry_run:
            raise SettingsError("--rollback only moves the alias back; it builds, installs and dry-runs nothing")


def _check_distinct_functions(drovers: list[Drover]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for drover in drovers:
        region, _, name = drover.stage.function_identity  # a name and an ARN of one function are one function
        key = (region, name)
        if key in seen:
            raise SettingsError(
                f"stages {seen[key]} and {drover.stage_name} both deploy function {key[1]} in {key[0]}; "
                "deploy one of them per run"
            )
        seen[key] = drover.stage_name
