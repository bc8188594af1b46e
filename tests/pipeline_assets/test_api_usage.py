"""api_usage: the ledger's calls per tenant and hour reach the warehouse and the asset's metadata."""

from __future__ import annotations

import dagster as dg

from pipeline_assets.api_usage import api_usage
from tests.support.resources import resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config


def test_api_usage_matches_the_calls_the_simulator_counted(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    tasklane = tasklane_for(sim, "acme", "globex")
    for tenant in ("acme", "globex"):
        assert materialize_tenant(instance, tenant, tasklane, warehouse).success
    result = dg.materialize([api_usage], instance=instance, resources=resources_for(tasklane, warehouse=warehouse))
    assert result.success
    for tenant in ("acme", "globex"):
        counted = sum(e["counted"] for e in sim.admin.counters(tenant)["endpoints"].values())
        stored = warehouse.query("SELECT sum(counted), sum(calls) FROM api_usage WHERE tenant_id = ?", (tenant,))
        assert stored[0][0] == counted and stored[0][1] >= counted
    budget = warehouse.query("SELECT hourly_budget, budget_used FROM api_usage WHERE tenant_id = 'acme'")[0]
    assert budget[0] > 0 and 0 < budget[1] < 1
    metadata = next(iter(result.asset_materializations_for_node("api_usage"))).metadata
    assert "acme" in metadata["last_24_hours"].value and "globex" in metadata["last_24_hours"].value
    again = dg.materialize([api_usage], instance=instance, resources=resources_for(tasklane, warehouse=warehouse))
    assert again.success
    assert warehouse.query("SELECT count(*) FROM api_usage")[0][0] == metadata["dagster/row_count"].value, (
        "a refresh replaces its hours, it does not add to them"
    )
