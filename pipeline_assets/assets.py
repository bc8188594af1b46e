"""`users`, `projects` and `tasks`: one asset each, partitioned by tenant, synced incrementally."""

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field

from resources.control.tenant_checks import Outcome
from resources.shared_state import SharedState
from resources.streams import STREAMS
from resources.tasklane import TasklaneAPI, TenantClient
from resources.tasklane.errors import TasklaneFailure, TenantThrottled
from resources.tenant_registry import TenantRegistry
from resources.warehouse import TableFacts, Warehouse

from .checks import check_results, check_specs
from .deferral import defer_run
from .history_exports import EXPORT_TAG, load_export, start_history_export
from .incremental_sync import SyncReport, sync_stream
from .partitions import tenant_partitions
from .run_priority import yield_cpu_to_the_tiers
from .run_worker import record_run_worker

FULL_RESYNC_TAG = "dripfeed/full_resync"
SYNC_LOG = logging.getLogger("dripfeed.sync")  # a line per stream synced (JSON with dripfeed.json_logs)


class SyncConfig(dg.Config):
    full_resync: bool = Field(
        False,
        description="reconcile: re-read everything (by upsert) and soft-delete the rows Tasklane no longer has",
    )
    pages_per_checkpoint: int = Field(
        10, ge=1, description="the most pages a killed run leaves uncommitted (commits every half of it)"
    )


def _metadata(report: SyncReport, facts: TableFacts) -> dict[str, object]:
    return {
        "dagster/row_count": dg.MetadataValue.int(facts.rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name=name, type=str(kind)) for name, kind in facts.columns])
        ),
        "records_upserted": report.records,
        "tombstones": report.tombstones,
        "pages": report.pages,
        "checkpoints": report.checkpoints,
        "counted_calls": report.calls["counted"],
        "not_modified_304": report.calls["not_modified"],
        "rate_limited_429": report.calls["rate_limited"],
        "retries": report.calls["retries"],
        "budget_wait_seconds": float(report.calls["wait_seconds"]),
        "watermark_before": report.watermark_before or "none",
        "watermark_after": report.watermark_after or "none",
        "resumed_from_checkpoint": report.resumed_from or "none",
        "full_resync": report.full_resync,
        "reconciled_because": report.reconcile_reason or "not reconciled",
        "soft_deleted_missing_upstream": report.soft_deleted,
        "schema_drift_fields": ", ".join(sorted({d.field for d in report.drift})) or "none",
    }


def tasklane_asset(stream: str, deps: tuple[dg.AssetsDefinition, ...] = ()) -> dg.AssetsDefinition:
    # A multi-asset of one, for `can_subset`: it makes the checks' outputs optional, so that a
    # deferred sync (deferral.py) ends with neither a materialization nor check results.
    @dg.multi_asset(
        name=stream,
        specs=[
            dg.AssetSpec(
                stream,
                deps=deps,
                group_name="tasklane",
                kinds={"python", "sql"},
                owners=["team:data-platform"],
                description=STREAMS[stream].description,
            )
        ],
        check_specs=check_specs(stream),
        partitions_def=tenant_partitions,
        can_subset=True,
    )
    def sync(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        tasklane: TasklaneAPI,
        registry: TenantRegistry,
        state: SharedState,
        warehouse: Warehouse,
    ) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
        record_run_worker(context)
        yield_cpu_to_the_tiers(context.run.tags)
        tenant = context.partition_key
        try:
            client = tasklane.client(registry.tenant(tenant), state)
            result = _sync(context, config, client, state, warehouse, stream)
        except TenantThrottled as throttled:
            yield defer_run(context, state, stream, throttled)
            return
        except TasklaneFailure as failure:  # the step fails, and its metadata tells the alert what happened
            # The run's failure alert (sensors/tenant_alerts.py) reports it: the episode is alerted.
            state.tenant_checks.record(
                [(tenant, Outcome.FAILED, failure.description, failure.error_class)], time.time(), alerted=True
            )
            raise dg.Failure(failure.description, metadata=failure.metadata, allow_retries=failure.retryable) from None
        now = time.time()
        state.deferrals.clear(tenant, context.run.run_id, now)
        state.tenant_checks.record(
            [(tenant, Outcome.SYNCED, f"{stream} synced by run {context.run.run_id}", None)], now
        )
        yield result

    return sync


