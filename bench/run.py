"""`make bench`: drover-action against drover 0.7.1 on the standard workload, as ratios measured in one run.

Every number is a ratio of two measurements taken in the same run, alternating baseline and ours, so
machine noise cancels out; nothing here is a pass/fail test. Results: a printed table and
.cache/bench/results/results.json (ignored by git); `--record` (make bench-record) writes the committed
bench/results.json instead.

The baseline (drover==0.7.1, which needs pydantic 1.x) lives in its own venv under .cache/bench. Its
packaging cannot run without AWS through its CLI, so the cold-package measure drives its package step
through its API (`Drover._get_function_layer_mappings` + `drover.io.write_archive` for both archives);
the no-op redeploy runs its real CLI against the same local moto server as ours. moto lacks
`GetLayerVersionByArn`, which would make drover 0.7.1 republish its layer on every run: the baseline
harness maps that call to `GetLayerVersion` so it can skip too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import output  # bench/output.py: where results go

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CACHE = ROOT / ".cache" / "bench"
WORKLOAD = CACHE / "workload"
BASELINE_VENV = CACHE / "drover-0.7.1"
REGION = "us-east-1"
BUCKET = "drover-bench"

BASELINE_PACKAGE = r"""
import sys, time
from pathlib import Path
import yaml
from drover import Drover
from drover.io import write_archive
from drover.models import Settings
settings = Settings.parse_obj(yaml.safe_load(open(sys.argv[1])))
drover = Drover(settings, "bench")
mappings = drover._get_function_layer_mappings(Path(sys.argv[2]))
out = Path(sys.argv[3])
write_archive(out / "requirements.zip", mappings.requirements_mappings)
write_archive(out / "function.zip", mappings.function_mappings)
"""

BASELINE_CLI = r"""
import sys
import botocore.client
_original = botocore.client.BaseClient._make_api_call
def _make_api_call(self, operation_name, api_params):
    # moto does not implement GetLayerVersionByArn; ask GetLayerVersion the same question
    if operation_name == "GetLayerVersionByArn":
        arn = api_params["Arn"]
        layer, version = arn.rsplit(":", 1)
        return _original(self, "GetLayerVersion", {"LayerName": layer, "VersionNumber": int(version)})
    return _original(self, operation_name, api_params)
