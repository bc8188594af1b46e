"""A real `dagster-webserver` over a scratch instance, and what its GraphQL API says of the tenants'
partitions: what a person sees in the UI's asset and check pages."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tasklane_sim.server import free_port
from tests.support.dagster_daemon import BIN, wait_for_webserver

PARTITIONS = """
query Partitions($keys: [AssetKeyInput!], $parts: [String!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetPartitionStatuses {
      ... on DefaultPartitionStatuses { materializedPartitions unmaterializedPartitions failedPartitions }
    }
    latestMaterializationByPartition(partitions: $parts) { partition runId }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          partitionStatuses {
            ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions }
          }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class AssetView:
    """One asset as the UI shows it: partition states, each partition's latest run, checks' partitions."""

    materialized: set[str]
    missing: set[str]
    latest_run: dict[str, str | None]
    checks_passed: dict[str, set[str]]  # check name -> partitions whose latest result passed
    checks_failed: dict[str, set[str]]


@dataclass(frozen=True)
class Webserver:
    url: str

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        answer.raise_for_status()
        body = answer.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def assets(self, streams: list[str], partitions: list[str]) -> dict[str, AssetView]:
        nodes = self.query(PARTITIONS, {"keys": [{"path": [s]} for s in streams], "parts": partitions})["assetNodes"]
        views = {}
        for node in nodes:
            statuses = node["assetPartitionStatuses"]
            checks = node["assetChecksOrError"]["checks"]
            views[node["assetKey"]["path"][-1]] = AssetView(
                materialized=set(statuses["materializedPartitions"]),
                missing=set(statuses["unmaterializedPartitions"]),
                latest_run={m["partition"]: m["runId"] for m in node["latestMaterializationByPartition"] if m},
                checks_passed={
                    c["name"]: set((c["partitionStatuses"] or {}).get("succeededPartitions", [])) for c in checks
                },
                checks_failed={
                    c["name"]: set((c["partitionStatuses"] or {}).get("failedPartitions", [])) for c in checks
                },
            )
        return views


@contextmanager
def running_webserver(directory: Path, env: dict[str, str]) -> Iterator[Webserver]:
    """`dagster-webserver` over `directory`'s workspace.yaml and the instance of `env`."""
    port, log = free_port(), directory / "webserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_webserver(url, process, log.read_text)
        yield Webserver(url)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
