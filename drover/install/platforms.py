"""Lambda's platform for a runtime and architecture: its wheel tags, its marker environment, which wheels run on it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from drover.errors import InstallError
from drover.locks import marker_environment

_RUNTIME = re.compile(r"^python3\.(\d{1,2})$")


_ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}


_MIN_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}


_LEGACY_MANYLINUX = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}


@dataclass(frozen=True)
class TargetPlatform:
    """Lambda's interpreter and platform for one runtime and architecture."""

    runtime: str
    architecture: str  # Lambda's name: x86_64 | arm64
    python_version: str
    arch: str  # the wheel tags' name: x86_64 | aarch64
    glibc_minor: int

    @property
    def uv_platform(self) -> str:
        return f"{self.arch}-manylinux_2_{self.glibc_minor}"

    @property
    def newest_tag(self) -> str:
        return f"manylinux_2_{self.glibc_minor}_{self.arch}"

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.architecture} ({self.newest_tag} or older)"

    def pip_platforms(self) -> list[str]:
        """Every compatible platform tag, most preferred first (uv's order for the same target)."""
        tags: list[str] = []
        for minor in range(self.glibc_minor, _MIN_GLIBC_MINOR[self.arch] - 1, -1):
            tags.append(f"manylinux_2_{minor}_{self.arch}")
            legacy = _LEGACY_MANYLINUX.get(minor)
            if legacy is not None:
                tags.append(f"{legacy}_{self.arch}")
        return tags

    def allows(self, platform_tag: str) -> bool:
        return platform_tag == "any" or platform_tag in self.pip_platforms()

    def wheel_tags(self) -> list[Tag]:
        """Every wheel tag Lambda's interpreter accepts, most preferred first (as pip orders them)."""
        version = tuple(int(part) for part in self.python_version.split("."))
        interpreter = f"cp{version[0]}{version[1]}"
        tags = list(cpython_tags(version, platforms=self.pip_platforms()))
        return tags + list(compatible_tags(version, interpreter, self.pip_platforms()))


def target_platform(runtime: str, architecture: str) -> TargetPlatform:
    match = _RUNTIME.match(runtime)
    if match is None or int(match[1]) < 8:
        raise InstallError(f"cannot install for runtime {runtime!r}: expected python3.8 or later, e.g. python3.12")
    if architecture not in _ARCHITECTURES:
        raise InstallError(f"cannot install for architecture {architecture!r}: expected x86_64 or arm64")
    minor = int(match[1])
    glibc_minor = 17 if minor <= 11 else 34
    return TargetPlatform(runtime, architecture, f"3.{minor}", _ARCHITECTURES[architecture], glibc_minor)


def is_pure_wheel(wheel_name: str) -> bool:
    """Whether a wheel file name's tags say pure Python (abi none, platform any); False for a malformed name."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel_name)
    except InvalidWheelFilename:
        return False
    return all(tag.abi == "none" and tag.platform == "any" for tag in tags)


def _canonical(name: str) -> str:
    return str(canonicalize_name(name))


def _environment(platform: TargetPlatform) -> dict[str, str]:
    return marker_environment(platform.python_version, platform.arch)


def runs_on(wheel_name: str, platform: TargetPlatform) -> bool:
    """Whether a wheel file name's tags include one Lambda's interpreter accepts (pure wheels always do)."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel_name)
    except InvalidWheelFilename:
        return False
    return is_pure_wheel(wheel_name) or not tags.isdisjoint(platform.wheel_tags())
