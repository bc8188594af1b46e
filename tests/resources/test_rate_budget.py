"""The shared budget's window logic, driven with explicit clock values on a real control store."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from resources.control.block_batch import BlockBatch
from resources.control.call_ledger import CallOutcome, PendingLedger, ledger_rows, write_ledger_rows
from resources.control.rate_budget import PROBE_WAIT_SECONDS, Grant, RateBudget, Settlement, Wait
from resources.control.store import ControlStore, call_leases, call_totals
from resources.tasklane.metering import Meter
from resources.tenants import Tenant
from tests.support.postgres_server import fresh_database

TENANT = Tenant(id="acme", tier="hourly", token_env="TASKLANE_TOKEN_ACME", budget_share=0.5)
SPENT = Tenant(id="globex", tier="hourly", token_env="TASKLANE_TOKEN_GLOBEX", budget_share=0.5)
NEW = Tenant(id="initech", tier="hourly", token_env="TASKLANE_TOKEN_INITECH", budget_share=0.5)
R1 = 1_800_000_000  # a vendor reset, aligned to a 10 s window


def headers(remaining: int, reset: int, limit: int = 20) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}


@pytest.fixture
def budget(tmp_path: Path) -> RateBudget:
    return RateBudget(ControlStore(str(tmp_path / "control.sqlite3")))


def test_until_the_window_is_known_one_probe_asks_and_others_wait_briefly(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    assert isinstance(probe, Grant) and probe.calls == 1
    other = budget.exchange(TENANT, None, now=R1 - 5)
    assert isinstance(other, Wait) and other.seconds == PROBE_WAIT_SECONDS
    block = budget.exchange(TENANT, Settlement(probe, 1, 0, headers(19, R1)), now=R1 - 4.9)
    assert isinstance(block, Grant) and block.window_reset == R1 and block.calls == 4  # half of the 9 left of 10


def test_a_new_window_of_unknown_length_never_waits_for_a_guessed_reset(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    spent = budget.exchange(TENANT, Settlement(probe, 1, 0, headers(19, R1)), now=R1 - 4)
    budget.settle(TENANT, Settlement(spent, spent.calls, 0, headers(19 - spent.calls, R1)))
    # The window rolled, and with one reset seen its length is still unknown:
    first = budget.exchange(TENANT, None, now=R1 + 1)
    second = budget.exchange(TENANT, None, now=R1 + 1)
    assert isinstance(first, Grant) and first.calls == 1
    assert isinstance(second, Wait) and second.seconds < 1, "no hour-long wait on a guessed reset"
    after = budget.exchange(TENANT, Settlement(first, 1, 0, headers(19, R1 + 10)), now=R1 + 1.1)
    assert isinstance(after, Grant) and after.window_reset == R1 + 10
    assert budget.window("acme")["window_seconds"] == 10
    budget.settle(TENANT, Settlement(after, after.calls, 0, headers(19 - after.calls, R1 + 10)))
    learned = budget.exchange(TENANT, None, now=R1 + 10.6)  # the length is known: the reset is arithmetic
    assert isinstance(learned, Grant) and learned.window_reset == R1 + 20 and learned.calls > 1


def test_a_spent_window_waits_for_its_reset(budget: RateBudget) -> None:
    grant = budget.exchange(TENANT, None, now=R1 - 5)
    while isinstance(grant, Grant):
        grant = budget.exchange(TENANT, Settlement(grant, grant.calls, 0, headers(10, R1)), now=R1 - 5)
    assert isinstance(grant, Wait) and 5 <= grant.seconds <= 5.6
    assert budget.window("acme")["spent"] == 10


def test_uncounted_calls_are_refunded_and_other_clients_shrink_the_cap(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    block = budget.exchange(TENANT, Settlement(probe, 0, 1, headers(20, R1)), now=R1 - 5)  # a 304: refunded
    assert budget.window("acme")["spent"] == block.calls
    budget.settle(TENANT, Settlement(block, 1, 0, headers(2, R1)))  # someone else spent 17 of 20
    assert budget.window("acme")["vendor_cap"] == 1 + 2


def learn_window(budget: RateBudget, tenant: Tenant, remaining: int) -> None:
    """One counted call whose answer tells the window: R1, 20 calls, `remaining` left."""
    probe = budget.exchange(tenant, None, now=R1 - 5)
    assert isinstance(probe, Grant)
    budget.settle(tenant, Settlement(probe, 1, 0, headers(remaining, R1)))


def leases(store: ControlStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(call_leases)).scalar_one()


def test_blocks_reserved_together_follow_the_rules_of_one_at_a_time(control_state: str) -> None:
    store = ControlStore(control_state)
    budget = RateBudget(store)
    learn_window(budget, TENANT, remaining=19)  # a share of 10 calls, 1 spent
    learn_window(budget, SPENT, remaining=19)
    grant = budget.exchange(SPENT, None, now=R1 - 5)
    while isinstance(grant, Grant):
        grant = budget.exchange(SPENT, Settlement(grant, grant.calls, 0, headers(10, R1)), now=R1 - 5)
    blocks = budget.reserve_blocks([TENANT, SPENT, NEW], want=3, now=R1 - 5)
    reserved, waiting, asking = blocks["acme"], blocks["globex"], blocks["initech"]
    assert isinstance(reserved, Grant) and reserved.calls == 3, "a known window: the block asked for"
    assert isinstance(waiting, Wait) and 5 <= waiting.seconds <= 5.6, "a spent window waits for its reset"
    assert isinstance(asking, Grant) and asking.calls == 3, "an unknown window: a probe's calls are conditional"
    assert budget.window("acme")["spent"] == 1 + 3
    budget.settle_blocks(
        [(TENANT, Settlement(reserved, 0, 3, headers(19, R1))), (NEW, Settlement(asking, 1, 0, headers(19, R1)))]
    )
    assert budget.window("acme")["spent"] == 1, "three 304s: the block is refunded whole"
    assert budget.window("initech")["spent"] == 1 and budget.window("initech")["window_reset"] == R1
    assert leases(store) == 0


def test_a_quiet_tenant_whose_window_rolled_gets_its_ticks_whole_block(control_state: str) -> None:
    """A 304 carries no rate headers, so a tenant that only ever gets 304s never learns its window's
    length: its tick's block must still hold every conditional request of its probe (one transaction
    for the tick), where a sync's first call in such a window asks the vendor alone."""
    store = ControlStore(control_state)
    budget = RateBudget(store)
    learn_window(budget, TENANT, remaining=19)  # one reset seen: the window's length is still unknown
    later = R1 + 3600  # windows have rolled since
    block = budget.reserve_blocks([TENANT], want=3, now=later)["acme"]
    assert isinstance(block, Grant) and block.calls == 3, "the whole block, not one call per request"
    budget.settle_blocks([(TENANT, Settlement(block, 0, 3, None))])
    assert budget.window("acme")["spent"] == 0, "three 304s: the block is refunded whole"
    asking = budget.exchange(TENANT, None, now=later + 1)
    assert isinstance(asking, Grant) and asking.calls == 1, "a sync's first call still asks the vendor alone"
    assert leases(store) == 1


