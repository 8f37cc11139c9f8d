"""make test-container: the container tests when podman (or docker) works here, else one line saying
they were not run and the command that enables them. Installs nothing (that is `make ci-deps`).

DROVER_CONTAINER_ENGINE picks the engine; unset, podman is tried, then docker.
DROVER_REQUIRE_CONTAINER=1 (.ci/run, CI) turns "not run" into a failure.

    python -m tests.container.run_tests [pytest arguments]
"""

from __future__ import annotations

import os
import sys

from tests.container import images

PYTEST = ["-m", "pytest", "-q", "-m", "container", "tests/test_action_container.py"]


def usable_engine() -> tuple[str | None, list[str]]:
    """The first engine that works here, and why each one before it does not."""
    configured = os.environ.get("DROVER_CONTAINER_ENGINE")
    problems = []
    for engine in [configured] if configured else ["podman", "docker"]:
        problem = images.engine_problem(engine)
        if problem is None:
            return engine, problems
        problems.append(problem)
    return None, problems


def main(arguments: list[str]) -> int:
    engine, problems = usable_engine()
    if engine is not None:
        os.environ["DROVER_CONTAINER_ENGINE"] = engine
        os.execv(sys.executable, [sys.executable, *PYTEST, *arguments])
    print(f"container tests: not run ({'; '.join(problems)}): {images.ENABLE_HINT}", flush=True)
    if os.environ.get("DROVER_REQUIRE_CONTAINER") == "1":
        print("container tests: DROVER_REQUIRE_CONTAINER=1, so not running them is a failure", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