botocore.client.BaseClient._make_api_call = _make_api_call
from drover.cli import main
sys.argv = ["drover", *sys.argv[1:]]
main()
"""


@dataclass
class Run:
    seconds: float
    stdout: str
    cpu_seconds: float = 0.0  # user + system time of the child: what other processes' load does not change


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"command failed ({completed.returncode}): {' '.join(command)}\n{completed.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, completed.stdout, cpu)


def peak_rss_mb(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Peak RSS of one child, measured by /usr/bin/time -v (RUSAGE_CHILDREN is a running maximum)."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        subprocess.run(
            ["/usr/bin/time", "-v", "-o", report.name, *command],
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for line in Path(report.name).read_text().splitlines():
            if "Maximum resident set size" in line:
                return int(line.rsplit(":", 1)[1]) / 1024
    raise SystemExit("no RSS in /usr/bin/time output")


def median(values: list[float]) -> float:
    return statistics.median(values)


def ensure_workload() -> Path:
    subprocess.run(
        ["bash", str(SHARED / "bench" / "make-workload.sh"), str(WORKLOAD)], check=True, stdout=subprocess.DEVNULL
    )
    return WORKLOAD


def ensure_baseline() -> Path:
    python = BASELINE_VENV / "bin" / "python"
    if not (BASELINE_VENV / ".complete").exists():
        shutil.rmtree(BASELINE_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "drover==0.7.1",
                "pydantic<2",
            ],
            check=True,
        )
        (BASELINE_VENV / ".complete").touch()
    return python


def baseline_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-I", "-c", "import drover, pydantic; print(drover.__version__, pydantic.VERSION)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def write_settings(path: Path, function_name: str, pattern: str = "^bench_fn.*", bucket: str | None = None) -> Path:
    upload = f"    upload_bucket:\n      region_name: {REGION}\n      bucket_name: {bucket}\n" if bucket else ""
    path.write_text(
        "stages:\n  bench:\n"
        f"    region_name: {REGION}\n    function_name: {function_name}\n    compatible_runtime: python3.12\n"
        f"    function_file_patterns:\n      - '{pattern}'\n{upload}"
    )
    return path


def ours(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "drover", *arguments]


def ours_package_only(settings: Path, install: Path, out: Path) -> list[str]:
    return ours(
        "--settings-file",
        str(settings),
        "--install-path",
        str(install),
        "--package-only",
        "--archive-dir",
        str(out),
        "--quiet",
        "bench",
    )


def measure_cold_package(baseline: Path, workload: Path, scratch: Path, repetitions: int) -> dict[str, Any]:
    settings = write_settings(scratch / "package.yml", "bench-fn")
    install = workload / "install"
    base_out, our_out = scratch / "base-out", scratch / "our-out"
    base_times, our_times, base_cpu, our_cpu, load = [], [], [], [], []
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION}
    for _ in range(repetitions):
        for out in (base_out, our_out):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
        load.append(os.getloadavg()[0])
        base = run(
            [str(baseline), "-I", "-c", BASELINE_PACKAGE, str(settings), str(install), str(base_out)],
            cwd=scratch,
            env=env,
        )
        ours_run = run(ours_package_only(settings, install, our_out), cwd=scratch)
        base_times.append(base.seconds)
        base_cpu.append(base.cpu_seconds)
        our_times.append(ours_run.seconds)
        our_cpu.append(ours_run.cpu_seconds)
    our_rss = peak_rss_mb(
        ours_package_only(settings, install, our_out),
        cwd=scratch,
    )
    base_size = (base_out / "requirements.zip").stat().st_size
    our_size = (our_out / "requirements.zip").stat().st_size
    return {
        "baseline_seconds": median(base_times),
        "ours_seconds": median(our_times),
        "speedup": median(base_times) / median(our_times),
        "baseline_requirements_zip": base_size,
        "ours_requirements_zip": our_size,
        "size_ratio": our_size / base_size,
        "ours_peak_rss_mb": our_rss,
        "baseline_runs": base_times,
        "ours_runs": our_times,
        # one core's work vs two cores' work: under other processes' load our two threads lose more wall time
        # than the baseline's one, so the wall ratio drops while the CPU ratio stays
        "baseline_cpu_seconds": median(base_cpu),
        "ours_cpu_seconds": median(our_cpu),
        "cpu_ratio": median(base_cpu) / median(our_cpu),
        "load_average_before_each": load,
    }


class LocalAws:
    """A moto server on 127.0.0.1 plus the functions each tool deploys to (created as IaC would)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server._server.server_address  # type: ignore[attr-defined]
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
        }
        self.env.pop("AWS_PROFILE", None)

    def create_function(self, name: str) -> None:
        import io
        import zipfile

        import boto3

        session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
        endpoint = self.env["AWS_ENDPOINT_URL"]
        role = session.client("iam", endpoint_url=endpoint).create_role(
            RoleName=f"{name}-role", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        placeholder = io.BytesIO()
        with zipfile.ZipFile(placeholder, "w") as archive:
            archive.writestr("placeholder.py", "x = 1\n")
        session.client("lambda", endpoint_url=endpoint).create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="bench_fn.handler",
            Code={"ZipFile": placeholder.getvalue()},
        )

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name=REGION,
        ).create_bucket(Bucket=name)

    def stop(self) -> None:
        self.server.stop()


