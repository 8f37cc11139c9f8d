"""Where a bench run writes its numbers: an ignored file by default, the committed one with --record.

`make bench` and `make bench-multi` leave the tree clean (raw results under .cache/bench/results/);
`make bench-record` and `make bench-multi-record` update the committed bench/*.json on purpose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAW_DIRECTORY = ROOT / ".cache" / "bench" / "results"
RECORDED_DIRECTORY = ROOT / "bench"


def results_path(name: str, record: bool) -> Path:
    """bench/<name> (committed) when recording, else .cache/bench/results/<name> (ignored by git)."""
    directory = RECORDED_DIRECTORY if record else RAW_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def add_record_flag(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"update the committed bench/{name} (default: write {RAW_DIRECTORY.relative_to(ROOT)}/{name}, ignored by git)",
    )
