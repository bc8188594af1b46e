"""A small client for the simulator's admin API, used by tests, benchmarks and the demo."""

from __future__ import annotations

import json
from typing import Any

import requests


class SimAdminClient:
    def __init__(self, base_url: str, admin_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {admin_token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base_url}/_sim{path}", timeout=120, **kwargs)
        if not response.ok:
            raise RuntimeError(f"simulator admin {method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def truth(self, workspace: str, resource: str) -> list[dict[str, Any]]:
        """Every record of the resource as of now, tombstones included, ordered by id."""
        response = self.session.get(
            f"{self.base_url}/_sim/workspaces/{workspace}/truth/{resource}", timeout=300, stream=True
        )
        response.raise_for_status()
        return [json.loads(line) for line in response.iter_lines() if line]

    def counters(self, workspace: str) -> dict[str, Any]:
        return self._call("GET", f"/workspaces/{workspace}/counters")

    def reset_counters(self, workspace: str) -> None:
        self._call("POST", f"/workspaces/{workspace}/counters/reset")

    def knobs(self, workspace: str) -> dict[str, Any]:
        return self._call("GET", f"/workspaces/{workspace}/knobs")

    def set_knobs(self, workspace: str, **knobs: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/workspaces/{workspace}/knobs", json=knobs)

    def add_token(self, workspace: str, token: str) -> None:
        self._call("POST", f"/workspaces/{workspace}/tokens", json={"token": token})

    def revoke_token(self, workspace: str, token: str) -> None:
        self._call("POST", f"/workspaces/{workspace}/tokens/revoke", json={"token": token})

    def schema_change(self, workspace: str, **change: Any) -> dict[str, Any]:
        return self._call("POST", f"/workspaces/{workspace}/schema-changes", json=change)

    def expire_cursors(self, workspace: str) -> None:
        self._call("POST", f"/workspaces/{workspace}/cursors/expire")

    def mutate(self, workspace: str, **burst: Any) -> dict[str, int]:
        return self._call("POST", f"/workspaces/{workspace}/mutations", json=burst)

    def purge_tombstones(self, workspace: str) -> int:
        return self._call("POST", f"/workspaces/{workspace}/tombstones/purge")["purged"]

    def settle(self, workspace: str) -> int:
        return self._call("POST", f"/workspaces/{workspace}/settle")["applied"]

    def spend(self, workspace: str, calls: int) -> int:
        return self._call("POST", f"/workspaces/{workspace}/spend", json={"calls": calls})["remaining"]

    def fire_webhook_event(self, workspace: str, event_type: str, resource_id: str) -> int:
        return self._call(
            "POST", f"/workspaces/{workspace}/webhook-events", json={"type": event_type, "resource_id": resource_id}
        )["queued"]

    def hold_exports(self, workspace: str, hold: bool = True) -> None:
        """Keep the workspace's exports open (hold) or let them complete (hold=False)."""
        self._call("POST", f"/workspaces/{workspace}/exports/hold", json={"hold": hold})

    def exports(self, workspace: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/workspaces/{workspace}/exports")["data"]

    def craft_replies(self, workspace: str, resource: str, *replies: dict[str, Any]) -> int:
        """Queue hostile answers for the resource's next listing requests, one each (e.g.
        `{"mode": "cursor_loop"}`, `{"status": 200, "body": "not json"}`); returns how many are queued."""
        return self._call(
            "POST", f"/workspaces/{workspace}/crafted-replies", json={"resource": resource, "replies": list(replies)}
        )["queued"]

    def crafted_replies(self, workspace: str) -> dict[str, Any]:
        """The answers still queued, by resource, and the bytes unbounded pages sent so far."""
        return self._call("GET", f"/workspaces/{workspace}/crafted-replies")

    def clear_crafted_replies(self, workspace: str) -> dict[str, int]:
        """Drop every queued crafted reply; returns how many answers each resource had left."""
        return self._call("DELETE", f"/workspaces/{workspace}/crafted-replies")["unused"]

    def add_workspace(self, spec: dict[str, Any]) -> None:
        self._call("POST", "/workspaces", json=spec)
