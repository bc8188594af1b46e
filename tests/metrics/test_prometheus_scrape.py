"""The metrics endpoint as an operator meets it: a real Prometheus scrapes `python -m dripfeed.metrics`
while the real daemon onboards five tenants against the simulator. Queried through Prometheus' HTTP
API, each tenant's calls equal what the simulator counted, a revoked tenant shows its error class, a
throttled one its deferral, a stale one its state; every query of the Grafana dashboard returns data;
the alert rules load; and nothing served is a token.

acme's vendor changed a field's type (drift), globex's history arrives by an export held open,
`revoked`'s token was revoked, `throttled`'s window was spent by another client, and `stale` was
known two days ago and cannot sync (its token variable is not set).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
import requests
from dagster._core.instance.ref import InstanceRef  # the instance the daemon uses, from its DAGSTER_HOME

from resources.control.store import ControlStore
from resources.control.tenant_checks import TenantCheck, TenantChecks
from tasklane_sim import SimServer
from tests.support.dagster_daemon import ROOT, dripfeed_env, running_daemon, scratch_instance, wait_until
from tests.support.prometheus_server import Prometheus, running_metrics_endpoint, running_prometheus
from tests.support.rate_windows import window_resetting_in
from tests.support.simulator import ADMIN_TOKEN, workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the real daemon, a real Prometheus

TENANTS = ("acme", "globex", "revoked", "throttled", "stale")
SMALL = {"users": 5, "projects": 3, "tasks": 40}
RATE_LIMIT = 200
RULES = ROOT / "deploy" / "prometheus" / "dripfeed-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dripfeed-dashboard.json"


@dataclass
class Scraped:
    sim: SimServer
    prometheus: Prometheus
    served: str  # the endpoint's last answer, as text


def first_runs_finished(instance: dg.DagsterInstance) -> bool:
    """Every tenant that can have a run has had one (`stale` cannot: its token is not set)."""
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]))
    return {run.tags.get("dagster/partition") for run in runs} >= set(TENANTS) - {"stale"}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    directory = tmp_path_factory.mktemp("prometheus-scrape")
    workspaces = [workspace_config(t, records=SMALL) for t in ("acme", "revoked", "stale")]
    workspaces.append(workspace_config("globex", records=SMALL, exports={"duration_seconds": 1}))
    window = window_resetting_in(1200, 3000)  # not within the test
    workspaces.append(workspace_config("throttled", records=SMALL, rate_limit=RATE_LIMIT, window_seconds=window))
    with SimServer({"admin_token": ADMIN_TOKEN, "seed": 3, "workspaces": workspaces}) as sim:
        sim.admin.schema_change(
            "acme", kind="change_type", resource="tasks", field="estimate_hours", to="string", format="{}h"
        )
        sim.admin.hold_exports("globex")
        sim.admin.revoke_token("revoked", "token-revoked")
        sim.admin.spend("throttled", RATE_LIMIT - 1)  # its users, then it must wait for the window
        tenants = write_tenants(
            directory / "tenants.yaml",
            tenant_entry("acme"),
            tenant_entry("globex", history_since="2000-01-01"),
            tenant_entry("revoked"),
            tenant_entry("throttled", tier="daily", budget_share=1.0),
            tenant_entry("stale", token_env="TASKLANE_TOKEN_NEVER_SET"),
        )
        home = scratch_instance(directory, ROOT / "demo" / "dagster.yaml")
        env = dripfeed_env(directory, home, tenants, sim.base_url, "acme", "globex", "revoked", "throttled")
        env["DRIPFEED_HOURLY_PERIOD_MINUTES"] = "1"
        store = ControlStore(env["DRIPFEED_STATE"])
        TenantChecks(store).save([TenantCheck("stale", known_since=time.time() - 2 * 86400)])
        store.dispose()
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        with (
            running_metrics_endpoint(directory, env) as endpoint,
            running_prometheus(directory / "prometheus", endpoint.target, RULES) as prometheus,
        ):
            with running_daemon(directory, env):
                wait_until(lambda: first_runs_finished(instance), 300, "every tenant's first run")
                wait_until(
                    lambda: prometheus.values('dripfeed_tier_probes_total{tier="hourly"}', "tier").get("hourly"),
                    150,
                    "an hourly tick's probes",
                )
            time.sleep(3)  # the daemon is stopped: three more scrapes see every call it made
            served = requests.get(endpoint.url, timeout=10).text
            yield Scraped(sim, prometheus, served)
        instance.dispose()


def test_each_tenants_calls_in_prometheus_equal_what_the_simulator_counted(scraped: Scraped) -> None:
    for tenant in ("acme", "globex", "revoked", "throttled"):
        counted = scraped.sim.admin.counters(tenant)["totals"]
        outcomes = scraped.prometheus.values(f'dripfeed_api_calls_total{{tenant="{tenant}"}}', "outcome")
        received = sum(value for outcome, value in outcomes.items() if outcome != "network_error")
        assert received == counted["requests"] > 0, (tenant, outcomes, counted)
        assert outcomes.get("not_modified", 0) == counted["not_modified"], (tenant, outcomes, counted)
        assert outcomes.get("rate_limited", 0) == counted["rate_limited"], (tenant, outcomes, counted)
    assert scraped.prometheus.values('dripfeed_api_calls_total{tenant="acme"}', "outcome")["not_modified"] >= 3


def test_a_revoked_tenant_shows_its_error_class(scraped: Scraped) -> None:
    assert scraped.prometheus.values("dripfeed_tenant_failing", "tenant")["revoked"] == 1
    (failing,) = scraped.prometheus.query('dripfeed_tenant_failing{tenant="revoked"}')
    assert failing["metric"]["error_class"] == "auth"
    outcomes = scraped.prometheus.values('dripfeed_api_calls_total{tenant="revoked"}', "outcome")
    assert outcomes["auth_error"] >= 1
    assert scraped.prometheus.values('dripfeed_tenant_state{tenant="revoked"}', "state") == {"failing": 1}


def test_a_throttled_tenant_shows_its_deferral(scraped: Scraped) -> None:
    (deferred,) = scraped.prometheus.query('dripfeed_tenant_deferred_until_timestamp_seconds{tenant="throttled"}')
    assert float(deferred["value"][1]) > time.time()
    assert scraped.prometheus.values('dripfeed_tenant_state{tenant="throttled"}', "state") == {"deferred": 1}
    assert scraped.prometheus.values('dripfeed_budget_left_calls{tenant="throttled"}', "tenant") == {"throttled": 0}


def test_a_stale_tenant_shows_its_state(scraped: Scraped) -> None:
    assert scraped.prometheus.values('dripfeed_tenant_state{tenant="stale"}', "state") == {"stale": 1}
    assert scraped.prometheus.values('dripfeed_tenants{tier="hourly"}', "state")["stale"] == 1
    healthy = scraped.prometheus.values('dripfeed_tenant_state{tenant=~"acme|globex"}', "tenant")
    assert healthy == {"acme": 1, "globex": 1}
    assert {s["metric"]["state"] for s in scraped.prometheus.query('dripfeed_tenant_state{tenant=~"acme|globex"}')} == {
        "fresh"
    }


def test_every_query_of_the_dashboard_returns_data(scraped: Scraped) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (tenant_variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "tenant"]
    assert sorted(scraped.prometheus.label_values("tenant", "dripfeed_tenant_state")) == sorted(TENANTS)
    assert tenant_variable["definition"] == "label_values(dripfeed_tenant_state, tenant)"
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$tenant", tenant_variable["allValue"])
            if not scraped.prometheus.query(expr):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, empty


def test_the_alert_rules_load_and_the_drifted_tenant_fires_its_rule(scraped: Scraped) -> None:
    groups = requests.get(f"{scraped.prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert all(rule["health"] == "ok" for rule in rules.values()), rules
    firing = [a["labels"] for a in rules["DripfeedDriftSeen"]["alerts"]]
    assert [(a["tenant"], a["stream"]) for a in firing] == [("acme", "tasks")]


def test_nothing_served_is_a_token(scraped: Scraped) -> None:
    assert "dripfeed_tenant_state" in scraped.served
    for tenant in TENANTS:
        assert f"token-{tenant}" not in scraped.served
