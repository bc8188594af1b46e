"""The bulk export endpoints: submit, look at one job, look at every open job, download a result.
The vendor's answer about a job is read once, here, into a `VendorExport`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from .caller import Caller
from .errors import TasklaneFailure

OPEN = ("queued", "running")
STATUSES = (*OPEN, "succeeded", "failed", "expired")


@dataclass(frozen=True)
class VendorExport:
    """One export job as Tasklane describes it (docs/tasklane-api.md, "Bulk exports")."""

    id: str
    status: str  # one of STATUSES
    poll_after_seconds: int | None = None
    result_url: str | None = None
    record_count: int | None = None
    error: str | None = None
    completed_at: str | None = None  # RFC 3339

    @property
    def open(self) -> bool:
        return self.status in OPEN

    @classmethod
    def parse(cls, tenant: str, answer: Any) -> VendorExport:
        """The job in `answer`; a TasklaneFailure naming the tenant when it is not the contract's."""
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("id"), str)
            or answer.get("status") not in STATUSES
        ):
            shown = {key: answer.get(key) for key in ("id", "status")} if isinstance(answer, dict) else type(answer)
            raise TasklaneFailure(
                tenant,
                "schema_drift",
                f"Tasklane answered about an export with {shown!r}, not a job with an id and a status of "
                f"{', '.join(STATUSES)}. Check the Tasklane-Version and the API changelog; the export is "
                "polled again at the next tick.",
            )
        return cls(
            id=answer["id"],
            status=answer["status"],
            poll_after_seconds=_number(answer.get("poll_after_seconds")),
            result_url=_text(answer.get("result_url")),
            record_count=_number(answer.get("record_count")),
            error=_text(answer.get("error")),
            completed_at=_text(answer.get("completed_at")),
        )


def submit_export(client: Caller, stream: str, updated_before: str, key: str) -> VendorExport:
    """Submit (or, with the same key and arguments, find again) the export of `stream` before
    `updated_before`."""
    body = {"resource": stream, "updated_before": updated_before}
    headers = {"Idempotency-Key": key}
    answer = client.request("POST", "exports", endpoint="exports.create", json_body=body, headers=headers).body
    return VendorExport.parse(client.tenant.id, answer)


def get_export(client: Caller, export_id: str) -> VendorExport:
    return VendorExport.parse(
        client.tenant.id, client.request("GET", f"exports/{export_id}", endpoint="exports.get").body
    )


def list_open_exports(client: Caller) -> list[VendorExport]:
    params = {"status": ",".join(OPEN)}
    answer = client.request("GET", "exports", endpoint="exports.list", params=params).body
    listed = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        raise TasklaneFailure(
            client.tenant.id,
            "schema_drift",
            "Tasklane answered the list of open exports without a `data` list. Check the Tasklane-Version "
            "and the API changelog; the exports are polled again at the next tick.",
        )
    return [VendorExport.parse(client.tenant.id, job) for job in listed]


def open_export_result(client: Caller, result_url: str) -> requests.Response:
    """The gzip NDJSON result as a stream; the caller closes it."""
    return client.request("GET", result_url, endpoint="exports.download", stream=True).response


def _number(value: Any) -> int | None:
    """A count or a number of seconds: a JSON number, or one sent as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return int(value) if isinstance(value, int | float) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
