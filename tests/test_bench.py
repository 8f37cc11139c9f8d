"""The bench scripts leave the tree clean: raw results go to an ignored path, --record updates the committed ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"run.py": "results.json", "multi_bench.py": "multi_results.json", "install_bench.py": "install_results.json"}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_bench_run_writes_an_ignored_file_unless_recording(script: str) -> None:
    name = SCRIPTS[script]
    usage = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--record" in usage and f".cache/bench/results/{name}" in " ".join(usage.split())
    assert git("check-ignore", "--quiet", f".cache/bench/results/{name}").returncode == 0
    assert git("ls-files", "--error-unmatch", f"bench/{name}").returncode == 0  # --record's target is committed


def test_make_bench_records_only_through_the_record_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\tbench/run.py\n" not in makefile
    for target, command in [
        ("bench", "bench/run.py\n"),
        ("bench-record", "bench/run.py --record\n"),
        ("bench-multi", "bench/multi_bench.py\n"),
        ("bench-multi-record", "bench/multi_bench.py --record\n"),
    ]:
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert recipe.endswith(command.strip()), (target, recipe)