def _sync(
    context: dg.AssetExecutionContext,
    config: SyncConfig,
    client: TenantClient,
    state: SharedState,
    warehouse: Warehouse,
    stream: str,
) -> dg.MaterializeResult:
    """One tenant's sync of `stream`: a history load, a history export's submission, or the listing."""
    tenant = context.partition_key
    began = time.time()
    full = config.full_resync or context.run.tags.get(FULL_RESYNC_TAG, "").lower() == "true"
    jobs = state.export_jobs
    export_id = context.run.tags.get(EXPORT_TAG)
    history = jobs.get(tenant, stream)
    if export_id:
        if history is None or history.export_id != export_id or not history.result_url:
            raise dg.Failure(
                f"tenant {tenant!r}: export {export_id} is not the finished {stream} export dripfeed recorded "
                "for this tenant. Launch loads from the export_status sensor, not by hand."
            )
        started = time.time()
        report = load_export(client, warehouse, jobs, history, client.tenant.history_since)
        # The rows changed outside a listing: the stream's next sync lists, a probe cannot vouch for it.
        state.stream_checks.record_sync(tenant, stream, None, synced_at=started, reconciled_at=None)
    elif (
        client.tenant.history_since
        and not full
        and (history is None or history.pending)
        and (sync_state := warehouse.state(tenant, stream)).watermark is None
    ):
        history = start_history_export(client, jobs, stream)
        # Records the stream's sync state (no watermark yet); its tables exist from the warehouse's migrations.
        warehouse.write(tenant, stream, [], sync_state)
        context.log.info(
            f"tenant {tenant!r} {stream}: history arrives through export {history.export_id} "
            f"({history.status}); the export_status sensor loads it when it is done"
        )
        return dg.MaterializeResult(
            metadata={
                "history_export": history.export_id or "none",
                "history_export_status": str(history.status),
                "history_updated_before": history.updated_before,
            },
            check_results=_checks(context, stream, tenant, warehouse.facts(tenant, stream)),
        )
    else:
        every = client.tenant.reconcile_every_days
        report = sync_stream(
            client,
            warehouse,
            state.stream_checks,
            stream,
            full_resync=full,
            pages_per_checkpoint=config.pages_per_checkpoint,
            reconcile_every=timedelta(days=every) if every else None,
        )
    facts = warehouse.facts(tenant, stream)
    drifted = len({d.field for d in report.drift})
    state.sync_totals.add_sync(tenant, stream, report.records, report.tombstones, facts.rows, drifted)
    _log_sync(tenant, stream, report, facts, drifted, time.time() - began)
    return dg.MaterializeResult(
        metadata=_metadata(report, facts), check_results=_checks(context, stream, tenant, facts)
    )


def _log_sync(tenant: str, stream: str, report: SyncReport, facts: TableFacts, drifted: int, seconds: float) -> None:
    """The sync's line on `dripfeed.sync`, its fields structured for dripfeed.json_logs (no token)."""
    fields = {
        "tenant": tenant,
        "stream": stream,
        "records": report.records,
        "tombstones": report.tombstones,
        "pages": report.pages,
        "rows": facts.rows,
        "counted_calls": report.calls["counted"],
        "not_modified": report.calls["not_modified"],
        "rate_limited": report.calls["rate_limited"],
        "retries": report.calls["retries"],
        "budget_wait_s": round(float(report.calls["wait_seconds"]), 3),
        "drift_fields": drifted,
        "full_resync": report.full_resync,
        "duration_s": round(seconds, 3),
    }
    SYNC_LOG.info(
        f"sync {tenant} {stream}: {report.records} records, {report.tombstones} tombstones", extra={"dripfeed": fields}
    )


def _checks(
    context: dg.AssetExecutionContext, stream: str, tenant: str, facts: TableFacts
) -> list[dg.AssetCheckResult]:
    """The run's selected checks of this asset (a history load selects only some), for this tenant."""
    return check_results(stream, tenant, facts, set(context.selected_asset_check_keys))


def _stream_assets() -> dict[str, dg.AssetsDefinition]:
    """One asset per stream, each after the streams it references, so references resolve in one run."""
    assets: dict[str, dg.AssetsDefinition] = {}
    for name, stream in STREAMS.items():
        assets[name] = tasklane_asset(name, deps=tuple(assets[parent] for parent in stream.parents))
    return assets


STREAM_ASSETS = _stream_assets()
users, projects, tasks = STREAM_ASSETS["users"], STREAM_ASSETS["projects"], STREAM_ASSETS["tasks"]
