"""Prepared tenants kept between runs of the scale benchmark: the control store and the warehouse after
every tenant's first sync (pg_dump), and the simulator's `as_of` that makes its workspaces the same again.

Preparing 10,000 tenants takes this machine an hour; restoring them takes minutes. So two designs can be
measured one after the other on the same day from one preparation, which is how a change is told from the
machine's day. A design restores what the same or an older design prepared and upgrades it with
`python -m dripfeed.migrate`, as a user's upgrade would; a preparation by a newer design is refused, and
so is one older than MAX_AGE_DAYS, whose tenants would all be due for their weekly reconciliation.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres_server import postgres_bin

MAX_AGE_DAYS = 6  # tenants reconcile every 7 days by default (resources/tenants.py)
DATABASES = {"control": "DRIPFEED_STATE", "warehouse": "DRIPFEED_WAREHOUSE"}  # dump name -> its setting


class PreparationMismatch(RuntimeError):
    """The kept preparation is not one this run can use."""


def commit_of(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass(frozen=True)
class KeptPreparation:
    directory: Path

    @property
    def facts_file(self) -> Path:
        return self.directory / "prepared.json"

    def facts(self) -> dict[str, object] | None:
        """What the kept preparation is (`save`'s record), or None if nothing is kept yet."""
        return json.loads(self.facts_file.read_text()) if self.facts_file.exists() else None

    def save(self, env: dict[str, str], root: Path, tenants: int, as_of: str) -> None:
        """Dump the prepared databases that `env` names; the record is written last, so a dump cut
        short is never taken for a preparation."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.facts_file.unlink(missing_ok=True)
        for name, setting in DATABASES.items():
            self._postgres("pg_dump", "--format=custom", f"--file={self.directory / f'{name}.dump'}", env[setting])
        facts = {"tenants": tenants, "as_of": as_of, "code": commit_of(root), "saved_at": time.time()}
        self.facts_file.write_text(json.dumps(facts, indent=2))

    def restore(self, env: dict[str, str], root: Path, tenants: int) -> None:
        """Load the dumps into the empty databases that `env` names, after checking that this design
        (checked out at `root`) may read them."""
        facts = self.facts()
        if facts is None:
            raise PreparationMismatch(f"nothing is kept in {self.directory}")
        if facts["tenants"] != tenants:
            raise PreparationMismatch(
                f"{self.directory} keeps {facts['tenants']:,} tenants, this run wants {tenants:,}: "
                "set DRIPFEED_BENCH_SCALE_TENANTS to match, or another DRIPFEED_BENCH_SCALE_PREPARED directory"
            )
        age = (time.time() - float(facts["saved_at"])) / 86400  # type: ignore[arg-type]
        if age > MAX_AGE_DAYS:
            raise PreparationMismatch(
                f"{self.directory} was prepared {age:.1f} days ago: its tenants are due for reconciliation. "
                "Delete it and prepare again (python -m benchmarks.scale_bench prepare)"
            )
        newer = subprocess.run(["git", "merge-base", "--is-ancestor", str(facts["code"]), "HEAD"], cwd=root)
        if newer.returncode != 0:
            raise PreparationMismatch(
                f"{self.directory} was prepared by {facts['code']}, which is not an ancestor of the code measured "
                f"({commit_of(root)}): its databases may be newer than this code can read. Prepare with the older code."
            )
        for name, setting in DATABASES.items():
            self._postgres("pg_restore", "--no-owner", f"--dbname={env[setting]}", str(self.directory / f"{name}.dump"))

    @staticmethod
    def _postgres(program: str, *args: str) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("Postgres is not installed: run tests/system-packages.sh (make test does)")
        subprocess.run([str(bindir / program), *args], check=True, capture_output=True, timeout=3600)
