"""Check evaluations recorded between runs, written so that Dagster 1.13 stores them and its UI shows them.

Two behaviours of Dagster 1.13's (preview) partitioned asset checks, found by trial:
- It keeps one runless execution per check and partition: its `asset_check_executions` table has a
  unique index on (asset key, check, run id, partition), and a runless evaluation has no run id. A
  second evaluation of a partition therefore fails to store (an IntegrityError that fails the tick).
  `record()` drops the previous runless execution of the partition first; its event stays in the
  event log, so the check's history still has it.
- The UI shows a partition's check status only for an evaluation that targets the partition's latest
  materialization, so each evaluation names the one it judged (`latest_materializations()`).
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Iterable[str] | None = None
) -> dict[str, int]:
    """The storage id of each partition's latest materialization of `asset_key` (one query)."""
    wanted = set(partitions) if partitions is not None else None
    return dict(
        instance.event_log_storage.get_latest_storage_id_by_partition(
            asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted
        )
    )


def targets(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, storage_ids: Iterable[int]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """What an evaluation of each partition targets: the materializations with these storage ids."""
    ids = list(storage_ids)
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=ids), limit=len(ids)
    ).records
    return {
        record.partition_key or "": AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        for record in records
    }


def record(instance: dg.DagsterInstance, evaluation: dg.AssetCheckEvaluation) -> None:
    """Store a runless evaluation, replacing the partition's previous runless execution."""
    if evaluation.partition is not None:
        table = AssetCheckExecutionsTable
        with instance.event_log_storage.index_connection() as conn:
            conn.execute(
                sa.delete(table).where(
                    table.c.asset_key == evaluation.asset_key.to_string(),
                    table.c.check_name == evaluation.check_name,
                    table.c.partition == evaluation.partition,
                    table.c.run_id == "",
                )
            )
    instance.report_runless_asset_event(evaluation)
