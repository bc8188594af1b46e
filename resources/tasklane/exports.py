"""The bulk export endpoints: submit, look at one job, look at every open job, download a result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from .client import TenantClient


def submit_export(client: TenantClient, stream: str, updated_before: str, key: str) -> dict[str, Any]:
    """Submit (or, with the same key and arguments, find again) the export of `stream` before
    `updated_before`."""
    body = {"resource": stream, "updated_before": updated_before}
    headers = {"Idempotency-Key": key}
    return client.request("POST", "exports", endpoint="exports.create", json_body=body, headers=headers).body


def get_export(client: TenantClient, export_id: str) -> dict[str, Any]:
    return client.request("GET", f"exports/{export_id}", endpoint="exports.get").body


def list_open_exports(client: TenantClient) -> list[dict[str, Any]]:
    params = {"status": "queued,running"}
    return client.request("GET", "exports", endpoint="exports.list", params=params).body["data"]


def open_export_result(client: TenantClient, result_url: str) -> requests.Response:
    """The gzip NDJSON result as a stream; the caller closes it."""
    return client.request("GET", result_url, endpoint="exports.download", stream=True).response
