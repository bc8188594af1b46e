"""The layers of docs/architecture.md hold: import-linter checks the contracts in pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dripfeed", "sensors", "pipeline_assets", "resources")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    linted = lint_imports(ROOT)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 broken" in linted.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("resources/tenants.py", "import sensors.tier_slots", "resources.tenants -> sensors.tier_slots"),
        ("pipeline_assets/checks.py", "import sensors.tier_schedules", "pipeline_assets.checks -> sensors"),
        ("resources/control/store.py", "import resources.tasklane.client", "resources.control.store -> resources"),
        ("resources/warehouse/schema.py", "import resources.tasklane.errors", "resources.warehouse.schema ->"),
        ("resources/tasklane/transport.py", "import dagster", "resources.tasklane.transport -> dagster"),
    ],
)
def test_an_import_against_the_layers_fails_the_check(tmp_path: Path, module: str, line: str, broken: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # noqa\n")
    linted = lint_imports(tmp_path)
    assert linted.returncode != 0
    assert broken in linted.stdout, linted.stdout


def module_map() -> str:
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    section = architecture.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return section.split("Beside the product:", 1)[0]  # the simulator, tests and the rest come after


def test_the_module_map_names_every_module_and_only_modules_that_exist() -> None:
    text = module_map()
    modules = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if p.name != "__init__.py"]
    unnamed = [str(p.relative_to(ROOT)) for p in modules if p.name not in text]
    assert not unnamed, f"docs/architecture.md's module map does not name {unnamed}"
    named = set(re.findall(r"(?<![\w/.])([a-z_]+\.py)", text))
    missing = sorted(name for name in named if not any(p.name == name for p in modules))
    missing += [
        path
        for path in re.findall(r"`((?:dripfeed|sensors|pipeline_assets|resources)/[\w/.]*)", text)
        if not (ROOT / path).exists()
    ]
    assert not missing, f"the module map names modules that do not exist: {missing}"