def test_a_client_done_after_its_tick_settled_the_batch_settles_its_own_block(control_state: str) -> None:
    store = ControlStore(control_state)
    budget = RateBudget(store)
    learn_window(budget, TENANT, remaining=19)
    blocks = BlockBatch(budget, [TENANT, NEW], want=3)
    meter = Meter(TENANT, store, budget, long_wait_seconds=2.0, log=logging.getLogger(__name__), block=3, blocks=blocks)
    grant, _ = meter.acquire()
    assert grant.calls == 3, "the block the batch reserved"
    blocks.settle()  # the tick's time is up; initech's block, never taken, is given back
    meter.record(grant, "tasks.list", 200, headers(18, R1), attempt=1, waited=0.0, started=time.perf_counter())
    meter.flush()
    assert budget.window("acme")["spent"] == 2 and budget.window("initech")["spent"] == 0
    assert leases(store) == 0
    assert [(row["endpoint"], row["counted"]) for row in ledger_rows(store, "acme")] == [("tasks.list", 1)]


def test_a_ticks_blocks_and_ledger_cost_postgres_a_few_round_trips_not_one_per_tenant(postgres_url: str) -> None:
    """A tick reserves and settles hundreds of tenants' blocks with their ledger rows: on Postgres every
    upsert goes as pages of multi-row VALUES (SQLAlchemy sends an upsert without RETURNING row by
    row, psycopg2 a round trip each), and the sums come out right."""
    store = ControlStore(fresh_database(postgres_url, "control"))
    budget = RateBudget(store)
    tenants = [Tenant(id=f"t{n:04}", tier="hourly", token_env="TASKLANE_TOKEN_T", budget_share=0.5) for n in range(300)]
    round_trips = []
    sa.event.listen(store.engine, "do_execute", lambda *args: round_trips.append(1))
    sa.event.listen(
        store.engine, "do_executemany", lambda cursor, statement, rows, context: round_trips.append(len(rows))
    )
    batch = BlockBatch(budget, tenants, want=3)
    for tenant in tenants:
        grant = batch.take(tenant.id)
        assert isinstance(grant, Grant)
        ledger = PendingLedger(store, tenant.id)
        for endpoint in ("users.list", "projects.list", "tasks.list"):
            ledger.add(endpoint, CallOutcome(counted=False, not_modified=True), at=R1)
        batch.give_back(tenant, Settlement(grant, 0, 3, None), ledger)
    batch.settle()
    assert sum(round_trips) < 30, f"{sum(round_trips)} round trips for 300 tenants"
    assert len(ledger_rows(store)) == 900 and sum(row["not_modified"] for row in ledger_rows(store)) == 900
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(call_totals.c.not_modified))).scalar_one() == 900
    assert all(budget.window(t.id)["spent"] == 0 for t in tenants), "304s: every block refunded whole"
    assert leases(store) == 0


def test_ledger_rows_of_one_tenant_hour_and_endpoint_are_summed_in_one_write(control_state: str) -> None:
    store = ControlStore(control_state)
    rows = []
    for _ in range(2):  # two clients of one tenant, handing their calls to the same batch
        ledger = PendingLedger(store, "acme")
        ledger.add("tasks.list", CallOutcome(counted=True), at=R1)
        rows += ledger.take_rows()
    with store.transaction() as conn:
        write_ledger_rows(conn, store, rows)
    assert [(row["endpoint"], row["calls"], row["counted"]) for row in ledger_rows(store, "acme")] == [
        ("tasks.list", 2, 2)
    ]
