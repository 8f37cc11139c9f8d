"""Measure the Action image: size, the app layer (the venv), and container start -> first AWS call.

    python -m tests.container.measure [--runs 5]

The image is found or built as the container tests do. A moto server stands for AWS; the time is from
just before `podman run` (the runner's docker run) to the first request the AWS endpoint receives:
container start, Python start, imports, input checks, settings, and the first call. Printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.aws import Infrastructure, MotoServer
from tests.container import images
from tests.container.runner import ContainerRunner
from tests.github_fakes import CountingServer
from tests.test_action_container import write_project


class FirstRequestServer(CountingServer):
    """Forwards to moto and notes when the first request arrived."""

    first: float | None = None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.first is None:
            self.first = time.perf_counter()
        return super()._forward(method, path, headers, body)


def layer_sizes(image: str) -> list[str]:
    """`podman history`: size and (shortened) instruction of each layer, newest first."""
    history = images.podman("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    return [" ".join(line.split()) for line in history.splitlines() if "\t" in line]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    image = images.action_image()
    inspect = json.loads(images.podman("image", "inspect", image).stdout)[0]
    moto = MotoServer()
    os.environ.update(AWS_ENDPOINT_URL=moto.endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    starts = []
    totals = []
    try:
        for _ in range(args.runs):
            moto.reset()
            Infrastructure().function("fn")
            with tempfile.TemporaryDirectory() as directory:
                runner = ContainerRunner(image, Path(directory))
                write_project(runner.workspace)
                runner.give_to_owner()
                server = FirstRequestServer(moto.endpoint).start()
                try:
                    environment = {
                        "AWS_ENDPOINT_URL": server.endpoint,
                        "AWS_ACCESS_KEY_ID": "t",
                        "AWS_SECRET_ACCESS_KEY": "t",
                    }
                    started = time.perf_counter()
                    run = runner.run({"stage": "staging", "install-path": "install"}, environment)
                    ended = time.perf_counter()
                finally:
                    server.stop()
                assert run.returncode == 0, run.stdout + run.stderr
                assert server.first is not None
                starts.append(server.first - started)
                totals.append(ended - started)
    finally:
        moto.stop()
    print(
        json.dumps(
            {
                "image": image,
                "image_size_mb": round(inspect["Size"] / 1e6, 1),
                "layers": layer_sizes(image),
                "start_to_first_aws_call_s": {
                    "median": round(statistics.median(starts), 2),
                    "all": [round(s, 2) for s in starts],
                },
                "whole_deploy_run_s": {"median": round(statistics.median(totals), 2)},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
