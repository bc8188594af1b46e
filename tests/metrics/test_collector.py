"""The metrics' counters are totals the control store keeps: an endpoint started again serves the
same values and counts on from them, and a store upgraded from the revision before the totals
starts them from its call ledger, so a Prometheus sees no counter go down through either."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dripfeed.metrics.collector import StoreCollector
from resources.control.call_ledger import CallOutcome, PendingLedger
from resources.control.store import MIGRATIONS, ControlStore, state_url
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tiers import TIERS
from tests.support.postgres_server import fresh_database
from tests.support.tenants_files import tenant_entry, write_tenants

OK, NOT_MODIFIED, SERVER_ERROR = (
    CallOutcome(counted=True),
    CallOutcome(False, not_modified=True),
    CallOutcome(True, error="server"),
)


LEDGER_COLUMNS = (  # the ledger of revision 0001
    "tenant",
    "hour",
    "endpoint",
    "calls",
    "counted",
    "not_modified",
    "rate_limited",
    "retries",
    "errors",
    "wait_seconds",
)


def scrape(state: str, tenants: Path) -> dict[tuple[str, str], float]:
    """What a newly started endpoint serves for dripfeed_api_calls_total, by (tenant, outcome)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(SharedState(url=state), TenantRegistry(tenants_file=str(tenants)), TIERS))
    text = generate_latest(registry).decode()
    return {
        (sample.labels["tenant"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "dripfeed_api_calls"
        for sample in family.samples
        if sample.name == "dripfeed_api_calls_total"
    }


def calls(tenant: str, **outcomes: float) -> dict[tuple[str, str], float]:
    """The series an endpoint serves for the tenant: ok, 304 and 429 always, errors once they happen."""
    return {(tenant, outcome): value for outcome, value in ({"rate_limited": 0} | outcomes).items()} | {
        (tenant, outcome): outcomes.get(outcome, 0) for outcome in ("ok", "not_modified")
    }


def book(store: ControlStore, tenant: str, *outcomes: CallOutcome) -> None:
    ledger = PendingLedger(store, tenant)
    for outcome in outcomes:
        ledger.add("tasks", outcome, at=1_800_000_000.0)
    with store.transaction() as conn:
        ledger.write(conn)


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "control.sqlite3")
    return fresh_database(request.getfixturevalue("postgres_url"), "control")


def test_an_endpoint_started_again_serves_the_same_counters_and_counts_on(state: str, tmp_path: Path) -> None:
    tenants = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"), tenant_entry("globex"))
    store = ControlStore(state)
    book(store, "acme", OK, OK, NOT_MODIFIED, SERVER_ERROR)
    first = scrape(state, tenants)
    assert first == {
        ("acme", "ok"): 2,
        ("acme", "not_modified"): 1,
        ("acme", "rate_limited"): 0,
        ("acme", "server_error"): 1,
    }
    assert scrape(state, tenants) == first, "a restarted endpoint starts from the store, not from zero"
    book(store, "acme", NOT_MODIFIED)
    book(store, "globex", OK)
    assert scrape(state, tenants) == first | {
        ("acme", "not_modified"): 2,
        ("globex", "ok"): 1,
        ("globex", "not_modified"): 0,
        ("globex", "rate_limited"): 0,
    }
    store.dispose()


def test_an_upgraded_store_starts_its_totals_from_the_ledger(state: str, tmp_path: Path) -> None:
    tenants = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"))
    engine = sa.create_engine(state_url(state))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:  # the store as the release before the totals left it
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        ledger = sa.table("dripfeed_api_calls", *map(sa.column, LEDGER_COLUMNS))
        connection.execute(
            ledger.insert(),
            [
                dict(
                    zip(LEDGER_COLUMNS, ("acme", "2026-12-05T10:00:00Z", "tasks", 10, 6, 4, 0, 1, 1, 0.5), strict=True)
                ),
                dict(
                    zip(LEDGER_COLUMNS, ("acme", "2026-12-05T11:00:00Z", "tasks", 5, 1, 4, 0, 0, 0, 0.0), strict=True)
                ),
            ],
        )
    engine.dispose()
    ControlStore(state).dispose()  # opened by this release: upgraded to the totals
    # 15 calls: 8 not modified, 1 error of a class the old release did not record, the other 6 ok
    assert scrape(state, tenants) == {
        ("acme", "ok"): 6,
        ("acme", "not_modified"): 8,
        ("acme", "rate_limited"): 0,
        ("acme", "error"): 1,
    }
