"""A real moto server on 127.0.0.1 and helpers that build infrastructure the way a user's IaC would."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto.server import ThreadedMotoServer

from drover.deploy import WRITE_OPERATIONS, AwsClients

REGION = "us-east-1"
ACCOUNT = "123456789012"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


class MotoServer:
    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server._server.server_address  # type: ignore[attr-defined]
        self.endpoint = f"http://{host}:{port}"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.server.stop()


@dataclass
class CallRecorder:
    """Counts every AWS operation drover's clients make, through a botocore event hook."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    @property
    def writes(self) -> list[str]:
        return [name for name in self.calls if name in WRITE_OPERATIONS]

    def count(self) -> Counter[str]:
        return Counter(self.calls)

    def clear(self) -> None:
        self.calls.clear()


# One loader for every test session: each new botocore session would otherwise parse the service
# models (JSON files of megabytes) again, which made each deploy test spend most of its time there.
_LOADER = botocore.loaders.create_loader()


def boto_session() -> boto3.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION, botocore_session=core
    )
    _LOADER.search_paths[:] = dict.fromkeys(_LOADER.search_paths)  # boto3 appends its data path each time
    return session


def recording_clients(recorder: CallRecorder, region: str = REGION) -> AwsClients:
    session = boto_session()
    session.events.register("before-call.*.*", recorder)
    return AwsClients(region, session=session, sleep=lambda seconds: None)


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@dataclass
class Infrastructure:
    """Resources created with plain boto3, as Terraform would, outside drover."""

    session: boto3.Session = field(default_factory=boto_session)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=REGION)

    def role(self, name: str = "fn-role") -> str:
        return str(self.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_POLICY)["Role"]["Arn"])

    def function(
        self, name: str = "fn", runtime: str = "python3.12", architecture: str = "x86_64", **extra: Any
    ) -> dict[str, Any]:
        return dict(
            self.client("lambda").create_function(
                FunctionName=name,
                Runtime=runtime,
                Role=self.role(f"{name}-role"),
                Handler="app.handler",
                Code={"ZipFile": zip_bytes({"placeholder.py": "x = 1\n"})},
                Architectures=[architecture],
                **extra,
            )
        )

    def layer(self, name: str, region: str = REGION) -> str:
        client = self.session.client("lambda", region_name=region)
        return str(
            client.publish_layer_version(
                LayerName=name,
                Content={"ZipFile": zip_bytes({"python/extension.py": "y = 2\n"})},
                CompatibleRuntimes=["python3.12"],
            )["LayerVersionArn"]
        )

    def bucket(self, name: str, versioned: bool = False, region: str = REGION) -> None:
        s3 = self.session.client("s3", region_name=region)
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def configuration(self, name: str = "fn") -> dict[str, Any]:
        return dict(self.client("lambda").get_function(FunctionName=name)["Configuration"])

    def tags(self, name: str = "fn") -> dict[str, str]:
        return dict(self.client("lambda").get_function(FunctionName=name).get("Tags") or {})

    def layer_versions(self, name: str) -> list[dict[str, Any]]:
        return list(self.client("lambda").list_layer_versions(LayerName=name)["LayerVersions"])


@contextmanager
def environment(monkeypatch: Any, endpoint: str) -> Iterator[None]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    yield


def inject_error(clients: AwsClients, service: str, operation: str, code: str, message: str, status: int = 400) -> None:
    """Make one operation fail with an AWS error, before it reaches the server (the rest stays real)."""
    from botocore.awsrequest import AWSResponse

    def fail(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        response = AWSResponse("http://injected", status, {}, None)
        return response, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}

    assert clients.session is not None
    clients.session.events.register(f"before-call.{_event_service(service)}.{operation}", fail)


def _event_service(service: str) -> str:
    return {"lambda": "lambda", "s3": "s3", "sts": "sts"}[service]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One real moto server per test process (each xdist worker has its own)."""
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto server, with the environment pointing boto3 at it."""
    moto_server.reset()
    with environment(monkeypatch, moto_server.endpoint):
        yield moto_server


@pytest.fixture
def infra(aws: MotoServer) -> Infrastructure:
    return Infrastructure()
