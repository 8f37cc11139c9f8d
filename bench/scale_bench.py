"""`make bench-scale`: N stages (default 1,000) deployed by ONE drover run against a throttled Lambda API.

The local AWS API (moto, 127.0.0.1) sits behind bench/throttle_proxy.py, which answers Lambda's
control plane with TooManyRequestsException (HTTP 429) beyond --rate requests per sliding second
(default 10); S3 passes unthrottled. The functions are created beforehand directly on moto (an IAM
role and a placeholder zip each, as tests/aws.py `Infrastructure.function` does); the stages share
one requirements layer name, use four function-file patterns (four function archives, four
requirements digests, so four layer versions) and half of them upload through an S3 bucket.

For each retry configuration (--modes) and each size (100 and N; only N with --quick or N <= 100) a
fresh moto gets the functions, then one `python -m drover ... s0 ... sN-1` runs through a fresh
proxy. Measured, never asserted:
- convergence: after the run, each function is read from moto directly; its CodeSha256 must equal
  the CodeSha256 drover reported and the sha256 of the archive a package-only run builds, and its
  layer the layer version drover reported, whose CodeSha256 must be the requirements archive's;
- wall time / (Lambda requests the proxy accepted / rate): how close the run came to the fastest
  the throttle allows (target <= 1.3), and the 429s the proxy sent;
- the drover process's peak RSS (its ru_maxrss, through a small launcher), at 100 and N functions,
  and their ratio.

Retry configurations (--modes; botocore's own variables, which drover honours): `standard`
(AWS_RETRY_MODE=standard: each thread backs off alone, throttles draw on the retry quota; drover's
Lambda default until the first run of this bench), `adaptive` (AWS_RETRY_MODE=adaptive: botocore's
client-side rate limiter; drover's Lambda default since), `default` (no variable: drover as
shipped), `standard-20` (standard with AWS_MAX_ATTEMPTS=20). The drover process is driven only
through its public CLI. Results: printed, and written to bench/scale_results.json (not tracked).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "scale_results.json"
PROXY = ROOT / "bench" / "throttle_proxy.py"
REGION = "us-east-1"
BUCKET = "drover-scale-bench"
LAYER = "scale-shared-requirements"
RATE = 10
QUICK = 100
PATTERNS = ("api", "worker", "cron", "events")  # stage i deploys fn_<PATTERNS[i % 4]>.py
MODES: dict[str, dict[str, str]] = {
    "standard": {"AWS_RETRY_MODE": "standard"},
    "adaptive": {"AWS_RETRY_MODE": "adaptive"},
    "default": {},  # drover's own Config, as shipped
    "standard-20": {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "20"},
}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}


def stage_name(index: int) -> str:
    return f"s{index}"


def function_name(index: int) -> str:
    return f"scale-fn-{index}"


# -- the project: four handlers and a few "installed" packages ----------------------------------------


def write_install(path: Path) -> Path:
    for pattern in PATTERNS:
        (path / f"fn_{pattern}.py").parent.mkdir(parents=True, exist_ok=True)
        (path / f"fn_{pattern}.py").write_text(
            f'"""The {pattern} handler."""\n\nimport tinyjson\n\n\ndef handler(event, context):\n'
            f'    return tinyjson.dumps({{"handler": "{pattern}", "event": event}})\n'
        )
    for package, modules in {"tinyjson": 6, "tinyhttp": 10, "tinyretry": 3}.items():
        directory = path / package
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "__init__.py").write_text(f'"""{package}."""\n\nfrom .m0 import *  # noqa\n')
        for index in range(modules):
            body = "".join(f"def f{k}(x):\n    return x * {k} + {index}\n\n" for k in range(40))
            (directory / f"m{index}.py").write_text(f'"""{package} module {index}."""\n\n{body}')
        info = path / f"{package}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    return path


def stage_yaml(index: int) -> str:
    upload = f"    upload_bucket:\n      region_name: {REGION}\n      bucket_name: {BUCKET}\n" if index % 2 == 0 else ""
    return (
        f"  {stage_name(index)}:\n"
        f"    region_name: {REGION}\n    function_name: {function_name(index)}\n    compatible_runtime: python3.12\n"
        f"    function_file_patterns:\n      - '^fn_{PATTERNS[index % len(PATTERNS)]}\\.py$'\n"
        f"    requirements_layer_name: {LAYER}\n{upload}"
    )


def write_settings(path: Path, functions: int) -> Path:
    path.write_text("stages:\n" + "".join(stage_yaml(index) for index in range(functions)))
    return path


def sha256_b64(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def expected_archives(tree: Path, settings: Path, install: Path) -> dict[str, tuple[str, str]]:
    """Per pattern, the CodeSha256 of the function and requirements archives drover builds (package-only run;
    each stage's archives are where its JSON result says: several stages name them by digest)."""
    out = tree / "expected"
    stages = [stage_name(index) for index in range(len(PATTERNS))]
    command = [sys.executable, "-m", "drover", "--settings-file", str(settings), "--install-path", str(install)]
    command += ["--package-only", "--archive-dir", str(out), "--quiet", "--json", *stages]
    done = subprocess.run(command, cwd=tree, env={**os.environ, **CREDENTIALS}, check=True, capture_output=True)
    results = {entry["stage"]: entry for entry in json.loads(done.stdout)["results"]}
    return {
        PATTERNS[index]: (
            sha256_b64(Path(results[stage]["function_archive"])),
            sha256_b64(Path(results[stage]["requirements_archive"])),
        )
        for index, stage in enumerate(stages)
    }


# -- the local AWS API -----------------------------------------------------------------------------


class Moto:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server._server.server_address  # type: ignore[attr-defined]
        self.endpoint = f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
        config = Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=4)
        return session.client(service, endpoint_url=self.endpoint, config=config)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=60):
            pass

    def create(self, functions: int) -> float:
        """The bucket and the functions, as IaC would create them: a role and a placeholder zip each."""
        start = time.perf_counter()
        self.client("s3").create_bucket(Bucket=BUCKET)
        iam, lambda_ = self.client("iam"), self.client("lambda")
        placeholder = io.BytesIO()
        with zipfile.ZipFile(placeholder, "w") as archive:
            archive.writestr("placeholder.py", "x = 1\n")
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        )
        for index in range(functions):
            name = function_name(index)
            role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            lambda_.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler=f"fn_{PATTERNS[index % len(PATTERNS)]}.handler",
                Code={"ZipFile": placeholder.getvalue()},
                Architectures=["x86_64"],
            )
        return time.perf_counter() - start

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    endpoint: str

    @classmethod
    def start(cls, upstream: str, rate: int, lifetime: float) -> Proxy:
        command = [sys.executable, str(PROXY), "--upstream", upstream, "--rate", str(rate)]
        command += ["--max-lifetime", str(int(lifetime))]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            process.kill()
            raise SystemExit(f"the throttle proxy did not start: {line!r}")
        return cls(process, line.removeprefix("listening on "))

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/__throttle_proxy__/stats", timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- one measured run ----------------------------------------------------------------------------------


