"""The dead run workers sensor: fails the runs left STARTED by a process that no longer exists.

Dagster's run monitoring asks the run launcher whether a run's worker is healthy, and the default
launcher (one machine: `deploy/run.sh`, `make dev`) cannot tell; the code server that launched a
run fails it if its process dies, but not when the code server died with it (the daemon's process
group killed, the machine restarted) or for a run of `dg launch`. Such a run stays
STARTED and holds its tenant's one slot of the run queue, so that tenant never syncs again until
someone marks it failed. Each tenant run records its process (pipeline_assets/run_worker.py);
every tick, this sensor looks at the STARTED runs whose process was on this host and fails those
whose process is gone. The run's failure alerts its tenant (tenant_alerts.py) and frees its slot;
`run_retries` in the instance (deploy/dagster.yaml) retries it once, and the retry resumes from
the last checkpoint (a history load reads the export's file again).

Runs recorded on another host are left to that host's sensor or to the launcher's own monitoring
(Docker, Kubernetes). The sensor requests no run, and costs one query per tick, plus one per
STARTED run whose process is gone.
"""

from __future__ import annotations

import dagster as dg

from pipeline_assets.run_worker import WORKER_TAG, Liveness, Worker, liveness

DEFAULT_CHECK_SECONDS = 60
GONE_RUNS = "runs whose process was gone, marked failed: "


DEAD_RUN_MESSAGE = "dripfeed: this run's process"  # how its failure message begins (tenant_alerts.py)


def dead_run_message(worker: Worker) -> str:
    return (
        f"{DEAD_RUN_MESSAGE} (pid {worker.pid} on {worker.host}) is gone: it was killed (the OOM "
        "killer, a kill -9, or the daemon and its run processes killed together) or its machine restarted. "
        "Nothing it committed is lost: the tenant's next run (or this run's automatic retry) resumes "
        "from its last checkpoint."
    )


def fail_dead_runs(instance: dg.DagsterInstance) -> tuple[list[str], int]:
    """Fail the STARTED runs whose recorded process is gone from this host; return their ids and
    how many STARTED runs were left to another host."""
    failed, elsewhere = [], 0
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        worker = Worker.from_tag(run.tags.get(WORKER_TAG, ""))
        if worker is None:
            continue
        state = liveness(worker)
        elsewhere += state == Liveness.ELSEWHERE
        if state != Liveness.GONE:
            continue
        # Read again after seeing the process gone: a run that ended well had recorded its end first.
        current = instance.get_run_by_id(run.run_id)
        if current is not None and current.status == dg.DagsterRunStatus.STARTED:
            instance.report_run_failed(current, message=dead_run_message(worker))
            failed.append(run.run_id)
    return failed, elsewhere


def dead_run_workers_sensor(check_seconds: int = DEFAULT_CHECK_SECONDS) -> dg.SensorDefinition:
    @dg.sensor(
        name="dead_run_workers",
        minimum_interval_seconds=check_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Fails the runs left STARTED by a process that died (killed, or its machine restarted), "
        "which would otherwise hold their tenant's slot of the run queue for ever.",
    )
    def dead_run_workers(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        failed, elsewhere = fail_dead_runs(context.instance)
        for run_id in failed:
            context.log.warning(f"run {run_id}: its process is gone; marked failed")
        on_other_hosts = f"; STARTED runs on other hosts, left to them: {elsewhere}" if elsewhere else ""
        return dg.SkipReason(f"{GONE_RUNS}{len(failed)}{on_other_hosts}")

    return dead_run_workers
