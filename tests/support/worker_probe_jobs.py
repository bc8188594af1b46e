"""One-asset jobs whose step records its run worker, on an in-process and on a multiprocess executor.
Module-level, for `dg.reconstructable`; no `from __future__ import annotations`, which Dagster's
check of the `context` annotation does not accept."""

import dagster as dg

from pipeline_assets.run_worker import record_run_worker


@dg.asset
def records_its_worker(context: dg.AssetExecutionContext) -> None:
    record_run_worker(context)


def _job_on(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    job = dg.define_asset_job("records_its_worker_job", executor_def=executor)
    return dg.Definitions(assets=[records_its_worker], jobs=[job]).resolve_job_def("records_its_worker_job")


def in_process_job() -> dg.JobDefinition:
    return _job_on(dg.in_process_executor)


def multiprocess_job() -> dg.JobDefinition:
    return _job_on(dg.multiprocess_executor)
