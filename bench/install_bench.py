"""Cold dependency install through pip and through uv (drover.install), plus the unchanged skip.

Each cold run gets empty pip/uv caches and a fresh install path, so every wheel is downloaded
and unpacked again. pip's machine configuration (pip.conf find-links, extra indexes) is switched
off so both installers resolve against the same index. The two installs are also compared
file by file (names), which checks the "same files either way" promise on a real workload.

Usage: python bench/install_bench.py [--packages SPEC ...] [--repeat N] [--output FILE | --record]
Results: .cache/bench/results/install_results.json (ignored by git); --record: the committed
bench/install_results.json.
Target (issue 5): uv >= 10x faster than cold pip; the unchanged skip about instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import output  # bench/output.py: where results go

from drover.install import INSTALL_MARKER, InstallRequest, InstallResult, find_installer, install

WORKLOAD = ["numpy==2.2.6", "pandas==2.2.3", "requests==2.32.3", "boto3==1.35.99", "pydantic==2.10.6"]
INSTALLERS = ("pip", "uv")


@contextlib.contextmanager
def cold_environment(cache_root: Path) -> Iterator[None]:
    """Empty caches for pip and uv, and no pip.conf extras, for the duration of one run."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "UV_FIND_LINKS")):
            del os.environ[name]
    os.environ.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_CACHE_DIR=str(cache_root / "pip"),
        UV_CACHE_DIR=str(cache_root / "uv"),
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def relative_files(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name != INSTALL_MARKER and "__pycache__" not in path.parts
    }


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def run_once(installer: str, requirements: Path, work: Path, args: argparse.Namespace) -> tuple[InstallResult, Path]:
    target = work / f"install-{installer}"
    request = InstallRequest(target, None, requirements, args.runtime, args.architecture)
    with cold_environment(work / f"cache-{installer}"):
        result = install(request, installer=installer)
    return result, target


def measure(args: argparse.Namespace) -> dict[str, object]:
    cold: dict[str, list[float]] = {name: [] for name in INSTALLERS}
    skip: list[float] = []
    files: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for round_number in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="install-bench-") as temporary:
            work = Path(temporary)
            requirements = work / "requirements.txt"
            requirements.write_text("\n".join(args.packages) + "\n", encoding="utf-8")
            for installer in INSTALLERS:
                result, target = run_once(installer, requirements, work, args)
                cold[installer].append(result.seconds)
                files[installer], sizes[installer] = relative_files(target), tree_size(target)
                print(f"round {round_number + 1}: {installer} cold {result.seconds:.2f} s", file=sys.stderr)
            again, _ = run_once("uv", requirements, work, args)
            assert again.skipped, "the second install with unchanged inputs must be skipped"
            skip.append(again.seconds)
    pip_s, uv_s = statistics.median(cold["pip"]), statistics.median(cold["uv"])
    only_pip, only_uv = sorted(files["pip"] - files["uv"]), sorted(files["uv"] - files["pip"])
    return {
        "packages": args.packages,
        "runtime": args.runtime,
        "architecture": args.architecture,
        "repeat": args.repeat,
        "pip_version": find_installer("pip").version,
        "uv_version": find_installer("uv").version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pip_cold_seconds": round(pip_s, 3),
        "uv_cold_seconds": round(uv_s, 3),
        "ratio_pip_over_uv": round(pip_s / uv_s, 2),
        "unchanged_skip_seconds": round(statistics.median(skip), 4),
        "runs": {"pip": cold["pip"], "uv": cold["uv"], "skip": skip},
        "files": len(files["uv"]),
        "bytes": sizes["uv"],
        "same_files": not only_pip and not only_uv,
        "only_pip": only_pip[:20],
        "only_uv": only_uv[:20],
    }


def print_table(results: dict[str, object]) -> None:
    rows = [
        ("pip install --target (cold)", f"{results['pip_cold_seconds']:.2f} s"),
        ("uv pip install --target (cold)", f"{results['uv_cold_seconds']:.2f} s"),
        ("ratio pip / uv", f"{results['ratio_pip_over_uv']:.1f}x"),
        ("unchanged skip", f"{results['unchanged_skip_seconds']:.3f} s"),
        ("same files (pip vs uv)", f"{results['same_files']} ({results['files']} files)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", nargs="+", default=WORKLOAD, help="requirement specifiers (default: workload)")
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--architecture", default="x86_64", choices=["x86_64", "arm64"])
    parser.add_argument("--repeat", type=int, default=1, help="cold rounds; the median is reported")
    parser.add_argument("--output", type=Path, help="write the results here instead")
    output.add_record_flag(parser, "install_results.json")
    args = parser.parse_args()
    results = measure(args)
    print_table(results)
    written = args.output or output.results_path("install_results.json", args.record)
    written.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