@dataclass
class DroverRun:
    exit_code: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr_tail: str
    timed_out: bool


# Linux carries the pre-exec peak RSS of a process into its ru_maxrss: a child forked from this
# process (which holds moto and its thousand functions) would report at least this process's RSS.
# So a small launcher (python -I -S, ~10 MB) forks drover and reports drover's own ru_maxrss.
LAUNCHER = r"""
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda received, frame: os.kill(pid, received))
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_drover(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float, log: Path) -> DroverRun:
    """One drover process, through LAUNCHER: its exit code, wall time and its own peak RSS."""
    out_path, rss_path = log.with_suffix(".stdout"), log.with_suffix(".maxrss")
    launched = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(rss_path), *command]
    with out_path.open("w") as stdout, log.open("w") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(launched, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGINT)  # drover reports what it did, then exits
            process.wait()
        seconds = time.perf_counter() - start
    return DroverRun(
        exit_code=process.returncode,
        seconds=seconds,
        peak_rss_mb=int(rss_path.read_text()) / 1024 if rss_path.exists() else 0.0,
        stdout=out_path.read_text(),
        stderr_tail=log.read_text()[-3000:],
        timed_out=timed_out,
    )


def converged(
    moto: Moto, functions: int, report: dict[str, Any], expected: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Each function read from moto directly, against what drover reported and what the package is."""
    reported = {entry["stage"]: entry for entry in report.get("results", [])}
    lambda_ = moto.client("lambda")
    layer_sha: dict[str, str] = {}
    problems: list[str] = []
    good = 0
    for index in range(functions):
        stage, pattern = stage_name(index), PATTERNS[index % len(PATTERNS)]
        function_sha, requirements_sha = expected[pattern]
        entry = reported.get(stage, {})
        configuration = lambda_.get_function(FunctionName=function_name(index))["Configuration"]
        live_sha = configuration["CodeSha256"]
        layers = [layer["Arn"] for layer in configuration.get("Layers", [])]
        layer_arn = entry.get("requirements_layer_arn")
        if layer_arn and layer_arn not in layer_sha:
            arn, version = layer_arn.rsplit(":", 1)
            layer_sha[layer_arn] = lambda_.get_layer_version(LayerName=arn, VersionNumber=int(version))["Content"][
                "CodeSha256"
            ]
        checks = {
            "stage failed or missing from the report": "error" not in entry and bool(entry),
            "live CodeSha256 != reported": live_sha == entry.get("code_sha256"),
            "live CodeSha256 != package": live_sha == function_sha,
            "layer != reported": layers == [layer_arn],
            "layer CodeSha256 != package": layer_sha.get(layer_arn or "") == requirements_sha,
        }
        failed = [what for what, ok in checks.items() if not ok]
        if failed:
            problems.append(f"{stage}: {', '.join(failed)}")
        else:
            good += 1
    return {
        "converged": good,
        "not_converged": functions - good,
        "layer_versions": len(layer_sha),
        "problems": problems[:20],
    }