def measure_redeploys(baseline: Path, workload: Path, scratch: Path, repetitions: int) -> dict[str, Any]:
    aws = LocalAws()
    try:
        tree = scratch / "deploy-tree"
        shutil.copytree(workload / "install", tree / "install", symlinks=True)
        # drover 0.7.1 cannot deploy without upload_bucket (an unbound variable in its direct-upload path),
        # so both tools deploy through the same local bucket
        aws.create_bucket(BUCKET)
        base_settings = write_settings(tree / "base.yml", "bench-base", bucket=BUCKET)
        our_settings = write_settings(tree / "ours.yml", "bench-ours", bucket=BUCKET)
        aws.create_function("bench-base")
        aws.create_function("bench-ours")
        base_cli = [
            str(baseline),
            "-I",
            "-c",
            BASELINE_CLI,
            "--settings-file",
            str(base_settings),
            "--install-path",
            "install",
            "--non-interactive",
            "bench",
        ]
        our_cli = ours("--settings-file", str(our_settings), "--install-path", "install", "--json", "--quiet", "bench")
        run(base_cli, cwd=tree, env=aws.env)  # first deploys: not measured
        first = json.loads(run(our_cli, cwd=tree, env=aws.env).stdout)
        base_noop, our_noop, our_results, base_cpu, our_cpu, load = [], [], [], [], [], []
        for _ in range(repetitions):
            load.append(os.getloadavg()[0])
            base_run = run(base_cli, cwd=tree, env=aws.env)
            base_noop.append(base_run.seconds)
            base_cpu.append(base_run.cpu_seconds)
            result = run(our_cli, cwd=tree, env=aws.env)
            our_noop.append(result.seconds)
            our_cpu.append(result.cpu_seconds)
            our_results.append(json.loads(result.stdout))
        handler = tree / "install" / "bench_fn" / "__init__.py"
        original = handler.read_text()
        code_change = []
        code_results = []
        for index in range(repetitions):
            handler.write_text(original + f"\nBENCH_EDIT = {index}\n")
            result = run(our_cli, cwd=tree, env=aws.env)
            code_change.append(result.seconds)
            code_results.append(json.loads(result.stdout))
        handler.write_text(original)
        run(our_cli, cwd=tree, env=aws.env)  # converge on the original tree again, then count a true no-op
        writes = count_noop_writes(our_settings, tree, aws.env)
    finally:
        aws.stop()
    noop_clean = all(
        r["actions"] == []
        and r["bytes_uploaded"] == 0
        and r["function_size"] is None
        and r["requirements_size"] is None
        for r in our_results
    )
    code_only_clean = all(
        r["requirements_size"] is None and not r["requirements_updated"] and r["function_updated"] for r in code_results
    )
    return {
        "first_deploy_actions": [action["action"] for action in first["actions"]],
        "baseline_noop_seconds": median(base_noop),
        "ours_noop_seconds": median(our_noop),
        "noop_ratio": median(our_noop) / median(base_noop),
        "noop_no_upload_no_archive": noop_clean,
        "noop_write_calls": writes,
        "code_change_seconds": median(code_change),
        "code_change_vs_noop": median(code_change) / median(our_noop),
        "code_change_requirements_untouched": code_only_clean,
        "baseline_noop_runs": base_noop,
        "ours_noop_runs": our_noop,
        # user + system time of each side: ours spreads its hashing over a child process and two threads,
        # so under other processes' load the wall ratio moves toward this one
        "baseline_noop_cpu_seconds": median(base_cpu),
        "ours_noop_cpu_seconds": median(our_cpu),
        "noop_cpu_ratio": median(our_cpu) / median(base_cpu),
        "noop_load_average_before_each": load,
        "code_change_runs": code_change,
    }


def count_noop_writes(settings: Path, tree: Path, env: dict[str, str]) -> list[str]:
    """One more no-op, in-process, with a botocore hook counting every call (reads and writes)."""
    code = (
        "import json, sys, boto3\n"
        "from pathlib import Path\n"
        "from drover import Drover, RunOptions\n"
        "from drover.deploy import AwsClients, WRITE_OPERATIONS\n"
        "from drover.settings import load_settings\n"
        "calls = []\n"
        "session = boto3.Session()\n"
        "session.events.register('before-call.*.*', lambda model, **_: calls.append(model.name))\n"
        "options = RunOptions(working_directory=Path('.'), aws=AwsClients('us-east-1', session=session))\n"
        "Drover(load_settings(Path(sys.argv[1])), 'bench', options=options).update(Path('install'))\n"
        "print(json.dumps([name for name in calls if name in WRITE_OPERATIONS]))\n"
    )
    return list(json.loads(run([sys.executable, "-c", code, str(settings)], cwd=tree, env=env).stdout))


