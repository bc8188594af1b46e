"""The API resource against the real simulator: retries, waits, budget, ledger, ETags, secrets."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from resources.control.call_ledger import ledger_rows
from resources.tasklane.errors import TasklaneFailure, TenantThrottled
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

ROOT = Path(__file__).resolve().parents[2]


def records(client, stream: str = "tasks", since: str | None = None) -> list[dict]:
    return sorted((r for page in client.list_pages(stream, since) for r in page.records), key=lambda r: r["id"])


@pytest.mark.e2e  # paced by the real clock: 1 s answers against read timeouts
def test_transient_faults_are_retried_and_the_listing_equals_the_ground_truth(make_sim, make_api) -> None:
    faults = {"error_rate": 0.15, "drop_rate": 0.1, "truncate_rate": 0.15, "slow_rate": 0.2, "slow_seconds": 1.0}
    sim = make_sim(workspace_config("acme", records={"tasks": 1200}, faults=faults))
    client = make_api(sim, read_timeout_seconds=0.5, max_attempts=10).client("acme")
    assert records(client) == sim.admin.truth("acme", "tasks")
    counted = sim.admin.counters("acme")["totals"]
    assert counted.get("fault_error", 0) and counted.get("fault_drop", 0) and counted.get("fault_truncate", 0)
    assert counted.get("fault_slow", 0), "a slow answer must have tripped the read timeout"
    assert client.stats["retries"] >= counted["fault_error"] + counted["fault_drop"]


def test_a_revoked_token_fails_at_once_without_retries(make_sim, make_api) -> None:
    sim = make_sim()
    client = make_api(sim).client("acme")
    sim.admin.revoke_token("acme", "token-acme")
    with pytest.raises(TasklaneFailure) as failure:
        records(client)
    assert not failure.value.retryable
    assert failure.value.error_class == "auth"
    assert "'acme'" in str(failure.value) and "TASKLANE_TOKEN_ACME" in str(failure.value)
    assert sim.admin.counters("acme")["totals"]["requests"] == 1


@pytest.mark.parametrize(("status_token", "error_class"), [("token-globex", "auth"), ("", "config")])
def test_a_wrong_or_missing_token_is_a_clear_error_naming_tenant_and_variable(
    make_sim, make_api, monkeypatch, status_token, error_class
) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    client = make_api(sim).client("acme")
    monkeypatch.setenv("TASKLANE_TOKEN_ACME", status_token)
    with pytest.raises(TasklaneFailure) as failure:
        client.list_pages("users", None).__next__()
    assert failure.value.error_class == error_class and not failure.value.retryable
    assert "TASKLANE_TOKEN_ACME" in str(failure.value)
    expected_calls = 1 if status_token else 0  # a missing secret fails before any call
    assert sim.admin.counters("acme")["totals"].get("requests", 0) == expected_calls


def test_a_token_file_is_read_at_call_time_so_rotation_needs_no_restart(make_sim, make_api, tmp_path) -> None:
    sim = make_sim()
    secret = tmp_path / "acme.token"
    secret.write_text("token-acme\n")
    client = make_api(sim, {"id": "acme", "tier": "daily", "token_file": str(secret)}).client("acme")
    assert records(client, "users")
    sim.admin.add_token("acme", "rotated")
    sim.admin.revoke_token("acme", "token-acme")
    secret.write_text("rotated")
    assert records(client, "projects")  # with the new token, no restart
    assert sim.admin.counters("acme")["totals"].get("status_401", 0) == 0


def test_a_call_in_flight_when_its_token_is_rotated_and_revoked_succeeds_with_the_new_token(
    make_sim, make_api, tmp_path
) -> None:
    """Found by make chaos: a run whose token was rotated (new token issued, written to the file, old
    one revoked) while a call was in flight met a 401 and failed, though the new token was there."""
    sim = make_sim(workspace_config("acme", faults={"slow_rate": 1.0, "slow_seconds": 1.0}))
    secret = tmp_path / "acme.token"
    secret.write_text("token-acme\n")
    client = make_api(sim, {"id": "acme", "tier": "daily", "token_file": str(secret)}).client("acme")
    in_flight = threading.Thread(target=lambda: result.append(records(client, "users")))
    result: list[list] = []
    in_flight.start()
    time.sleep(0.4)  # the request with the old token waits in the simulator, before its auth check
    sim.admin.add_token("acme", "rotated")
    secret.write_text("rotated")
    sim.admin.revoke_token("acme", "token-acme")
    in_flight.join(10)
    assert sim.admin.counters("acme")["totals"].get("status_401", 0) == 1, "the old token was rejected once"
    assert result and len(result[0]) == 20, "and the call was made again with the new one"


@pytest.mark.e2e  # paced by the real clock: waits out a 3 s rate window
@pytest.mark.parametrize("retry_after_format", ["seconds", "http-date"])
def test_retry_after_is_obeyed_in_both_formats(make_sim, make_api, retry_after_format: str) -> None:
    sim = make_sim(workspace_config("acme", rate_limit=30, window_seconds=3, retry_after_format=retry_after_format))
    client = make_api(sim, tenant_entry("acme", budget_share=1.0)).client("acme")
    time.sleep(3 - time.time() % 3 + 0.05)
    sim.admin.spend("acme", 30)  # the customer's other client took the whole window
    started = time.monotonic()
    assert records(client, "users")
    elapsed = time.monotonic() - started
    totals = sim.admin.counters("acme")["totals"]
    assert totals["rate_limited"] == 1, "one 429, then it waited instead of hammering"
    # At least the window's rest; well under the 20 s of a backoff (the margin: another test worker beside it).
    assert 2.0 <= elapsed < 12.0, f"waited {elapsed:.1f}s for a window of 3s"


def test_a_long_retry_after_is_not_slept_the_tenant_is_throttled_until_then(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", lockout_threshold=0))  # the first 429 locks out: Retry-After 300
    client = make_api(sim, tenant_entry("acme", budget_share=1.0)).client("acme")
    sim.admin.set_knobs("acme", max_concurrent=1, faults={"slow_rate": 1.0, "slow_seconds": 1.0})
    blocker = threading.Thread(
        target=lambda: client.session.get(f"{client.base}/users", headers={"Authorization": "Bearer token-acme"})
    )
    blocker.start()
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(TenantThrottled) as throttled:
        records(client, "users")
    blocker.join()
    assert time.monotonic() - started < 10.0, "the worker did not sleep through the 300 s lockout"
    assert 290 <= throttled.value.resume_at - time.time() <= 300
    assert throttled.value.vendor and "Retry-After 300s" in throttled.value.reason


def test_an_exhausted_budget_with_a_far_reset_throttles_the_tenant_without_a_call(make_sim, make_api) -> None:
    clear_of_the_hours_end()  # the budget's window must not renew mid-test: its reset is meant to be far
    sim = make_sim(workspace_config("acme", records={"tasks": 1000}))
    client = make_api(sim, tenant_entry("acme", budget_per_hour=3)).client("acme")
    started = time.monotonic()
    with pytest.raises(TenantThrottled) as throttled:
        records(client)
    assert time.monotonic() - started < 10.0, "it did not wait for the reset, more than a minute away"
    assert throttled.value.resume_at - time.time() > 60 and not throttled.value.vendor
    assert sim.admin.counters("acme")["totals"]["counted"] == 3


def run_worker(sim, tenants_file: Path, state: str, passes: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tests.support.list_worker",
        sim.base_url,
        str(tenants_file),
        state,
        "acme",
        str(passes),
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.e2e  # separate Python worker processes
def test_two_processes_share_one_budget_and_stay_inside_it_in_every_window(
    make_sim, tmp_path, monkeypatch, control_state
) -> None:
    window, limit, budget = 2, 20, 10  # budget_share 0.5 of the vendor's 20 calls per 2 s window
    sim = make_sim(workspace_config("acme", records={"tasks": 1500}, rate_limit=limit, window_seconds=window))
    monkeypatch.setenv("TASKLANE_TOKEN_ACME", "token-acme")
    tenants_file = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme", budget_share=0.5))
    workers = [run_worker(sim, tenants_file, control_state, passes=1) for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert json.loads(out)["records"] == 1500
    counters = sim.admin.counters("acme")
    per_window = counters["counted_by_window"]
    assert sum(per_window.values()) == 2 * 15
    assert max(per_window.values()) <= budget, per_window
    assert counters["totals"].get("rate_limited", 0) == 0 and counters["lockouts"] == 0


@pytest.mark.e2e  # paced by the real clock: 6 s rate windows
def test_calls_by_the_customers_other_client_shrink_what_dripfeed_spends(make_sim, make_api) -> None:
    window = 6
    sim = make_sim(workspace_config("acme", records={"tasks": 3000}, rate_limit=40, window_seconds=window))
    client = make_api(sim, tenant_entry("acme", budget_share=1.0)).client("acme")
    time.sleep(window - time.time() % window + 0.05)
    pages = client.list_pages("tasks", None)
    for _ in range(5):
        next(pages)
    sim.admin.spend("acme", 20)  # half the window, spent behind dripfeed's back
    for _ in pages:
        pass
    counters = sim.admin.counters("acme")
    assert counters["totals"].get("rate_limited", 0) <= 1
    assert counters["lockouts"] == 0
    assert max(counters["counted_by_window"].values()) <= 40


def test_ten_clients_of_one_tenant_keep_to_the_vendors_8_concurrent_requests(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 300}, faults={"slow_rate": 1.0, "slow_seconds": 0.3}))
    apis = [make_api(sim) for _ in range(10)]  # as if ten processes, sharing one control store
    threads = [threading.Thread(target=records, args=(api.client("acme"),)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = sim.admin.counters("acme")
    assert counters["max_in_flight"] <= 8
    assert counters["totals"].get("rate_limited", 0) == 0
    assert counters["totals"]["status_200"] == 10 * 3


def test_every_call_is_logged_once_with_its_budget(make_sim, make_api, caplog) -> None:
    sim = make_sim()
    client = make_api(sim, tenant_entry("acme", budget_per_hour=1000)).client("acme")
    with caplog.at_level(logging.DEBUG, logger="dripfeed.tasklane"):
        records(client, "users")
    lines = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("tasklane_call")
    ]
    assert len(lines) == sim.admin.counters("acme")["totals"]["requests"] == 1
    assert set(lines[0]) == {
        "tenant",
        "endpoint",
        "status",
        "duration_ms",
        "attempt",
        "budget_left",
        "vendor_remaining",
        "wait_s",
    }
    assert lines[0]["tenant"] == "acme" and lines[0]["status"] == 200 and lines[0]["budget_left"] == 999


def test_a_listing_asked_again_with_its_etag_costs_zero_counted_calls(make_sim, make_api) -> None:
    sim = make_sim()
    client = make_api(sim).client("acme")
    latest = records(client, "projects")[-1]["updated_at"]
    (first,) = client.list_pages("projects", latest)
    assert first.etag, "a listing that fits on one page carries its ETag"
    sim.admin.reset_counters("acme")
    pages = list(client.list_pages("projects", latest, etag=first.etag))
    assert len(pages) == 1 and pages[0].not_modified
    totals = sim.admin.counters("acme")["totals"]
    assert totals["not_modified"] == 1 and totals["counted"] == 0


def test_a_longer_listing_carries_no_etag(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 250}))
    pages = list(make_api(sim).client("acme").list_pages("tasks", None))
    assert len(pages) == 3 and not any(page.etag for page in pages), "page one of three says nothing of the rest"


KEY = "dripfeed-export-tasks-0123456789abcdef"


def test_a_dropped_submit_retried_creates_exactly_one_export_job(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", faults={"drop_rate": 1.0}))
    client = make_api(sim, max_attempts=3).client("acme")
    with pytest.raises(TasklaneFailure) as outage:  # every answer lost: three attempts, then a retryable failure
        client.submit_export("tasks", "2026-01-01T00:00:00Z", KEY)
    assert outage.value.error_class == "vendor_outage" and outage.value.retryable
    sim.admin.set_knobs("acme", faults={"drop_rate": 0})
    job = client.submit_export("tasks", "2026-01-01T00:00:00Z", KEY)  # the step's retry asks again
    counters = sim.admin.counters("acme")
    assert counters["endpoints"]["exports.create"]["fault_drop"] == 3
    assert counters["exports_created"] == 1
    assert [j["id"] for j in sim.admin.exports("acme")] == [job.id]


def test_an_expired_cursor_mid_listing_is_survived(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 800}))
    client = make_api(sim).client("acme")
    seen = []
    for number, page in enumerate(client.list_pages("tasks", None)):
        seen.extend(page.records)
        if number == 2:
            sim.admin.expire_cursors("acme")
    assert sorted({r["id"] for r in seen}) == [r["id"] for r in sim.admin.truth("acme", "tasks")]
    assert sim.admin.counters("acme")["totals"]["status_410"] == 1


def test_every_call_is_in_the_ledger_per_tenant_hour_and_endpoint(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", faults={"error_rate": 0.2}))
    api = make_api(sim, max_attempts=10)
    client = api.client("acme")
    records(client)
    records(client, "users")
    rows = ledger_rows(api.state.store, "acme")
    by_endpoint = {r["endpoint"]: r for r in rows}
    assert set(by_endpoint) == {"tasks.list", "users.list"}
    sim_totals = sim.admin.counters("acme")["endpoints"]
    for endpoint, row in by_endpoint.items():
        assert row["calls"] == sim_totals[endpoint]["requests"]
        assert row["counted"] == sim_totals[endpoint]["counted"]
        assert row["errors"] == sim_totals[endpoint].get("fault_error", 0)
    with api.state.store.engine.connect() as conn:
        hourly = conn.execute(sa.text("SELECT tenant, hour, sum(counted) FROM dripfeed_api_calls GROUP BY 1, 2")).all()
    assert hourly[0][0] == "acme" and hourly[0][2] == sum(r["counted"] for r in rows)


def test_no_token_reaches_a_log_an_exception_or_the_ledger(make_sim, make_api, caplog, tmp_path) -> None:
    sim = make_sim(workspace_config("acme", faults={"error_rate": 0.2, "drop_rate": 0.1}))
    api = make_api(sim, max_attempts=10, state=str(tmp_path / "secret-check.sqlite3"))
    client = api.client("acme")
    with caplog.at_level(logging.DEBUG):
        records(client)
        sim.admin.revoke_token("acme", "token-acme")
        with pytest.raises(TasklaneFailure) as failure:
            records(client, "users")
    assert "tasklane_call" in caplog.text
    assert "token-acme" not in caplog.text and "Bearer" not in caplog.text
    assert "token-acme" not in str(failure.value) and "token-acme" not in repr(failure.value.metadata)
    api.state.store.dispose()
    for path in tmp_path.glob("secret-check.sqlite3*"):
        assert b"token-acme" not in path.read_bytes()
