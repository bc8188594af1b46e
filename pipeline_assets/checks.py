"""Per-tenant asset checks: schema drift, duplicate keys, and task references that must resolve."""

import dagster as dg

from resources.warehouse import DRIFT_TABLE, Warehouse

from .assets import projects, tasks, users
from .partitions import tenant_partitions


def schema_drift_check(asset: dg.AssetsDefinition, resource: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=f"{resource}_schema_drift",
        partitions_def=tenant_partitions,
        description=f"Fails when a field of the tenant's {resource} arrived with another type than the contract's: "
        "the typed column holds null, the value is kept in _raw.",
    )
    def check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        tenant = context.partition_key
        drifted = warehouse.query(
            f"SELECT field, expected, seen, example_id FROM {DRIFT_TABLE} WHERE tenant_id = ? AND resource = ? "
            "ORDER BY field",
            (tenant, resource),
        )
        diff = [{"field": f, "expected_type": e, "seen_type": s, "example_record_id": i} for f, e, s, i in drifted]
        return dg.AssetCheckResult(
            passed=not diff,
            description=f"{len(diff)} field(s) of {tenant!r} changed type"
            if diff
            else "every field has its contract type",
            metadata={"drift": dg.MetadataValue.json(diff), "tenant": tenant},
        )

    return check


def unique_keys_check(asset: dg.AssetsDefinition, resource: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=f"{resource}_unique_keys", partitions_def=tenant_partitions)
    def check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        """No id appears twice for a tenant."""
        rows, ids = warehouse.query(
            f"SELECT count(*), count(DISTINCT id) FROM {resource} WHERE tenant_id = ?", (context.partition_key,)
        )[0]
        return dg.AssetCheckResult(passed=rows == ids, metadata={"rows": int(rows), "duplicates": int(rows - ids)})

    return check


@dg.asset_check(asset=tasks, name="tasks_references_resolve", partitions_def=tenant_partitions)
def tasks_references_resolve(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Every task's project_id and assignee_id names a project or user of the same tenant (tombstones count)."""
    dangling = warehouse.query(
        "SELECT t.id, t.project_id, t.assignee_id FROM tasks t "
        "LEFT JOIN projects p ON p.tenant_id = t.tenant_id AND p.id = t.project_id "
        "LEFT JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.assignee_id "
        "WHERE t.tenant_id = ? AND t._deleted_at IS NULL "
        "AND ((t.project_id IS NOT NULL AND p.id IS NULL) OR (t.assignee_id IS NOT NULL AND u.id IS NULL)) "
        "ORDER BY t.id LIMIT 20",
        (context.partition_key,),
    )
    examples = [{"task": t, "project_id": p, "assignee_id": a} for t, p, a in dangling]
    return dg.AssetCheckResult(passed=not examples, metadata={"examples": dg.MetadataValue.json(examples)})


asset_checks = [
    *(schema_drift_check(a, r) for a, r in ((users, "users"), (projects, "projects"), (tasks, "tasks"))),
    *(unique_keys_check(a, r) for a, r in ((users, "users"), (projects, "projects"), (tasks, "tasks"))),
    tasks_references_resolve,
]