def measure_digest_vs_read(workload: Path, repetitions: int) -> dict[str, Any]:
    from drover.models import Stage
    from drover.packaging import plan_package

    stage = Stage(
        region_name=REGION,
        function_name="bench-fn",
        compatible_runtime="python3.12",
        function_file_patterns=["^bench_fn.*"],
        package_exclude_patterns=[],
    )
    install = workload / "install"
    cat = "find . -type f -print0 | xargs -0 cat > /dev/null"
    read_times, digest_times = [], []
    subprocess.run(["bash", "-c", cat], cwd=install, check=True)  # warm the page cache
    for _ in range(repetitions):
        start = time.perf_counter()
        subprocess.run(["bash", "-c", cat], cwd=install, check=True)
        read_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        plan_package(stage, install, workload)
        digest_times.append(time.perf_counter() - start)
    return {
        "raw_read_seconds": median(read_times),
        "digest_seconds": median(digest_times),
        "digest_vs_read": median(digest_times) / median(read_times),
    }


def measure_scale(workload: Path, scratch: Path, repetitions: int) -> dict[str, Any]:
    big = scratch / "x4"
    for index in range(4):
        shutil.copytree(workload / "install", big / "install" / f"p{index}", symlinks=True)
    one = write_settings(scratch / "x1.yml", "bench-fn")
    four = write_settings(scratch / "x4.yml", "bench-fn", pattern="^p0/bench_fn.*")
    times1, times4 = [], []
    for _ in range(repetitions):
        for out in ("o1", "o4"):
            shutil.rmtree(scratch / out, ignore_errors=True)
        times1.append(
            run(
                ours_package_only(one, workload / "install", scratch / "o1"),
                cwd=scratch,
            ).seconds
        )
        times4.append(
            run(
                ours_package_only(four, big / "install", scratch / "o4"),
                cwd=scratch,
            ).seconds
        )
    rss1 = peak_rss_mb(
        ours_package_only(one, workload / "install", scratch / "o1"),
        cwd=scratch,
    )
    rss4 = peak_rss_mb(
        ours_package_only(four, big / "install", scratch / "o4"),
        cwd=scratch,
    )
    return {
        "x1_seconds": median(times1),
        "x4_seconds": median(times4),
        "time_growth": median(times4) / median(times1),
        "x1_peak_rss_mb": rss1,
        "x4_peak_rss_mb": rss4,
        "rss_growth": rss4 / rss1,
    }


def measure_install(repetitions: int) -> dict[str, Any]:
    """Cold installs of the workload's requirements, pip then uv each round, caches wiped (bench/install_bench.py)."""
    import install_bench  # type: ignore[import-not-found]  # bench/ is on sys.path

    options = argparse.Namespace(
        packages=install_bench.WORKLOAD, runtime="python3.12", architecture="x86_64", repeat=repetitions
    )
    measured = install_bench.measure(options)
    return {
        "pip_seconds": measured["pip_cold_seconds"],
        "uv_seconds": measured["uv_cold_seconds"],
        "speedup": measured["ratio_pip_over_uv"],
        "skip_seconds": measured["unchanged_skip_seconds"],
        "same_files": measured["same_files"],
        "details": measured,
    }


def ensure_bytecode() -> None:
    """Compile our venv and drover to bytecode, as every real install of drover has it.

    pip compiles at install (the baseline's venv has .pyc files) and the Action's image is built with
    UV_COMPILE_BYTECODE=1, but `uv sync` (make venv) does not compile, and with PYTHONDONTWRITEBYTECODE=1
    (set on these machines) every run of ours then compiled ~250 modules from source: 0.5 s of each no-op,
    0.25 s of `drover --help`. Measured without it, the comparison was of compilers, not of tools.
    """
    targets = [str(Path(sys.prefix) / "lib"), str(ROOT / "drover")]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *targets],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure_help(baseline: Path, repetitions: int) -> dict[str, Any]:
    """`drover --help`: what every invocation pays before any work (interpreter start + imports)."""
    ours_runs, base_runs = [], []
    base = [
        str(baseline),
        "-I",
        "-c",
        "import sys; from drover.cli import main; sys.argv = ['drover', '--help']; main()",
    ]
    for _ in range(max(repetitions, 3)):
        base_runs.append(run_help(base))
        ours_runs.append(run_help([str(Path(sys.executable).parent / "drover"), "--help"]))
    return {
        "baseline_seconds": median(base_runs),
        "ours_seconds": median(ours_runs),
        "baseline_runs": base_runs,
        "ours_runs": ours_runs,
    }


