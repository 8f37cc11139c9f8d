"""`make bench-multi`: ten functions sharing one requirements set, deployed cold to a local moto server.

Three measurements on the standard workload (bench/run.py builds it, and drover 0.7.1's venv):
- drover 0.7.1, one run per function, ten runs in sequence (its pipeline per function: package,
  upload, publish/attach; the layer name is shared, so runs 2-10 find its layer by digest);
- drover-action, one run of ten stages (one walk and hash, one archive per digest, one layer
  version, 8 functions updated at a time);
- drover-action, one run of one stage.
Ratios: 0.7.1's ten runs / our ten-stage run (target >= 10), our ten-stage run / our one-stage run
(target <= 2). Every deploy is a first deploy to functions created just before it. Results go to
.cache/bench/results/multi_results.json (ignored by git), or with `--record` (make bench-multi-record)
to the committed bench/multi_results.json; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import output  # bench/output.py: where results go
import run as base  # bench/run.py: the workload, the baseline venv, a local moto

FUNCTIONS = 10
PATTERN = "^bench_fn.*"


def stage_yaml(name: str, function_name: str, layer_name: str) -> str:
    return (
        f"  {name}:\n"
        f"    region_name: {base.REGION}\n    function_name: {function_name}\n    compatible_runtime: python3.12\n"
        f"    function_file_patterns:\n      - '{PATTERN}'\n    requirements_layer_name: {layer_name}\n"
        f"    upload_bucket:\n      region_name: {base.REGION}\n      bucket_name: {base.BUCKET}\n"
    )


def write(path: Path, stages: list[tuple[str, str, str]]) -> Path:
    path.write_text("stages:\n" + "".join(stage_yaml(*stage) for stage in stages))
    return path


def measure(baseline: Path, workload: Path, scratch: Path) -> dict[str, Any]:
    aws = base.LocalAws()
    try:
        tree = scratch / "tree"
        shutil.copytree(workload / "install", tree / "install", symlinks=True)
        aws.create_bucket(base.BUCKET)

        single = write(tree / "single.yml", [("one", "ours-single", "ours-single-requirements")])
        aws.create_function("ours-single")
        ours_single = base.run(
            base.ours("--settings-file", str(single), "--install-path", "install", "--json", "--quiet", "one"),
            cwd=tree,
            env=aws.env,
        )

        names = [f"s{index}" for index in range(FUNCTIONS)]
        several = write(tree / "ten.yml", [(name, f"ours-{name}", "ours-shared-requirements") for name in names])
        for name in names:
            aws.create_function(f"ours-{name}")
        ten_command = base.ours("--settings-file", str(several), "--install-path", "install", "--json", "--quiet")
        ours_ten = base.run([*ten_command, *names], cwd=tree, env=aws.env)
        ten_result = json.loads(ours_ten.stdout)
        ours_rerun = base.run([*ten_command, *names], cwd=tree, env=aws.env)
        rerun_result = json.loads(ours_rerun.stdout)

        baseline_runs = []
        for index in range(FUNCTIONS):
            function_name = f"base-{index}"
            aws.create_function(function_name)
            settings = write(tree / f"base-{index}.yml", [("bench", function_name, "base-shared-requirements")])
            command = [str(baseline), "-I", "-c", base.BASELINE_CLI, "--settings-file", str(settings)]
            command += ["--install-path", "install", "--non-interactive", "bench"]
            baseline_runs.append(base.run(command, cwd=tree, env=aws.env).seconds)
    finally:
        aws.stop()
    baseline_total = sum(baseline_runs)
    return {
        "functions": FUNCTIONS,
        "baseline_sequential_seconds": round(baseline_total, 3),
        "baseline_runs": [round(seconds, 3) for seconds in baseline_runs],
        "ours_ten_stage_seconds": round(ours_ten.seconds, 3),
        "ours_single_stage_seconds": round(ours_single.seconds, 3),
        "ours_ten_stage_noop_rerun_seconds": round(ours_rerun.seconds, 3),
        "speedup_vs_baseline": round(baseline_total / ours_ten.seconds, 2),
        "ten_vs_single": round(ours_ten.seconds / ours_single.seconds, 2),
        "targets": {"speedup_vs_baseline": ">= 10", "ten_vs_single": "<= 2"},
        "ours_ten_stage_totals": ten_result["totals"],
        "ours_rerun_changed": rerun_result["totals"]["changed"],
        "ours_bytes_uploaded_single": json.loads(ours_single.stdout)["bytes_uploaded"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write the results here instead")
    output.add_record_flag(parser, "multi_results.json")
    args = parser.parse_args()
    written = args.output or output.results_path("multi_results.json", args.record)
    workload = base.ensure_workload()
    baseline = base.ensure_baseline()
    with tempfile.TemporaryDirectory(prefix="drover-multi-bench-") as directory:
        results = {"machine": base.machine_facts(baseline), **measure(baseline, workload, Path(directory))}
    written.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{FUNCTIONS} functions, one requirements set, first deploys:\n"
        f"  drover 0.7.1, {FUNCTIONS} sequential runs: {results['baseline_sequential_seconds']:.1f} s\n"
        f"  drover-action, one {FUNCTIONS}-stage run:  {results['ours_ten_stage_seconds']:.1f} s "
        f"({results['speedup_vs_baseline']:.1f}x faster; target >= 10x)\n"
        f"  drover-action, one single-stage run: {results['ours_single_stage_seconds']:.1f} s "
        f"(ten stages / one = {results['ten_vs_single']:.2f}; target <= 2)\n"
        f"  drover-action, {FUNCTIONS}-stage no-op rerun: {results['ours_ten_stage_noop_rerun_seconds']:.1f} s\n"
        f"written to {written}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