def measure(moto: Moto, scratch: Path, functions: int, mode: str, rate: int) -> dict[str, Any]:
    tree = scratch / f"{mode}-{functions}"
    tree.mkdir()
    install = write_install(tree / "install")
    settings = write_settings(tree / "settings.yml", functions)
    expected = expected_archives(tree, settings, install)
    moto.reset()
    setup_seconds = moto.create(functions)
    timeout = max(900.0, functions * 6.0)
    proxy = Proxy.start(moto.endpoint, rate, lifetime=timeout + 120)
    try:
        env = {**os.environ, **CREDENTIALS, **MODES[mode], "AWS_ENDPOINT_URL": proxy.endpoint}
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", *(name for name in env if name.startswith("DROVER_"))):
            env.pop(variable, None)
        for variable in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
            if variable not in MODES[mode]:
                env.pop(variable, None)
        command = [sys.executable, "-m", "drover", "--settings-file", str(settings), "--install-path", str(install)]
        command += ["--json", "--quiet", *(stage_name(index) for index in range(functions))]
        run = run_drover(command, cwd=tree, env=env, timeout=timeout, log=tree / "drover.stderr")
        stats = proxy.stats()
    finally:
        proxy.stop()
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        report = {}
    state = converged(moto, functions, report, expected)
    minimum = stats["lambda_accepted"] / rate
    totals = report.get("totals", {})
    return {
        "functions": functions,
        "mode": mode,
        "retry_environment": MODES[mode],
        "exit_code": run.exit_code,
        "timed_out": run.timed_out,
        "wall_seconds": round(run.seconds, 2),
        "lambda_requests_accepted": stats["lambda_accepted"],
        "minimum_seconds_at_rate": round(minimum, 2),
        "wall_vs_minimum": round(run.seconds / minimum, 3) if minimum else None,
        "throttled_429": stats["lambda_throttled"],
        "throttled_per_accepted": round(stats["lambda_throttled"] / max(1, stats["lambda_accepted"]), 3),
        "s3_and_other_requests": stats["other_requests"],
        "lambda_operations": stats["operations"],
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "reported_succeeded": totals.get("succeeded"),
        "reported_failed": totals.get("failed"),
        "layer_versions_published": totals.get("layer_versions_published"),
        **state,
        "setup_seconds": round(setup_seconds, 1),
        "stderr_tail": run.stderr_tail if (run.exit_code or state["not_converged"]) else "",
    }