def run_help(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure_cold_runner(baseline: Path, scratch: Path, repetitions: int) -> dict[str, Any]:
    import cold_runner  # type: ignore[import-not-found]  # bench/ is on sys.path

    aws = LocalAws()
    try:
        aws.create_bucket(BUCKET)
        return dict(cold_runner.measure(baseline, BASELINE_CLI, scratch, CACHE, aws, repetitions))
    finally:
        aws.stop()


def machine_facts(baseline: Path) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "cores": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "baseline": baseline_version(baseline),
        "load_average_at_start": list(os.getloadavg()),
        "bytecode": "compiled (ensure_bytecode)",
        "libraries": {name: version(name) for name in ("boto3", "pydantic", "deflate", "zlib-ng", "uv", "moto")},
    }


def table(results: dict[str, Any]) -> str:
    cold, redeploy, digest, scale = (results.get(name) for name in ("cold_package", "redeploy", "digest", "scale"))
    rows: list[tuple[str, str, str, str, str]] = []
    if cold:
        rows += [
            (
                "cold package, both archives",
                f"{cold['baseline_seconds']:.2f} s",
                f"{cold['ours_seconds']:.2f} s",
                f"{cold['speedup']:.1f}x faster",
                ">= 8x",
            ),
            (
                "requirements zip size",
                f"{cold['baseline_requirements_zip']:,} B",
                f"{cold['ours_requirements_zip']:,} B",
                f"{cold['size_ratio']:.3f}x",
                "<= 1.02x",
            ),
        ]
    if redeploy:
        rows += [
            (
                "no-op redeploy (moto)",
                f"{redeploy['baseline_noop_seconds']:.2f} s",
                f"{redeploy['ours_noop_seconds']:.2f} s",
                f"{redeploy['noop_ratio']:.2f}x",
                "<= 1.0x",
            ),
            (
                "no-op redeploy: CPU time (user + sys)",
                f"{redeploy['baseline_noop_cpu_seconds']:.2f} s",
                f"{redeploy['ours_noop_cpu_seconds']:.2f} s",
                f"{redeploy['noop_cpu_ratio']:.2f}x",
                "",
            ),
            (
                "no-op: writes / archive built",
                "",
                f"{len(redeploy['noop_write_calls'])} writes",
                "none built" if redeploy["noop_no_upload_no_archive"] else "BUILT",
                "0, none",
            ),
            (
                "code-only change vs our no-op",
                "",
                f"{redeploy['code_change_seconds']:.2f} s",
                f"{redeploy['code_change_vs_noop']:.2f}x",
                "<= 1.3x",
            ),
        ]
    if digest:
        rows.append(
            (
                "digest vs raw read (cat)",
                f"{digest['raw_read_seconds']:.2f} s",
                f"{digest['digest_seconds']:.2f} s",
                f"{digest['digest_vs_read']:.2f}x",
                "<= 2x",
            )
        )
    if cold:
        rows.append(("peak RSS, cold package", "", f"{cold['ours_peak_rss_mb']:.0f} MB", "", "< 300 MB"))
    if scale:
        rows += [
            (
                "scale x4: time",
                f"{scale['x1_seconds']:.2f} s",
                f"{scale['x4_seconds']:.2f} s",
                f"{scale['time_growth']:.2f}x",
                "<= 4.4x",
            ),
            (
                "scale x4: peak RSS",
                f"{scale['x1_peak_rss_mb']:.0f} MB",
                f"{scale['x4_peak_rss_mb']:.0f} MB",
                f"{scale['rss_growth']:.2f}x",
                "flat",
            ),
        ]
    help_ = results.get("help")
    if help_:
        rows.append(
            (
                "drover --help",
                f"{help_['baseline_seconds']:.2f} s",
                f"{help_['ours_seconds']:.2f} s",
                f"{help_['ours_seconds'] / help_['baseline_seconds']:.2f}x",
                "<= 0.3 s",
            )
        )
    cold_runner = results.get("cold_runner")
    if cold_runner:
        rows += cold_runner_rows(cold_runner, redeploy)
    install = results.get("install")
    if install:
        rows.append(
            (
                "install: pip vs uv (cold caches)",
                f"{install['pip_seconds']:.1f} s",
                f"{install['uv_seconds']:.1f} s",
                f"{install['speedup']:.1f}x faster",
                ">= 10x",
            )
        )
        rows.append(("install: unchanged skip", "", f"{install['skip_seconds']:.3f} s", "", "<= 0.2 s"))
    header = ("measure", "drover 0.7.1 / ref", "drover-action", "ratio", "target")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    lines = [
        "| " + " | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def cold_runner_rows(cold: dict[str, Any], redeploy: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    rows = [
        (
            "cold runner: drover 0.7.1 pipeline vs ours today",
            f"{cold['baseline_seconds']:.2f} s",
            f"{cold['today_seconds']:.2f} s",
            f"{cold['baseline_seconds'] / cold['today_seconds']:.1f}x faster",
            "",
        ),
        (
            "cold runner no-op (dependency key)",
            f"{cold['baseline_seconds']:.2f} s",
            f"{cold['key_noop_seconds']:.2f} s",
            f"{cold['baseline_over_key_noop']:.1f}x faster",
            ">= 10x",
        ),
        (
            "cold runner code-only change vs its no-op",
            "",
            f"{cold['key_code_change_seconds']:.2f} s",
            f"{cold['code_change_over_key_noop']:.2f}x",
            "<= 1.3x",
        ),
    ]
    if redeploy:
        rows.append(
            (
                "cold runner no-op vs our warm no-op",
                f"{redeploy['ours_noop_seconds']:.2f} s",
                f"{cold['key_noop_seconds']:.2f} s",
                f"{cold['key_noop_seconds'] / redeploy['ours_noop_seconds']:.2f}x",
                "<= 1.5x",
            )
        )
    return rows


