"""The environment is uv.lock's, exactly: every package `make` installed is at the version the lock
pins, none is missing and none is extra; and the lock agrees with pyproject.toml. Read from the
installed distributions' own metadata, not from uv's view of them."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".uv" / "bin" / "uv"
WORKSPACE = {"dripfeed", "tasklane-sim"}  # installed from the tree, editable, not from an index

pytestmark = pytest.mark.skipif(not UV.exists(), reason="uv is installed by make (.uv/); run make test")


def uv(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), *arguments, "--python", sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "HOME": str(Path.home())},
    )


def locked_versions() -> dict[str, str]:
    """Every package the lock installs on this machine (its markers evaluated here), by name."""
    export = uv("export", "--frozen", "--all-extras", "--no-hashes", "--no-header", "--no-annotate")
    assert export.returncode == 0, export.stderr
    versions = {}
    for line in export.stdout.splitlines():
        if not line.strip() or line.startswith("-e "):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate():
            (specifier,) = requirement.specifier
            versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def installed_versions() -> dict[str, str]:
    return {
        canonicalize_name(distribution.metadata["Name"]): distribution.version
        for distribution in metadata.distributions(path=sys.path)
        if canonicalize_name(distribution.metadata["Name"]) not in WORKSPACE
    }


def test_every_installed_package_is_at_the_locked_version() -> None:
    locked, installed = locked_versions(), installed_versions()
    assert len(locked) > 100, "the export lists too few packages: is it still uv.lock's?"
    differing = {name: (installed.get(name), pin) for name, pin in locked.items() if installed.get(name) != pin}
    assert not differing, f"installed, locked: {differing}"
    assert not set(installed) - set(locked), f"installed but not in uv.lock: {set(installed) - set(locked)}"


def test_the_lock_agrees_with_pyproject() -> None:
    check = uv("lock", "--check")
    assert check.returncode == 0, check.stderr
