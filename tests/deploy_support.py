"""Deploying a generated package tree with drover's real engine to the moto server (shared by the deploy tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drover import Drover, RunOptions
from drover.models import DeployResult
from drover.settings import load_settings
from tests.aws import REGION, CallRecorder, Infrastructure, recording_clients


@dataclass
class Project:
    """A package tree + drover.yml, deployed with drover's real engine to the moto server."""

    root: Path
    stage: dict[str, Any] = field(default_factory=dict)
    recorder: CallRecorder = field(default_factory=CallRecorder)
    parameters: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def install(self) -> Path:
        return self.root / "install"

    def write(self, name: str, text: str) -> None:
        path = self.install / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def write_settings(self) -> Path:
        """Write drover.yml with the stage "test" (defaults + self.stage) and return its path."""
        settings_file = self.root / "drover.yml"
        stage = {
            "region_name": REGION,
            "function_name": "fn",
            "compatible_runtime": "python3.12",
            "function_file_patterns": ["^app"],
            **self.stage,
        }
        settings_file.write_text(yaml.safe_dump({"stages": {"test": stage}}))
        return settings_file

    def deploy(self, **options: Any) -> DeployResult:
        settings_file = self.write_settings()
        self.recorder.clear()
        clients = recording_clients(self.recorder)
        clients.session.events.register("before-parameter-build.*.*", self._record_parameters)  # type: ignore[union-attr]
        for hook in self.hooks:
            hook(clients)
        run_options = RunOptions(working_directory=self.root, aws=clients, **options)
        return Drover(load_settings(settings_file), "test", options=run_options).update(self.install)

    hooks: list[Callable[[Any], None]] = field(default_factory=list)

    def _record_parameters(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.parameters.append((model.name, params))

    def parameters_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.parameters if name == operation]

    @property
    def writes(self) -> list[str]:
        return self.recorder.writes


def assert_truthful(result: DeployResult, infra: Infrastructure) -> None:
    live = infra.configuration()
    assert result.code_sha256 == live["CodeSha256"]
    assert result.function_arn == live["FunctionArn"]
    if result.requirements_layer_arn:
        assert result.requirements_layer_arn in [layer["Arn"] for layer in live.get("Layers", [])]
