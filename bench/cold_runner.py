"""The cold CI runner: every job starts with a fresh checkout, no install path and empty installer caches.

Each measured run copies the "checkout" (drover.yml, the hash-pinned lock, the function's source) into a
new directory and points UV_CACHE_DIR / PIP_CACHE_DIR at new empty folders, then times the whole step a
user waits for, against the same moto server:

- drover 0.7.1's pipeline: `pip install --target` of the lock, the function code copied in, `drover`;
- ours today: `drover --requirements LOCK --no-dependency-key` (install everything, then deploy);
- ours with the dependency key, no change: the lock's key matches the attached layer, nothing installed;
- ours with the key, a code-only change: the same, plus the function code update.

The lock is the standard workload's dependencies as `uv pip compile --generate-hashes` writes it
(made once and cached; it needs the package index).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKLOAD_REQUIREMENTS = ("numpy==2.2.6", "pandas==2.2.3", "requests==2.32.3", "boto3==1.35.99", "pydantic==2.10.6")
REGION = "us-east-1"
BUCKET = "drover-bench"
HANDLER = "import json\n\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event)}\n"


def uv_binary() -> str:
    import uv  # type: ignore[import-not-found]  # drover's own dependency ships the binary

    return str(uv.find_uv_bin())


def ensure_lock(cache: Path) -> Path:
    """The workload's dependencies as a hash-pinned lock for python3.12 on x86_64 Linux."""
    lock = cache / "cold-runner" / "requirements.lock"
    if lock.is_file():
        return lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    source = lock.parent / "requirements.in"
    source.write_text("\n".join(WORKLOAD_REQUIREMENTS) + "\n")
    options = ["--quiet", "--generate-hashes", "--no-header", "--python-version", "3.12"]
    options += ["--python-platform", "x86_64-manylinux_2_17"]
    subprocess.run([uv_binary(), "pip", "compile", *options, str(source), "-o", str(lock)], check=True)
    return lock


def write_checkout(root: Path, lock: Path, function_name: str, *, for_baseline: bool, edit: int | None = None) -> None:
    """What `actions/checkout` gives a job: drover.yml, the lock and the function's source; nothing installed."""
    root.mkdir(parents=True)
    shutil.copy(lock, root / "requirements.lock")
    handler = HANDLER + (f"\nBENCH_EDIT = {edit}\n" if edit is not None else "")
    (root / "src" / "bench_fn").mkdir(parents=True)
    (root / "src" / "bench_fn" / "__init__.py").write_text(handler)
    stage = (
        f"    region_name: {REGION}\n    function_name: {function_name}\n    compatible_runtime: python3.12\n"
        f"    upload_bucket:\n      region_name: {REGION}\n      bucket_name: {BUCKET}\n"
    )
    if for_baseline:  # drover 0.7.1 packages one directory: the code is copied into it, patterns pick it out
        stage += "    function_file_patterns:\n      - '^bench_fn.*'\n"
    else:  # drover-action: the install path is drover's; the code comes from the checkout
        stage += "    function_extra_paths:\n      - {path: src/bench_fn, archive_path: bench_fn}\n"
    (root / "drover.yml").write_text("stages:\n  bench:\n" + stage)


def fresh_caches(root: Path, env: dict[str, str]) -> dict[str, str]:
    caches = root.parent / f"{root.name}-caches"
    for name in ("uv", "pip"):
        (caches / name).mkdir(parents=True)
    return {**env, "UV_CACHE_DIR": str(caches / "uv"), "PIP_CACHE_DIR": str(caches / "pip")}


def timed(commands: list[list[str]], *, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    output = ""
    for command in commands:
        completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(command)}\n{completed.stderr[-3000:]}")
        output = completed.stdout
    return time.perf_counter() - start, output


