"""The adapters' process-wide memory policy (measured in bench/: flat peak RSS as trees grow)."""

from __future__ import annotations

import sys

import pytest

from drover.memory import limit_heap_fragmentation


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_mmap_threshold_is_set_on_glibc() -> None:
    assert limit_heap_fragmentation() is True


def test_it_is_harmless_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")

    assert limit_heap_fragmentation() is False
