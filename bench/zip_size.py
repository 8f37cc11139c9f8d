"""Requirements-zip size against `zip -r9` (issue 23 item 7): drover's archive of a tree vs Info-ZIP at level 9.

    make bench-zip                                  # the standard workload and polars' native runtime
    .venv/bin/python bench/zip_size.py [DIR ...]    # or any install trees

Without DIRs it builds the standard workload (../shared/bench/make-workload.sh) and unpacks polars-runtime-32's
manylinux wheel (a 178 MB native library) under .cache/bench/zip/. Each DIR is an install tree (the standard workload's install/, a native library's wheel unpacked). drover
builds its requirements archive of the whole tree (package-only, no function patterns match), `zip -r9 -X`
zips the same files; printed: both sizes, their ratio (target <= 1.02) and both times. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drover.archive import write_zip
from drover.models import Stage
from drover.packaging import layout_package


def drover_zip(tree: Path, out: Path) -> tuple[int, float]:
    stage = Stage(
        region_name="us-east-1",
        function_name="bench",
        compatible_runtime="python3.12",
        function_file_patterns=["^"],
        package_exclude_patterns=[],  # the same files zip -r sees
    )
    layout = layout_package(stage, tree, tree)
    files = [*layout.function, *layout.requirements]
    start = time.perf_counter()
    info = write_zip(out, files)
    return info.size, time.perf_counter() - start


def info_zip(tree: Path, out: Path) -> tuple[int, float]:
    start = time.perf_counter()
    subprocess.run(["zip", "-q", "-r", "-9", "-X", str(out), "."], cwd=tree, check=True)
    return out.stat().st_size, time.perf_counter() - start


ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench" / "zip"
POLARS = "polars-runtime-32==2.1.0"


def default_trees() -> list[Path]:
    """The standard workload's install tree and polars' native runtime, built once under .cache/bench/zip/."""
    workload, native = CACHE / "workload", CACHE / "polars"
    if not (workload / "install").is_dir():
        script = ROOT.parent / "shared" / "bench" / "make-workload.sh"
        subprocess.run(["bash", str(script), str(workload)], check=True, stdout=subprocess.DEVNULL)
    if not native.is_dir():
        wheels = CACHE / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--platform", "manylinux2014_x86_64", "--python-version", "3.12", POLARS, "-d", str(wheels)],
            check=True,
        )  # fmt: skip
        shutil.unpack_archive(next(wheels.glob("polars_runtime_32-*.whl")), native, "zip")
    return [workload / "install", native]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path)
    args = parser.parse_args()
    if shutil.which("zip") is None:
        print("zip (Info-ZIP) is not installed: apt-get install zip", file=sys.stderr)
        return 2
    print(f"{'tree':<40} {'drover MB':>10} {'zip -9 MB':>10} {'ratio':>7} {'drover s':>9} {'zip -9 s':>9}")
    for tree in args.trees or default_trees():
        with tempfile.TemporaryDirectory() as scratch:
            ours, our_seconds = drover_zip(tree, Path(scratch) / "drover.zip")
            theirs, their_seconds = info_zip(tree, Path(scratch) / "info.zip")
        print(
            f"{str(tree)[-40:]:<40} {ours / 1e6:>10.2f} {theirs / 1e6:>10.2f} {ours / theirs:>7.4f} "
            f"{our_seconds:>9.2f} {their_seconds:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
