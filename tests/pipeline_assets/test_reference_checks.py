"""`tasks_references_resolve` fails for a parent that should be in the warehouse and is not, never
for one the parent's last sync could not have seen yet."""

from __future__ import annotations

import time

import pytest

from pipeline_assets.assets import tasks
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.runs import check_results, materialize_tenant
from tests.support.simulator import workspace_config

CHECK = "tasks_references_resolve"
LIVE_MUTATIONS = {"creates_per_second": 20.0, "updates_per_second": 40.0, "deletes_per_second": 4.0}


def test_tasks_synced_before_their_parents_wait_for_them_instead_of_failing(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    sim = make_sim(workspace_config("acme"))
    tasklane = tasklane_for(sim, "acme")
    alone = check_results(materialize_tenant(instance, "acme", tasklane, warehouse, selection=[tasks]))[CHECK]
    assert alone.passed, alone.metadata
    assert alone.metadata["waiting_for_next_sync"].value > 0  # every reference: users and projects never synced
    synced = check_results(materialize_tenant(instance, "acme", tasklane, warehouse))[CHECK]
    assert synced.passed and synced.metadata["waiting_for_next_sync"].value == 0


def test_a_parent_missing_from_the_warehouse_fails_the_check_naming_the_record(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    tasklane = tasklane_for(sim, "acme", "globex")
    for tenant in ("acme", "globex"):
        assert materialize_tenant(instance, tenant, tasklane, warehouse).success
    (project,) = warehouse.query(
        "SELECT project_id FROM tasks WHERE tenant_id = 'acme' AND _deleted_at IS NULL "
        "AND project_id IS NOT NULL ORDER BY updated_at LIMIT 1"
    )[0]
    warehouse.query("DELETE FROM projects WHERE tenant_id = 'acme' AND id = ?", (project,))  # lost, as by a bug
    acme = check_results(materialize_tenant(instance, "acme", tasklane, warehouse, selection=[tasks]))[CHECK]
    globex = check_results(materialize_tenant(instance, "globex", tasklane, warehouse, selection=[tasks]))[CHECK]
    assert not acme.passed
    examples = acme.metadata["examples"].value
    assert examples and {e["project_id"] for e in examples} == {project}
    assert all(e["id"].startswith("tsk_") for e in examples)
    assert globex.passed


@pytest.mark.e2e  # waits out real time between syncs
def test_syncs_under_live_mutation_raise_no_reference_alarm(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme", visibility_lag_seconds=2, mutations=LIVE_MUTATIONS))
    tasklane = tasklane_for(sim, "acme")
    evaluations = []
    for cycle in range(6):  # whole syncs and, as the README shows, tasks alone
        selection = [tasks] if cycle % 2 else None
        result = materialize_tenant(instance, "acme", tasklane, warehouse, selection=selection)
        assert result.success
        evaluations.append(check_results(result)[CHECK])
        time.sleep(1)
    assert [e.passed for e in evaluations] == [True] * 6, [e.metadata for e in evaluations if not e.passed]
    sim.admin.set_knobs("acme", mutations={"creates_per_second": 0, "updates_per_second": 0, "deletes_per_second": 0})
    sim.admin.settle("acme")
    time.sleep(2.5)  # the last writes become visible
    final = check_results(materialize_tenant(instance, "acme", tasklane, warehouse))[CHECK]
    assert final.passed and final.metadata["waiting_for_next_sync"].value == 0
    assert_equals_ground_truth(sim, warehouse, "acme")
