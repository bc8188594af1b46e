"""`users`, `projects` and `tasks`: one asset each, partitioned by tenant, synced incrementally."""

import dagster as dg
from pydantic import Field

from resources.export_jobs import ExportJobs
from resources.tasklane_api import TasklaneAPI
from resources.warehouse import Warehouse

from .history_exports import EXPORT_TAG, load_export, start_history_export
from .incremental_sync import SyncReport, sync_resource
from .partitions import tenant_partitions

FULL_RESYNC_TAG = "dripfeed/full_resync"
DESCRIPTIONS = {
    "users": "Tasklane users of each tenant workspace (email, name, role, active), with soft-deleted tombstones.",
    "projects": "Tasklane projects of each tenant workspace (name, status, owner), with soft-deleted tombstones.",
    "tasks": "Tasklane tasks of each tenant workspace (project, assignee, status, priority, estimates, tags, "
    "custom fields), with soft-deleted tombstones.",
}


class SyncConfig(dg.Config):
    full_resync: bool = Field(False, description="ignore the watermark and re-read everything (still by upsert)")
    pages_per_checkpoint: int = Field(10, ge=1, description="commit rows and position every this many pages")


def _metadata(report: SyncReport, warehouse: Warehouse, tenant: str) -> dict[str, object]:
    columns = warehouse.columns(report.resource)
    rows = warehouse.query(f"SELECT count(*) FROM {report.resource} WHERE tenant_id = ?", (tenant,))[0][0]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name=name, type=str(kind)) for name, kind in columns])
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
        "schema_drift_fields": ", ".join(sorted({d.field for d in report.drift})) or "none",
    }


def tasklane_asset(resource: str, deps: tuple[dg.AssetsDefinition, ...] = ()) -> dg.AssetsDefinition:
    @dg.asset(
        name=resource,
        deps=deps,
        partitions_def=tenant_partitions,
        group_name="tasklane",
        kinds={"python", "sql"},
        owners=["team:data-platform"],
        pool="tasklane_api",
        description=DESCRIPTIONS[resource],
    )
    def sync(
        context: dg.AssetExecutionContext, config: SyncConfig, tasklane: TasklaneAPI, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        tenant = context.partition_key
        full = config.full_resync or context.run.tags.get(FULL_RESYNC_TAG, "").lower() == "true"
        client, jobs = tasklane.client(tenant), ExportJobs(tasklane.store)
        export_id = context.run.tags.get(EXPORT_TAG)
        history = jobs.get(tenant, resource)
        if export_id:
            if history is None or history.export_id != export_id or not history.result_url:
                raise dg.Failure(
                    f"tenant {tenant!r}: export {export_id} is not the finished {resource} export dripfeed recorded "
                    "for this tenant. Launch loads from the export_status sensor, not by hand."
                )
            report = load_export(client, warehouse, jobs, history, client.tenant.history_since)
        elif (
            client.tenant.history_since
            and not full
            and (history is None or history.pending)
            and (state := warehouse.state(tenant, resource)).watermark is None
        ):
            history = start_history_export(client, jobs, resource)
            warehouse.write(tenant, resource, [], state)  # the (empty) tables exist, for the checks
            context.log.info(
                f"tenant {tenant!r} {resource}: history arrives through export {history.export_id} "
                f"({history.status}); the export_status sensor loads it when it is done"
            )
            return dg.MaterializeResult(
                metadata={
                    "history_export": history.export_id or "none",
                    "history_export_status": history.status,
                    "history_updated_before": history.updated_before,
                }
            )
        else:
            report = sync_resource(
                client, warehouse, resource, full_resync=full, pages_per_checkpoint=config.pages_per_checkpoint
            )
        context.log.info(
            f"tenant {tenant!r} {resource}: {report.records} records ({report.tombstones} tombstones), "
            f"{report.pages} pages, {report.calls['counted']} counted calls, "
            f"watermark {report.watermark_before} -> {report.watermark_after}"
        )
        return dg.MaterializeResult(metadata=_metadata(report, warehouse, tenant))

    return sync


users = tasklane_asset("users")
projects = tasklane_asset("projects")
tasks = tasklane_asset("tasks", deps=(users, projects))  # parents first, so references resolve in one run
