"""Retries with capped, fully jittered exponential backoff (pure: no I/O of its own).

Used for the calls a CI run cannot avoid and a transient fault must not fail: the GitHub OIDC
token request and STS AssumeRoleWithWebIdentity. The caller says which errors are transient;
everything else is raised at once, so an AccessDenied never waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry: attempt n (from 0) waits up to min(cap, base * 2**n)."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

    def delay(self, attempt: int) -> float:
        """Full jitter: a uniformly random wait in [0, min(cap, base * 2**attempt))."""
        return self.jitter() * min(self.cap, self.base * 2.0**attempt)


RetryHook = Callable[[int, BaseException, float], None]


def retry(
    call: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    on_retry: RetryHook | None = None,
) -> T:
    """Call until it succeeds, a non-transient error is raised, or the attempts are used up.

    on_retry(attempt number from 1, error, seconds about to be slept) is called before each wait.
    The last error is re-raised unchanged, so callers describe it once.
    """
    for attempt in range(backoff.attempts):
        try:
            return call()
        except Exception as error:
            if not transient(error) or attempt == backoff.attempts - 1:
                raise
            seconds = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(attempt + 1, error, seconds)
            backoff.sleep(seconds)
    raise AssertionError("unreachable")  # pragma: no cover
