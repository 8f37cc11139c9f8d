"""`make demo`: deploy examples/basic_lambda twice to a local AWS API (moto server); the second run skips.

    python examples/demo.py          # local moto server on 127.0.0.1, example infrastructure created
    python examples/demo.py --aws    # real AWS: standard credentials chain, the function must exist

With --aws nothing is created: drover only updates functions, like the original tool.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent / "basic_lambda"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aws", action="store_true", help="deploy to real AWS instead of a local moto server")
    args = parser.parse_args()
    env = dict(os.environ)
    server = None
    if not args.aws:
        server, env = start_local_aws(env)
        create_example_infrastructure(env)
    try:
        with tempfile.TemporaryDirectory(prefix="drover-demo-") as scratch:
            workdir = Path(scratch) / "basic_lambda"
            shutil.copytree(EXAMPLE, workdir)
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


def start_local_aws(env: dict[str, str]) -> tuple[object, dict[str, str]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address  # type: ignore[attr-defined]
    endpoint = f"http://{host}:{port}"
    print(f"local AWS API (moto server) at {endpoint}")
    env = {
        **env,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    return server, env


def create_example_infrastructure(env: dict[str, str]) -> None:
    """What a user's Terraform/CDK would do: a role, the bucket and the function with placeholder code."""
    import boto3

    session = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    endpoint = env["AWS_ENDPOINT_URL"]
    role = session.client("iam", endpoint_url=endpoint).create_role(
        RoleName="basic-lambda-role", AssumeRolePolicyDocument=TRUST_POLICY
    )["Role"]["Arn"]
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="drover-examples")
    placeholder = io.BytesIO()
    with zipfile.ZipFile(placeholder, "w") as archive:
        archive.writestr("placeholder.py", "def handler(event, context):\n    return None\n")
    session.client("lambda", endpoint_url=endpoint).create_function(
        FunctionName="basic-lambda",
        Runtime="python3.12",
        Role=role,
        Handler="basic_lambda.handler",
        Code={"ZipFile": placeholder.getvalue()},
        Environment={"Variables": {"OWNED_BY": "infrastructure"}},
    )
    print("created role basic-lambda-role, bucket drover-examples and function basic-lambda (placeholder code)")


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
