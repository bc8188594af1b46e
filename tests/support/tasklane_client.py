"""A thin Tasklane client for assertions: the public API as a tenant speaks it."""

from __future__ import annotations

from typing import Any

import requests


class TasklaneClient:
    """What a test needs to speak the public API as a tenant would, with no retries or cleverness."""

    def __init__(self, base_url: str, workspace: str, token: str | None) -> None:
        self.base_url, self.workspace = base_url, workspace
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/v1/workspaces/{self.workspace}/{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url(path), **kwargs)

    def list_all(self, stream: str, **params: Any) -> list[dict[str, Any]]:
        """Page through a listing with the maximum page size; returns every record in order."""
        params = {"limit": 100, **params}
        records: list[dict[str, Any]] = []
        while True:
            response = self.get(stream, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            records.extend(body["data"])
            if body["next_cursor"] is None:
                return records
            params["cursor"] = body["next_cursor"]
