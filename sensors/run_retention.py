"""Run retention: the Dagster instance keeps what its UI and dripfeed read, not every run for ever.

Open-source Dagster deletes no runs (`retention:` in dagster.yaml purges tick rows only, and leaves
their logs), and a run left alone keeps its ~25 events and its compute logs for ever: at a thousand
tenants a day of runs is gigabytes. This sensor applies dripfeed's retention, DRIPFEED_RETENTION_DAYS
(default 7, 0 turns it off), to the runs of `sync_tenant`, as Dagster's own database-tuning guide
does by hand:

- A finished run older than the retention that no longer holds anything the UI shows (a partition's
  latest materialization, or latest planned one, or a check's latest result) is deleted: the run, its
  events, its check results and its compute logs.
- A run that still holds one is kept, stripped to its asset events (materializations, observations,
  check results): its logs, step and engine events and compute logs go. `instance.delete_run` on it
  would make its partition show as missing, once the partition set changes (a tenant added),
  because Dagster then rebuilds the partition status from the materializations that are left. A kept
  run is tagged; the tag's update brings it back after another retention period, when a later run
  has usually superseded it and it is deleted.
- Runless check results older than the retention (the freshness sensor's) are pruned to the latest
  of each check and partition, and the tick logs of dripfeed's sensors and schedules older than the
  retention are deleted (Dagster's tick retention deletes the ticks only).

A tick does at most RUNS_PER_TICK runs and stops after TICK_SECONDS; a large backlog (the first tick
after an upgrade) is worked off over the next ticks, the oldest first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from pipeline_assets.checks import CHECKS, check_name
from pipeline_assets.jobs import sync_tenant
from pipeline_assets.run_tags import PARTITION_TAG
from resources.control.store import chunks
from resources.streams import STREAMS

DEFAULT_DAYS = 7.0
DEFAULT_CHECK_SECONDS = 600
RUNS_PER_TICK = 300
TICK_SECONDS = 30.0
RETENTION_TAG = "dripfeed/retention"  # on a run kept for the asset events the UI shows: "kept"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# What a kept run keeps: every asset and check event type (the rest are logs, step and engine events).
ASSET_EVENT_TYPES = sorted(
    t.value
    for t in dg.DagsterEventType
    if ("ASSET" in t.value and t.value != "ASSET_STORE_OPERATION") or "FRESHNESS" in t.value
)
REPOSITORY = "__repository__"  # the repository name of a Definitions: tick logs live under it
ASSET_KEYS = [dg.AssetKey(stream) for stream in STREAMS]
CHECK_KEYS = [dg.AssetCheckKey(dg.AssetKey(s), check_name(s, check)) for s in STREAMS for check in CHECKS[s]]
events = SqlEventLogStorageTable
check_executions = AssetCheckExecutionsTable


@dataclass
class Retention:
    """What one pass removed."""

    runs_deleted: int = 0
    runs_stripped: int = 0
    events_deleted: int = 0
    runless_results_pruned: int = 0
    tick_logs_deleted: int = 0
    runs_left: bool = False  # the pass stopped before every run due was handled

    def summary(self) -> str:
        more = "; more next tick" if self.runs_left else ""
        return (
            f"{self.runs_deleted} runs deleted, {self.runs_stripped} kept for their asset events (stripped), "
            f"{self.events_deleted} events and {self.tick_logs_deleted} tick logs deleted, "
            f"{self.runless_results_pruned} old runless check results pruned{more}"
        )


def apply_retention(
    instance: dg.DagsterInstance,
    days: float,
    now: float | None = None,
    runs_per_tick: int = RUNS_PER_TICK,
    seconds: float = TICK_SECONDS,
    instigators: Iterable[str] = (),
) -> Retention:
    """One pass of the retention over runs of `sync_tenant` that ended more than `days` ago; the
    tick logs of `instigators` (sensor and schedule names) older than that too."""
    now = time.time() if now is None else now
    cutoff = now - days * 86400
    started = time.monotonic()
    done = Retention()
    records = instance.get_run_records(
        dg.RunsFilter(job_name=sync_tenant.name, statuses=FINISHED, updated_before=datetime.fromtimestamp(cutoff, UTC)),
        limit=runs_per_tick,
        order_by="update_timestamp",
        ascending=True,
    )
    runs = [record.dagster_run for record in records]
    keep = _holding_latest(instance, runs)
    for run in runs:
        if time.monotonic() - started > seconds:
            done.runs_left = True
            break
        if run.run_id in keep:
            done.events_deleted += _strip(instance, run.run_id)
            instance.add_run_tags(run.run_id, {RETENTION_TAG: "kept"})
            done.runs_stripped += 1
        else:
            _delete(instance, run.run_id)
            done.runs_deleted += 1
        _delete_compute_logs(instance, [run.run_id])
    done.runs_left = done.runs_left or len(runs) == runs_per_tick
    done.runless_results_pruned = _prune_runless(instance, cutoff)
    for name in instigators:
        done.tick_logs_deleted += _delete_old_files(instance, [REPOSITORY, name], cutoff)
    return done


def _holding_latest(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> set[str]:
    """Which of `runs` hold a partition's latest materialization (or planned one) of an asset they
    targeted, or a check's latest result for their partition: what the UI shows."""
    partitions = {run.tags[PARTITION_TAG] for run in runs if PARTITION_TAG in run.tags}
    if not partitions:
        return set()
    storage = instance.event_log_storage
    latest_ids: list[int] = []
    for key in ASSET_KEYS:
        for event_type in (
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        ):
            latest_ids += storage.get_latest_storage_id_by_partition(key, event_type, partitions=partitions).values()
    holding: set[str] = set()
    with storage.index_connection() as conn:
        for chunk in chunks(latest_ids):
            holding |= {row[0] for row in conn.execute(sa.select(events.c.run_id).where(events.c.id.in_(chunk)))}
    for info in storage.get_asset_check_partition_info(CHECK_KEYS, partition_keys=sorted(partitions)):
        holding.add(info.latest_planned_run_id)
    return holding


