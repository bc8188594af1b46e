"""Materialising a tenant's assets in process, and reading what the run's checks said."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pipeline_assets.assets import projects, tasks, users
from resources.warehouse import Warehouse
from tests.support.resources import Resources, resources_for


def materialize_tenant(
    instance: dg.DagsterInstance, tenant: str, tasklane: Resources, warehouse: Warehouse, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    if not instance.has_dynamic_partition("tenants", tenant):
        instance.add_dynamic_partitions("tenants", [tenant])
    return dg.materialize(
        [users, projects, tasks],  # with the checks their steps evaluate
        partition_key=tenant,
        instance=instance,
        resources=resources_for(tasklane, warehouse=warehouse),
        **kwargs,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def run_sync_tenant(
    instance: dg.DagsterInstance, tenant: str, tasklane: Resources, warehouse: Warehouse
) -> dg.ExecuteInProcessResult:
    """A run of the `sync_tenant` job itself (not an ad hoc materialization), in this process."""
    from pipeline_assets.freshness import freshness_checks
    from pipeline_assets.jobs import sync_tenant

    if not instance.has_dynamic_partition("tenants", tenant):
        instance.add_dynamic_partitions("tenants", [tenant])
    definitions = dg.Definitions(
        assets=[users, projects, tasks],
        asset_checks=freshness_checks(),
        jobs=[sync_tenant],
        resources=resources_for(tasklane, warehouse=warehouse),
        executor=dg.in_process_executor,
    )
    return definitions.resolve_job_def(sync_tenant.name).execute_in_process(partition_key=tenant, instance=instance)
