"""Contract: Bulk exports (idempotency, lifecycle, open-job listing, gzip NDJSON results, expiry)."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest

from tasklane_sim import SimServer
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient

BEFORE = "2099-01-01T00:00:00Z"


def submit(client: TasklaneClient, key: str, resource: str = "tasks", before: str = BEFORE) -> Any:
    return client.post(
        "exports", json={"resource": resource, "updated_before": before}, headers={"Idempotency-Key": key}
    )


def wait_for(client: TasklaneClient, job_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"exports/{job_id}").json()
        if job["status"] == status:
            return job
        time.sleep(0.1)
    raise AssertionError(f"export {job_id} never reached {status}: {job}")


@pytest.fixture
def fast_exports(make_sim) -> SimServer:
    return make_sim(
        workspace_config("acme", exports={"duration_seconds": 0.5, "result_ttl_seconds": 2}), workspace_config("globex")
    )


def test_the_same_idempotency_key_returns_the_same_export_job(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    first = submit(client, "history-tasks-1")
    again = submit(client, "history-tasks-1")
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert fast_exports.admin.counters("acme")["exports_created"] == 1


def test_the_same_key_with_another_body_is_409(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    submit(client, "k1", "tasks")
    conflict = submit(client, "k1", "users")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"resource": "tasks", "updated_before": BEFORE}, {}),
        ({"resource": "tasks", "updated_before": BEFORE}, {"Idempotency-Key": "k" * 256}),
        ({"resource": "comments", "updated_before": BEFORE}, {"Idempotency-Key": "k"}),
        ({"resource": "tasks", "updated_before": "soon"}, {"Idempotency-Key": "k"}),
        ({"resource": "tasks"}, {"Idempotency-Key": "k"}),
        (["tasks"], {"Idempotency-Key": "k"}),
    ],
)
def test_bad_export_submissions_are_400(fast_exports: SimServer, body: Any, headers: dict[str, str]) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    response = client.post("exports", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_export_runs_to_success_and_serves_a_gzip_ndjson_snapshot(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    truth = fast_exports.admin.truth("acme", "tasks")
    tombstone_times = sorted(r["updated_at"] for r in truth if r["deleted_at"])
    cut = tombstone_times[len(tombstone_times) // 2]  # some tombstones before the cut, some after
    job = submit(client, "half", before=cut).json()
    assert job["status"] == "queued" and job["result_url"] is None and job["record_count"] is None
    assert isinstance(job["poll_after_seconds"], int) and job["poll_after_seconds"] >= 1
    done = wait_for(client, job["id"], "succeeded")
    assert done["progress"] == 1.0 and done["completed_at"]
    download = client.session.get(done["result_url"], timeout=30)
    assert download.status_code == 200
    records = [json.loads(line) for line in gzip.decompress(download.content).splitlines()]
    expected = [r for r in truth if r["updated_at"] < cut]
    assert sorted(records, key=lambda r: r["id"]) == expected
    assert any(r["deleted_at"] for r in records), "exports include tombstones"
    assert done["record_count"] == len(expected)


def test_open_jobs_are_listed_in_one_call(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    fast_exports.admin.set_knobs("acme", exports={"duration_seconds": 30})
    open_ids = {submit(client, f"open-{r}", r).json()["id"] for r in ("users", "projects")}
    fast_exports.admin.set_knobs("acme", exports={"duration_seconds": 0.2})
    quick = submit(client, "quick", "tasks").json()["id"]
    wait_for(client, quick, "succeeded")
    fast_exports.admin.reset_counters("acme")
    listed = client.get("exports", params={"status": "queued,running"}).json()["data"]
    assert {job["id"] for job in listed} == open_ids
    assert fast_exports.admin.counters("acme")["totals"]["counted"] == 1
    assert client.get("exports", params={"status": "done"}).status_code == 400


def test_each_poll_and_the_download_count_against_the_limit(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    job = submit(client, "counting").json()
    fast_exports.admin.reset_counters("acme")
    done = wait_for(client, job["id"], "succeeded")
    client.session.get(done["result_url"], timeout=30)
    endpoints = fast_exports.admin.counters("acme")["endpoints"]
    assert endpoints["exports.get"]["counted"] >= 1
    assert endpoints["exports.download"]["counted"] == 1


def test_a_failing_export_reports_failed_with_an_error(make_sim) -> None:
    sim = make_sim(workspace_config("acme", exports={"duration_seconds": 0.3, "failure_rate": 1.0}))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    failed = wait_for(client, submit(client, "doomed").json()["id"], "failed")
    assert failed["error"] and failed["result_url"] is None


def test_a_result_expires_after_its_ttl(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    job = submit(client, "short-lived").json()
    done = wait_for(client, job["id"], "succeeded")
    expired = wait_for(client, job["id"], "expired", timeout=5)
    assert expired["result_url"] is None
    gone = client.session.get(done["result_url"], timeout=30)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "export_expired"


def test_the_result_needs_the_workspaces_token(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    done = wait_for(client, submit(client, "private").json()["id"], "succeeded")
    assert TasklaneClient(fast_exports.base_url, "acme", None).session.get(done["result_url"]).status_code == 401
    other = TasklaneClient(fast_exports.base_url, "acme", "token-globex")
    assert other.session.get(done["result_url"]).status_code == 403


def test_held_exports_stay_open_until_released_then_complete(fast_exports: SimServer) -> None:
    client = TasklaneClient(fast_exports.base_url, "acme", "token-acme")
    before_hold = submit(client, "submitted-before-the-hold").json()
    fast_exports.admin.hold_exports("acme")
    during_hold = submit(client, "submitted-during-the-hold").json()
    time.sleep(1.0)  # twice the jobs' duration
    for job in (before_hold, during_hold):
        assert client.get(f"exports/{job['id']}").json()["status"] == "running"
    fast_exports.admin.hold_exports("acme", hold=False)
    for job in (before_hold, during_hold):
        assert wait_for(client, job["id"], "succeeded", timeout=5)["record_count"] > 0
