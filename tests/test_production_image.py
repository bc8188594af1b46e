"""The production image holds dripfeed and no simulator: the Dockerfile copies none in, and
dripfeed's own distribution (what the image's `pip install .` installs) neither ships tasklane_sim
nor needs its web server. The simulator is a distribution of its own, in simulator/.

No docker daemon: the Dockerfile is read, and dripfeed's wheel is built from the repository's root
without build isolation, its build directories in a temporary directory (nothing in the tree).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
CODE_LOCATION = ["dripfeed", "pipeline_assets", "resources", "sensors"]
SIMULATOR = ("simulator", "tasklane_sim")
WEB_SERVER = {"fastapi", "uvicorn", "starlette", "tasklane-sim", "tasklane_sim"}


def dockerfile_instructions(text: str) -> list[tuple[str, list[str]]]:
    """(instruction, arguments) per instruction: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest))
    return [(word, parse_arguments(rest)) for word, rest in instructions]


def parse_arguments(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):  # the JSON form: COPY ["src", "dest"]
        return re.findall(r'"([^"]*)"', rest)
    return shlex.split(rest)


def test_production_image_copies_no_simulator() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copies = [[a for a in args if not a.startswith("--")] for word, args in instructions if word in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing: is it still the image's?"
    for arguments in copies:
        sources = arguments[:-1]
        for source in sources:
            assert not any(name in source for name in SIMULATOR), f"COPY/ADD brings in the simulator: {arguments}"
            # The whole build context would bring simulator/ in with it.
            assert source.rstrip("/") not in (".", "*", ""), f"COPY/ADD of the whole repository: {arguments}"
    runs = [" ".join(args) for word, args in instructions if word == "RUN"]
    assert not [run for run in runs if "tasklane" in run or "simulator" in run], runs  # no pip install of it


@pytest.fixture(scope="module")
def dripfeed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # setuptools reads this extra config: its build/ and egg-info go here, not into the repository,
    # and no stale build/lib from an earlier build can end up in the wheel.
    config = out / "build.cfg"
    config.write_text(f"[build]\nbuild_base = {out / 'build'}\n[egg_info]\negg_base = {out}\n")
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out / "dist"), str(ROOT)]
    result = subprocess.run(
        [sys.executable, "-m", "pip", *build],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DIST_EXTRA_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (out / "dist").glob("dripfeed-*.whl")
    return wheel


def test_dripfeed_wheel_ships_no_simulator_and_needs_no_web_server(dripfeed_wheel: Path) -> None:
    with zipfile.ZipFile(dripfeed_wheel) as wheel:
        members = wheel.namelist()
        (metadata_name,) = [m for m in members if m.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
        entry_points = next((wheel.read(m).decode() for m in members if m.endswith(".dist-info/entry_points.txt")), "")
    assert not [m for m in members if m.startswith(("tasklane_sim/", "simulator/"))]
    required = {re.match(r"[A-Za-z0-9._-]+", r).group().lower() for r in metadata.get_all("Requires-Dist") or []}
    assert "dagster" in required  # the metadata was read
    assert not required & WEB_SERVER, sorted(required & WEB_SERVER)
    assert "tasklane" not in entry_points, entry_points


def test_dripfeed_wheel_ships_every_module_of_the_code_location(dripfeed_wheel: Path) -> None:
    # The image installs dripfeed from this wheel's contents: a subpackage left out (resources/tasklane/,
    # resources/warehouse/, ...) would load in the repository and fail in production.
    expected = {
        str(path.relative_to(ROOT))
        for package in CODE_LOCATION
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(dripfeed_wheel) as wheel:
        shipped = {m for m in wheel.namelist() if m.endswith(".py")}
    assert expected and not expected - shipped, sorted(expected - shipped)
    assert all(m.split("/", 1)[0] in CODE_LOCATION for m in shipped), sorted(shipped)