def baseline_pipeline(baseline: Path, baseline_cli: str) -> list[list[str]]:
    """drover 0.7.1's documented pipeline: pip install --target for Lambda's platform, copy the code, deploy."""
    pip = [str(baseline), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", "install"]
    pip += ["--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"]
    pip += ["--python-version", "3.12", "--implementation", "cp", "--require-hashes", "-r", "requirements.lock"]
    copy = ["cp", "-r", "src/bench_fn", "install/bench_fn"]
    deploy = [str(baseline), "-I", "-c", baseline_cli, "--install-path", "install", "--non-interactive", "bench"]
    return [pip, copy, deploy]


def ours(*extra: str) -> list[list[str]]:
    command = [sys.executable, "-m", "drover", "--install-path", "install", "--requirements", "requirements.lock"]
    return [[*command, *extra, "--json", "--quiet", "bench"]]


def measure(
    baseline: Path, baseline_cli: str, scratch: Path, cache: Path, aws: Any, repetitions: int
) -> dict[str, Any]:
    lock = ensure_lock(cache)
    aws.create_function("bench-cold-base")
    aws.create_function("bench-cold-ours")
    counter = iter(range(1_000_000))

    def cold(
        function: str, commands: list[list[str]], *, for_baseline: bool, edit: int | None = None
    ) -> tuple[float, str]:
        root = scratch / f"cold-{next(counter)}"
        write_checkout(root, lock, function, for_baseline=for_baseline, edit=edit)
        env = fresh_caches(root, aws.env)
        try:
            return timed(commands, cwd=root, env=env)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(root.parent / f"{root.name}-caches", ignore_errors=True)

    base = baseline_pipeline(baseline, baseline_cli)
    cold("bench-cold-base", base, for_baseline=True)  # first deploys: not measured
    _, first = cold("bench-cold-ours", ours(), for_baseline=False)
    key = json.loads(first)["install"]["dependency_key"]
    runs: dict[str, list[float]] = {"baseline": [], "today": [], "key_noop": [], "key_code_change": []}
    results: dict[str, list[dict[str, Any]]] = {"today": [], "key_noop": [], "key_code_change": []}
    load: list[float] = []
    measures: list[tuple[str, Callable[[int], tuple[float, str]]]] = [
        ("baseline", lambda i: cold("bench-cold-base", base, for_baseline=True)),
        ("today", lambda i: cold("bench-cold-ours", ours("--no-dependency-key"), for_baseline=False)),
        ("key_noop", lambda i: cold("bench-cold-ours", ours(), for_baseline=False)),
        ("key_code_change", lambda i: cold("bench-cold-ours", ours(), for_baseline=False, edit=i)),
    ]
    for index in range(repetitions):
        for name, action in measures:
            load.append(os.getloadavg()[0])
            seconds, output = action(index)
            runs[name].append(seconds)
            if name != "baseline":
                results[name].append(json.loads(output))
        # converge on the unedited code, so the next no-op is one
        cold("bench-cold-ours", ours(), for_baseline=False)
    noop_clean = all(r["actions"] == [] and r["install"]["skip_reason"] for r in results["key_noop"])
    code_only = all(
        {a["action"] for a in r["actions"]} <= {"update-code", "tag"} and r["function_updated"]
        for r in results["key_code_change"]
    )
    median = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "lock_packages": sum(1 for line in lock.read_text().splitlines() if "==" in line),
        "dependency_key": key,
        "baseline_seconds": median["baseline"],
        "today_seconds": median["today"],
        "key_noop_seconds": median["key_noop"],
        "key_code_change_seconds": median["key_code_change"],
        "baseline_over_key_noop": median["baseline"] / median["key_noop"],
        "today_over_key_noop": median["today"] / median["key_noop"],
        "code_change_over_key_noop": median["key_code_change"] / median["key_noop"],
        "key_noop_writes_nothing": noop_clean,
        "key_code_change_only_code": code_only,
        "today_verified": all(r["install"]["verified"] for r in results["today"]),
        "runs": runs,
        "load_average_before_each": load,
    }


if __name__ == "__main__":  # a quick look without the rest of the bench: python bench/cold_runner.py
    sys.path.insert(0, str(Path(__file__).parent))
    import run  # type: ignore[import-not-found]

    aws = run.LocalAws()
    aws.create_bucket(BUCKET)
    try:
        with tempfile.TemporaryDirectory(prefix="drover-bench-", dir=run.CACHE) as directory:
            measured = measure(run.ensure_baseline(), run.BASELINE_CLI, Path(directory), run.CACHE, aws, 1)
    finally:
        aws.stop()
    print(json.dumps(measured, indent=2))