def _strip(instance: dg.DagsterInstance, run_id: str) -> int:
    """Delete a kept run's events but its asset events (in its own shard and the index, on SQLite)."""
    storage = instance.event_log_storage
    delete = sa.delete(events).where(
        events.c.run_id == run_id,
        sa.or_(events.c.dagster_event_type.is_(None), events.c.dagster_event_type.not_in(ASSET_EVENT_TYPES)),
    )
    with storage.run_connection(run_id) as conn:
        deleted = conn.execute(delete).rowcount
    if storage.is_run_sharded:  # the index shard mirrors the run's status events
        with storage.index_connection() as conn:
            deleted += conn.execute(delete).rowcount
    return deleted


def _delete(instance: dg.DagsterInstance, run_id: str) -> None:
    """Delete a run and everything it left: `delete_run` leaves its check results (and, on SQLite,
    its shard's file)."""
    storage = instance.event_log_storage
    instance.delete_run(run_id)
    with storage.index_connection() as conn:
        conn.execute(sa.delete(check_executions).where(check_executions.c.run_id == run_id))
    if storage.is_run_sharded:
        for suffix in ("", "-wal", "-shm"):
            Path(storage.path_for_shard(run_id) + suffix).unlink(missing_ok=True)


def _prune_runless(instance: dg.DagsterInstance, cutoff: float) -> int:
    """Runless check results older than `cutoff` but the latest of each check and partition, and
    their events."""
    storage = instance.event_log_storage
    before = datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None)  # Dagster stores naive UTC
    c = check_executions.c
    latest = sa.select(sa.func.max(c.id)).group_by(c.asset_key, c.check_name, c.partition)
    with storage.index_connection() as conn:
        old = [
            (row.id, row.evaluation_event_storage_id)
            for row in conn.execute(
                sa.select(c.id, c.evaluation_event_storage_id).where(
                    c.run_id == "", c.create_timestamp < before, c.id.not_in(latest)
                )
            )
        ]
        for chunk in chunks([row_id for row_id, _ in old]):
            conn.execute(sa.delete(check_executions).where(c.id.in_(chunk)))
    old_results = sa.and_(
        events.c.run_id == "",
        events.c.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
        events.c.timestamp < before,
    )
    still_shown = sa.select(c.evaluation_event_storage_id).where(c.evaluation_event_storage_id.is_not(None))
    with storage.index_connection() as conn:
        conn.execute(sa.delete(events).where(old_results, events.c.id.not_in(still_shown)))
    if storage.is_run_sharded:  # SQLite's own shard of runless events: nothing reads its copies by id
        with storage.run_connection("") as conn:
            conn.execute(sa.delete(events).where(old_results))
    return len(old)


def _delete_compute_logs(instance: dg.DagsterInstance, prefix: list[str]) -> None:
    with suppress(NotImplementedError):  # a compute log manager that cannot delete: its own retention applies
        instance.compute_log_manager.delete_logs(prefix=prefix)


def _delete_old_files(instance: dg.DagsterInstance, prefix: list[str], cutoff: float) -> int:
    """Files of the local compute log manager under `prefix` last written before `cutoff`."""
    manager = instance.compute_log_manager
    if not isinstance(manager, LocalComputeLogManager):
        return 0
    directory = Path(os.path.dirname(manager.get_captured_local_path([*prefix, "x"], "err")))
    deleted = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted += 1
    return deleted


def run_retention_sensor(
    days: float = DEFAULT_DAYS, check_seconds: int = DEFAULT_CHECK_SECONDS, instigators: Iterable[str] = ()
) -> dg.SensorDefinition:
    """The sensor, every `check_seconds`, keeping `days` of runs (0: off; definitions.py reads both
    from the environment); `instigators`: the sensors and schedules whose old tick logs it deletes."""
    names = tuple(instigators)

    @dg.sensor(
        name="run_retention",
        minimum_interval_seconds=check_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if days > 0 else dg.DefaultSensorStatus.STOPPED,
        description=f"Deletes sync_tenant runs older than {days:g} days that the UI no longer shows, strips "
        "those it still shows to their asset events, and deletes old compute and tick logs.",
    )
    def run_retention(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        if days <= 0:
            return dg.SkipReason("retention is off (DRIPFEED_RETENTION_DAYS=0)")
        done = apply_retention(context.instance, days, instigators=names)
        context.log.info(done.summary())
        return dg.SkipReason(done.summary())

    return run_retention