MEASURES = ("cold_package", "redeploy", "digest", "scale", "help", "cold_runner", "install")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--skip-install", action="store_true", help="leave out the (slow, network) install measure")
    parser.add_argument(
        "--only", action="append", choices=MEASURES, help="run only these measures (repeatable); table rows need theirs"
    )
    output.add_record_flag(parser, "results.json")
    args = parser.parse_args()
    chosen = set(args.only or MEASURES) - ({"install"} if args.skip_install else set())
    CACHE.mkdir(parents=True, exist_ok=True)
    ensure_bytecode()
    workload = ensure_workload()
    baseline = ensure_baseline()
    results: dict[str, Any] = {"machine": machine_facts(baseline)}
    with tempfile.TemporaryDirectory(prefix="drover-bench-", dir=CACHE) as directory:
        scratch = Path(directory)
        steps = [
            (
                "cold_package",
                "cold package",
                lambda: measure_cold_package(baseline, workload, scratch, args.repetitions),
            ),
            (
                "redeploy",
                "redeploys against moto",
                lambda: measure_redeploys(baseline, workload, scratch, args.repetitions),
            ),
            ("digest", "digest vs raw read", lambda: measure_digest_vs_read(workload, args.repetitions)),
            ("scale", "scale x4", lambda: measure_scale(workload, scratch, args.repetitions)),
            ("help", "drover --help", lambda: measure_help(baseline, args.repetitions)),
            (
                "cold_runner",
                "cold runner (fresh checkout, empty caches)",
                lambda: measure_cold_runner(baseline, scratch, args.repetitions),
            ),
            ("install", "install pip vs uv", lambda: measure_install(args.repetitions)),
        ]
        for name, label, measure in steps:
            if name in chosen:
                print(f"{label} ...", flush=True)
                results[name] = measure()
                results[name]["load_average_after"] = list(os.getloadavg())
    results["table"] = table(results)
    written = output.results_path("results.json", args.record)
    written.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(results["table"])
    print(f"\nwritten: {written.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
