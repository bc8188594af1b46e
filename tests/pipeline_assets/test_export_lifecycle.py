"""Every transition of a history export, as a table: the job, the vendor's answer, the time → what
is recorded and what happens next."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_assets.export_lifecycle import (
    MAX_ATTEMPTS,
    Action,
    after_submission,
    decide,
    idempotency_key,
    new_job,
)
from resources.control.export_jobs import ExportJob, ExportStatus
from resources.tasklane.errors import TasklaneFailure
from resources.tasklane.exports import VendorExport

NOW = 1_800_000_000.0
HOUR = 3600.0
TIMEOUT = 6 * HOUR
BEFORE = "2026-11-30T10:00:00.000Z"


def job(status: ExportStatus = ExportStatus.RUNNING, *, attempt: int = 1, age: float = 60.0) -> ExportJob:
    recorded = new_job("acme", "tasks", BEFORE, NOW - age)
    if status == ExportStatus.SUBMITTING:
        return recorded.but(attempt=attempt)
    return recorded.but(status=status, attempt=attempt, export_id="exp_1")


def answer(status: str, **fields: Any) -> VendorExport:
    return VendorExport.parse("acme", {"id": "exp_1", "status": status, "poll_after_seconds": 30, **fields})


@pytest.mark.parametrize(
    ("current", "vendor", "action", "recorded"),
    [
        (job(ExportStatus.SUBMITTING), None, Action.SUBMIT, ExportStatus.SUBMITTING),
        (job(ExportStatus.QUEUED), answer("queued"), Action.WAIT, ExportStatus.QUEUED),
        (job(ExportStatus.QUEUED), answer("running"), Action.WAIT, ExportStatus.RUNNING),
        (job(), answer("succeeded", result_url="https://x/r", record_count=5), Action.LOAD, ExportStatus.SUCCEEDED),
        (job(), answer("failed", error="worker died"), Action.SUBMIT, ExportStatus.SUBMITTING),
        (job(), answer("expired"), Action.SUBMIT, ExportStatus.SUBMITTING),
        (job(ExportStatus.SUCCEEDED), answer("expired"), Action.SUBMIT, ExportStatus.SUBMITTING),
        (job(attempt=MAX_ATTEMPTS), answer("failed"), Action.ABANDON, ExportStatus.ABANDONED),
        (job(age=TIMEOUT + 1), answer("running"), Action.ABANDON, ExportStatus.ABANDONED),
        (job(ExportStatus.SUBMITTING, age=TIMEOUT + 1), None, Action.ABANDON, ExportStatus.ABANDONED),
    ],
    ids=[
        "never-answered-submits-again",
        "queued-waits",
        "running-waits",
        "succeeded-loads",
        "failed-resubmits",
        "expired-resubmits",
        "result-expired-unloaded-resubmits",
        "failed-on-the-last-attempt-is-abandoned",
        "past-the-timeout-is-abandoned",
        "never-answered-past-the-timeout-is-abandoned",
    ],
)
def test_a_due_job_becomes(current: ExportJob, vendor: dict | None, action: Action, recorded: ExportStatus) -> None:
    decision = decide(current, vendor, NOW, timeout_seconds=TIMEOUT)
    assert decision.action == action and decision.job.status == recorded
    assert decision.job.status.is_terminal == (action == Action.ABANDON)


def test_waiting_honours_the_vendors_poll_after() -> None:
    decision = decide(job(), answer("running", poll_after_seconds=45), NOW, timeout_seconds=TIMEOUT)
    assert decision.job.next_poll_at == NOW + 45


def test_a_succeeded_job_keeps_what_its_load_needs() -> None:
    done = answer("succeeded", result_url="https://x/r", record_count=5, completed_at="2026-11-30T10:00:05.000Z")
    recorded = decide(job(), done, NOW, timeout_seconds=TIMEOUT).job
    assert (recorded.result_url, recorded.record_count) == ("https://x/r", 5)
    assert recorded.completed_at == 1_796_032_805.0


def test_a_resubmission_has_a_new_key_and_forgets_the_failed_job() -> None:
    failed = job(ExportStatus.SUCCEEDED).but(result_url="https://x/r", record_count=5)
    decision = decide(failed, answer("expired"), NOW, timeout_seconds=TIMEOUT)
    again = decision.job
    assert again.attempt == 2 and again.idempotency_key == idempotency_key("acme", "tasks", BEFORE, 2)
    assert again.idempotency_key != failed.idempotency_key
    assert (again.export_id, again.result_url, again.record_count) == (None, None, None)
    assert again.error == decision.reason == "export exp_1 expired: no reason given"


def test_an_answered_submission_waits_for_the_vendor_even_if_the_job_it_finds_is_done() -> None:
    recorded = after_submission(job(ExportStatus.SUBMITTING), answer("succeeded"), NOW)
    assert recorded.status == ExportStatus.QUEUED and recorded.export_id == "exp_1"
    assert recorded.next_poll_at == NOW + 30


def test_the_same_history_and_attempt_always_name_the_same_job() -> None:
    assert idempotency_key("acme", "tasks", BEFORE) == new_job("acme", "tasks", BEFORE, NOW).idempotency_key
    assert idempotency_key("acme", "tasks", BEFORE) != idempotency_key("acme", "users", BEFORE)
    assert len(idempotency_key("a" * 63, "projects", BEFORE, 3)) <= 255


@pytest.mark.parametrize(
    "vendor_answer",
    [{"status": "running"}, {"id": "exp_1", "status": "paused"}, {"id": 7, "status": "queued"}, ["exp_1"], None],
    ids=["no-id", "unknown-status", "id-not-text", "not-an-object", "null"],
)
def test_an_export_answer_not_in_the_contract_fails_naming_the_tenant(vendor_answer: Any) -> None:
    with pytest.raises(TasklaneFailure) as failure:
        VendorExport.parse("acme", vendor_answer)
    assert failure.value.tenant == "acme" and failure.value.error_class == "schema_drift"
    assert "polled again at the next tick" in str(failure.value)


@pytest.mark.parametrize(
    ("sent", "read"), [(30, 30), (12.5, 12), ("45", 45), ("soon", None), (True, None), (None, None)]
)
def test_an_export_answers_numbers_are_read_as_numbers_or_not_at_all(sent: Any, read: int | None) -> None:
    answer = VendorExport.parse("acme", {"id": "exp_1", "status": "running", "poll_after_seconds": sent})
    assert answer.poll_after_seconds == read