def summary(cells: list[dict[str, Any]], sizes: list[int], modes: list[str]) -> dict[str, Any]:
    by = {(cell["mode"], cell["functions"]): cell for cell in cells}
    result: dict[str, Any] = {}
    if len(sizes) == 2:
        small, large = sizes
        memory = {}
        for mode in modes:
            a, b = by.get((mode, small)), by.get((mode, large))
            if a and b:
                memory[mode] = {
                    f"peak_rss_mb_{small}": a["peak_rss_mb"],
                    f"peak_rss_mb_{large}": b["peak_rss_mb"],
                    "ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
                    "kb_per_extra_function": round((b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024 / (large - small), 1),
                }
        result["memory"] = memory
    if "standard" in modes and "adaptive" in modes:
        comparison = {}
        for size in sizes:
            standard, adaptive = by.get(("standard", size)), by.get(("adaptive", size))
            if standard and adaptive:
                comparison[str(size)] = {
                    "converged_standard": standard["converged"],
                    "converged_adaptive": adaptive["converged"],
                    "wall_standard_over_adaptive": round(standard["wall_seconds"] / adaptive["wall_seconds"], 3),
                    "429_standard_over_adaptive": round(
                        standard["throttled_429"] / max(1, adaptive["throttled_429"]), 2
                    ),
                }
        result["standard_vs_adaptive"] = comparison
    return result


def ratio(cell: dict[str, Any]) -> str:
    if cell["converged"] < cell["functions"] or cell["wall_vs_minimum"] is None:
        return "lost"
    return f"{cell['wall_vs_minimum']:.2f}"


def render(cells: list[dict[str, Any]], summary_: dict[str, Any], rate: int, output: Path) -> str:
    lines = [
        f"one drover run of N stages, Lambda throttled at {rate} req/s (429 TooManyRequestsException beyond it):",
        f"{'mode':<11} {'N':>5} {'exit':>4} {'converged':>10} {'wall s':>8} {'min s':>7} {'ratio':>6} "
        f"{'429s':>6} {'lambda':>6} {'RSS MB':>7}",
    ]
    for cell in cells:
        lines.append(
            f"{cell['mode']:<11} {cell['functions']:>5} {cell['exit_code']:>4} "
            f"{cell['converged']:>5}/{cell['functions']:<4} {cell['wall_seconds']:>8.1f} "
            f"{cell['minimum_seconds_at_rate']:>7.1f} {ratio(cell):>6} "
            f"{cell['throttled_429']:>6} {cell['lambda_requests_accepted']:>6} {cell['peak_rss_mb']:>7.1f}"
        )
    lines.append(
        "ratio = wall time / (accepted Lambda requests / rate), target <= 1.3; 'lost': not every stage converged"
    )
    for mode, memory in summary_.get("memory", {}).items():
        values = list(memory.values())
        lines.append(
            f"memory ({mode}): peak RSS {values[0]:.1f} MB -> {values[1]:.1f} MB, ratio {memory['ratio']:.2f}, "
            f"{memory['kb_per_extra_function']:.1f} KB per extra function"
        )
    for size, comparison in summary_.get("standard_vs_adaptive", {}).items():
        lines.append(
            f"{size} functions, standard vs adaptive: converged {comparison['converged_standard']} vs "
            f"{comparison['converged_adaptive']}, wall {comparison['wall_standard_over_adaptive']:.2f}x, "
            f"429s {comparison['429_standard_over_adaptive']:.2f}x (a run that lost stages made fewer requests)"
        )
    lines.append(f"written to {output}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000, help="stages in the large run (default 1000)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} functions only")
    parser.add_argument("--modes", default="standard,adaptive", help=f"retry configurations, of {','.join(MODES)}")
    parser.add_argument("--rate", type=int, default=RATE, help="Lambda requests per second the proxy allows")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    functions = QUICK if args.quick else args.functions
    sizes = [QUICK, functions] if functions > QUICK else [functions]
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]}; choose from {', '.join(MODES)}")
    cells: list[dict[str, Any]] = []
    started = time.time()
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory(prefix="drover-scale-bench-") as directory:
            for size in sizes:
                for mode in modes:
                    print(f"{mode}, {size} functions ...", file=sys.stderr, flush=True)
                    cell = measure(moto, Path(directory), size, mode, args.rate)
                    cells.append(cell)
                    print(
                        f"  exit {cell['exit_code']}, {cell['converged']}/{size} converged, "
                        f"{cell['wall_seconds']:.1f} s (minimum {cell['minimum_seconds_at_rate']:.1f} s), "
                        f"{cell['throttled_429']} 429s, peak RSS {cell['peak_rss_mb']:.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                    shutil.rmtree(Path(directory) / f"{mode}-{size}", ignore_errors=True)
    finally:
        moto.stop()
    summary_ = summary(cells, sizes, modes)
    results = {
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "rate_per_second": args.rate,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "summary": summary_,
        "runs": cells,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(cells, summary_, args.rate, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
