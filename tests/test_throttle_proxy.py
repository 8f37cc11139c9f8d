"""bench/throttle_proxy.py: Lambda requests beyond the rate get Lambda's 429; S3 requests pass."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from tests.aws import Infrastructure, MotoServer, boto_session


def _load_proxy() -> Any:
    """bench/ is not a package: load bench/throttle_proxy.py by its path."""
    path = Path(__file__).resolve().parent.parent / "bench" / "throttle_proxy.py"
    spec = importlib.util.spec_from_file_location("bench_throttle_proxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


throttle_proxy = _load_proxy()
ThrottleProxy = throttle_proxy.ThrottleProxy


@pytest.fixture
def proxy(aws: MotoServer) -> Iterator[Any]:
    # a clock that never moves: every request falls in the same second, whatever the machine's speed
    with ThrottleProxy(aws.endpoint, rate=10, max_lifetime=60, clock=lambda: 1000.0) as running:
        yield running


def client(service: str, endpoint: str, attempts: int = 1) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    return boto_session().client(service, endpoint_url=endpoint, config=config)


def test_lambda_requests_beyond_the_rate_get_too_many_requests(infra: Infrastructure, proxy: Any) -> None:
    infra.function("fn")
    lambda_ = client("lambda", proxy.endpoint)
    outcomes = []
    for _ in range(15):
        try:
            lambda_.get_function(FunctionName="fn")
            outcomes.append("ok")
        except lambda_.exceptions.TooManyRequestsException as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert error.response["Error"]["Message"] == "Rate exceeded"
            assert error.response["Type"] == "User"
            outcomes.append("throttled")
    assert outcomes == ["ok"] * 10 + ["throttled"] * 5
    stats = proxy.stats()
    assert (stats["lambda_accepted"], stats["lambda_throttled"]) == (10, 5)
    assert stats["operations"] == {"GET /2015-03-31/functions/{}": 10}


def test_the_throttle_answer_has_lambdas_shape(aws: MotoServer, proxy: Any) -> None:
    lambda_ = client("lambda", proxy.endpoint)
    for _ in range(10):
        lambda_.list_functions()
    request = urllib.request.Request(f"{proxy.endpoint}/2015-03-31/functions/")  # unsigned: known by its path
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 429
    assert raised.value.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert json.loads(raised.value.read()) == {
        "Reason": "CallerRateLimitExceeded",
        "Type": "User",
        "message": "Rate exceeded",
    }


def test_botocore_retries_the_throttle_answer(aws: MotoServer, proxy: Any) -> None:
    lambda_ = client("lambda", proxy.endpoint, attempts=2)
    for _ in range(10):
        lambda_.list_functions()
    with pytest.raises(lambda_.exceptions.TooManyRequestsException) as raised:
        lambda_.list_functions()
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 1  # a throttle is retryable
    assert proxy.stats()["lambda_throttled"] == 2


def test_s3_requests_pass_while_lambda_is_throttled(infra: Infrastructure, proxy: Any) -> None:
    infra.bucket("bucket")
    lambda_, s3 = client("lambda", proxy.endpoint), client("s3", proxy.endpoint)
    for _ in range(11):
        with contextlib.suppress(lambda_.exceptions.TooManyRequestsException):
            lambda_.list_functions()
    body = b"x" * 200_000
    for index in range(20):
        s3.put_object(Bucket="bucket", Key=f"k{index}", Body=body)  # sent with Expect: 100-continue
        assert s3.get_object(Bucket="bucket", Key=f"k{index}")["Body"].read() == body
    s3.head_object(Bucket="bucket", Key="k0")
    stats = proxy.stats()
    assert stats["lambda_throttled"] >= 1
    assert stats["other_requests"] == 41
    with urllib.request.urlopen(f"{proxy.endpoint}{throttle_proxy.STATS_PATH}", timeout=10) as answer:
        assert json.loads(answer.read())["other_requests"] == 41
