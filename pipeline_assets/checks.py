"""Per-tenant asset checks, evaluated inside the asset's own step from what its sync just wrote.

Schema drift, duplicate keys and (for tasks) references that must resolve are facts of the tables
the step has just written, so they are read over the same warehouse connection and returned with
the materialization (`check_specs` on the asset): no step, process or run of their own. Each
result is recorded for the tenant's partition, and a failing one carries the diff in its metadata.
The freshness check (`freshness.py`) is the exception: it has its own reason to run between syncs.
"""

from __future__ import annotations

import dagster as dg

from resources.streams import STREAMS
from resources.warehouse import TableFacts

from .partitions import partitioned_checks, tenant_partitions

DESCRIPTIONS = {
    "schema_drift": "Fails when a field of the tenant's {stream} arrived with another type than the contract's: "
    "the typed column holds null, the value is kept in _raw.",
    "unique_keys": "No id appears twice among the tenant's {stream}.",
    "references_resolve": "Every reference of the tenant's {stream} ({references}) names a record of the same tenant "
    "(tombstones count); a reference to a record newer than its stream's last sync waits for the next one.",
}
CHECKS = {
    name: ("schema_drift", "unique_keys", *(("references_resolve",) if stream.references else ()))
    for name, stream in STREAMS.items()
}


def check_name(stream: str, check: str) -> str:
    return f"{stream}_{check}"


def _references_text(stream: str) -> str:
    return ", ".join(f"{field} → {parent}" for field, parent in STREAMS[stream].references.items())


def check_specs(stream: str) -> list[dg.AssetCheckSpec]:
    with partitioned_checks():
        return [
            dg.AssetCheckSpec(
                check_name(stream, check),
                asset=stream,
                partitions_def=tenant_partitions,
                description=DESCRIPTIONS[check].format(stream=stream, references=_references_text(stream)),
            )
            for check in CHECKS[stream]
        ]


def check_results(
    stream: str, tenant: str, facts: TableFacts, selected: set[dg.AssetCheckKey]
) -> list[dg.AssetCheckResult]:
    """The results of the selected checks of `stream` for one tenant, from its table's facts."""
    evaluate = {"schema_drift": _drift, "unique_keys": _unique_keys, "references_resolve": _references}
    results = []
    for check in CHECKS[stream]:
        name = check_name(stream, check)
        if dg.AssetCheckKey(dg.AssetKey(stream), name) in selected:
            results.append(evaluate[check](name, tenant, facts))
    return results


def _drift(name: str, tenant: str, facts: TableFacts) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=not facts.drift,
        description=f"{len(facts.drift)} field(s) of {tenant!r} changed type"
        if facts.drift
        else "every field has its contract type",
        metadata={"drift": dg.MetadataValue.json(facts.drift), "tenant": tenant},
    )


def _unique_keys(name: str, tenant: str, facts: TableFacts) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=facts.duplicates == 0,
        metadata={"rows": facts.rows, "duplicates": facts.duplicates},
    )


def _references(name: str, tenant: str, facts: TableFacts) -> dg.AssetCheckResult:
    """Fails only for a reference whose parent should already be here; one to a parent newer than
    the parent's last sync waits for its next one (warehouse `_dangling_references`)."""
    waiting = facts.waiting_references
    if facts.dangling:
        said = f"{len(facts.dangling)}+ reference(s) name a record the parent's last sync should have brought"
    elif waiting:
        said = f"every reference resolves; {waiting} to records newer than the parent's last sync wait for its next"
    else:
        said = "every reference resolves"
    return dg.AssetCheckResult(
        check_name=name,
        passed=not facts.dangling,
        description=said,
        metadata={"examples": dg.MetadataValue.json(facts.dangling), "waiting_for_next_sync": waiting},
    )
