"""What a run of drover is given and decides besides drover.yml: its options, its phase timings, and what an
install decided for the stages that share it. Pure data, below every module that runs a stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from drover.models import DIRECT_UPLOAD_LIMIT, InstallSummary
from drover.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from drover.deploy import AwsClients, LayerVersion

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
    ignore_alarms_at_start: bool = False  # a rollout goes on although its alarms are in ALARM before it starts

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


@dataclass
class AttachedLayer:
    """What a function runs now, for the dependency key: its attached requirements layer (read on demand) and tags."""

    read: Callable[[], LayerVersion | None]
    tags: Mapping[str, str]


@dataclass(frozen=True)
class InstallOutcome:
    """What an install decided for the stages that share it (one entry of kept_layers per attached function)."""

    summary: InstallSummary | None = None
    dependency_key: str | None = None  # the exact lock's key, recorded on a layer this run publishes
    kept_layers: tuple[LayerVersion | None, ...] = ()  # the key matched: each function keeps its attached layer
    audited_layers: tuple[LayerVersion | None, ...] = ()  # --no-dependency-key: the layer each install must match

    def kept_layer(self, index: int) -> LayerVersion | None:
        return self.kept_layers[index] if index < len(self.kept_layers) else None

    def audited_layer(self, index: int) -> LayerVersion | None:
        return self.audited_layers[index] if index < len(self.audited_layers) else None


NO_INSTALL = InstallOutcome()
