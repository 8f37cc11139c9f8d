"""`make demo`: deploy examples/basic_lambda twice to a local AWS API (moto server); the second run skips.

    python examples/demo.py          # local moto server on 127.0.0.1, example infrastructure created
    python examples/demo.py --aws    # real AWS: standard credentials chain, the function must exist

With --aws nothing is created: drover only updates functions, like the original tool. The local server and
the example's role, bucket and function come from examples/local_aws.py, which `make local` runs too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from local_aws import CLEARED, create_example_infrastructure, local_environment, start_in_process

EXAMPLE = Path(__file__).resolve().parent / "basic_lambda"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aws", action="store_true", help="deploy to real AWS instead of a local moto server")
    args = parser.parse_args()
    env = dict(os.environ)
    server = None
    if not args.aws:
        server, endpoint = start_in_process()
        print(f"local AWS API (moto server) at {endpoint}")
        env = {name: value for name, value in env.items() if name not in CLEARED}
        env.update(local_environment(endpoint))
        print(f"created {', '.join(create_example_infrastructure(endpoint))}")
    try:
        with tempfile.TemporaryDirectory(prefix="drover-demo-") as scratch:
            workdir = Path(scratch) / "basic_lambda"
            shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns("install", "dist"))
            for attempt in ("first", "second"):
                print(f"\n=== {attempt} deploy of examples/basic_lambda (stage staging) ===", flush=True)
                result = run_drover(workdir, env)
                changed = [action["action"] for action in result["actions"]]
                print(
                    f"--> changed: {', '.join(changed) or 'nothing (skipped: the live function already runs this package)'}"
                )
                print(f"--> code_sha256={result['code_sha256']} bytes_uploaded={result['bytes_uploaded']}")
            print("\nresult of the second deploy (drover --json):")
            print(json.dumps(result, indent=2, sort_keys=True))
            if changed:
                print("the second deploy should have changed nothing", file=sys.stderr)
                return 1
    finally:
        if server is not None:
            server.stop()
    return 0


def run_drover(workdir: Path, env: dict[str, str]) -> dict:
    command = [
        sys.executable,
        "-m",
        "drover",
        "--install-path",
        "install",
        "--install-source",
        "basic_lambda",
        "--json",
        "staging",
    ]
    print("$ " + " ".join(["drover", *command[3:]]), flush=True)
    completed = subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)
    return json.loads(completed.stdout)


if __name__ == "__main__":
    sys.exit(main())
