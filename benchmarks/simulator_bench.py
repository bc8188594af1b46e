"""The simulator's ceiling: start-up time and memory for 1,000,000 tasks, records/s to one client."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil
import requests

from tasklane_sim import SimServer
from tasklane_sim.server import free_port, wait_until_healthy

from .report import Section

TOKEN = "bench-token"
BIG = 1_000_000
PAGES = 3000  # 300,000 records per throughput measurement


def _config(tasks: int, data_dir: str) -> dict:
    return {
        "admin_token": "bench-admin",
        "seed": 1,
        "data_dir": data_dir,
        "workspaces": [
            {
                "id": "big",
                "tokens": [TOKEN],
                "records": {"users": 5000, "projects": 1000, "tasks": tasks},
                "rate_limit": 10**9,
                "visibility_lag_seconds": 0,
            }
        ],
    }


def _peak_rss_mb(process: psutil.Process) -> float:
    """VmHWM: the resident-memory high-water mark the kernel kept for the process."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return process.memory_info().rss / 2**20


def requests_getter(base_url: str, headers: dict[str, str]) -> Callable[[str, dict], bytes]:
    """GET with a bare `requests` session (keep-alive): the client every connector is compared with."""
    session = requests.Session()
    session.headers.update(headers)
    return lambda path, params: session.get(f"{base_url}{path}", params=params, timeout=30).content


def stdlib_getter(base_url: str, headers: dict[str, str]) -> Callable[[str, dict], bytes]:
    """GET with the standard library's `http.client` (keep-alive): far less client work per call than requests."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)

    def get(path: str, params: dict) -> bytes:
        connection.request("GET", f"{path}?{urlencode(params)}", headers=headers)
        return connection.getresponse().read()

    return get


def _page_through(get: Callable[[str, dict], bytes], pages: int, path: str) -> tuple[float, int]:
    params: dict[str, object] = {"limit": 100}
    records = 0
    started = time.perf_counter()
    for _ in range(pages):
        body = json.loads(get(path, params))
        records += len(body["data"])
        if not body.get("next_cursor"):
            params = {"limit": 100}
        else:
            params["cursor"] = body["next_cursor"]
    return records / (time.perf_counter() - started), records


def run() -> Section:
    section = Section("Simulator: the ceiling every connector figure is compared with")
    with tempfile.TemporaryDirectory() as scratch:
        server = SimServer(_config(BIG, scratch), subprocess_mode=True)
        started = time.perf_counter()
        server.start(timeout=300)
        startup = time.perf_counter() - started
        process = psutil.Process(server.pid)
        section.row("start-up, 1,000,000 tasks (+5,000 users, 1,000 projects)", f"{startup:.1f} s", "< 60 s")
        section.row("peak memory after start-up (RSS high-water mark)", f"{_peak_rss_mb(process):.0f} MB", "< 1,500 MB")

        headers = {"Authorization": f"Bearer {TOKEN}"}
        first = requests.get(
            f"{server.base_url}/v1/workspaces/big/tasks", params={"limit": 100}, headers=headers, timeout=30
        )
        page_body = first.content
        path = "/v1/workspaces/big/tasks"
        sim_rate, _ = _page_through(requests_getter(server.base_url, headers), PAGES, path)
        stdlib_rate, _ = _page_through(stdlib_getter(server.base_url, headers), PAGES, path)
        section.row("peak memory after serving 300,000 records", f"{_peak_rss_mb(process):.0f} MB", "< 1,500 MB")

        store_rate = _store_rate(Path(scratch) / "big.sqlite3")
        server.stop()

        body_file = Path(scratch) / "page.json"
        body_file.write_bytes(page_body)
        port = free_port()
        static = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.static_page_server", "--port", str(port), "--body", str(body_file)]
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", 30, static)  # it answers every path
            static_rate, _ = _page_through(requests_getter(f"http://127.0.0.1:{port}", {}), PAGES, "/")
        finally:
            static.terminate()
            static.wait(10)

        decode_rate = _decode_rate(page_body)

    section.table(
        ["path (100-record pages, one client, keep-alive)", "records/s", "vs. simulator"],
        [
            [
                "client JSON decode only (`json.loads` of a page)",
                f"{decode_rate:,.0f}",
                f"{decode_rate / sim_rate:.1f}×",
            ],
            ["SQLite keyset page read only, in-process", f"{store_rate:,.0f}", f"{store_rate / sim_rate:.1f}×"],
            [
                "uvicorn + httptools serving one constant page (HTTP ceiling)",
                f"{static_rate:,.0f}",
                f"{static_rate / sim_rate:.2f}×",
            ],
            [
                "tasklane-sim read by a bare `http.client` loop instead (less client work per call)",
                f"{stdlib_rate:,.0f}",
                f"{stdlib_rate / sim_rate:.2f}×",
            ],
            ["**tasklane-sim** (auth, limits, cursor, ETag, SQLite seek)", f"**{sim_rate:,.0f}**", "1.00×"],
        ],
    )
    section.row("simulator records/s to one client", f"{sim_rate:,.0f}", "≥ 50,000")
    section.note(
        f"Simulator and peers each run in their own process; the client is a bare `requests` loop "
        f"reading {PAGES:,} pages of 100 tasks (~{len(page_body) / 1024:.0f} KB each). "
        "The constant-page server does no work per request, so the gap to it is the simulator's own cost. "
        "The requests loop is bound by its own client work as much as by the simulator: read through "
        "`http.client`, the same simulator serves the row above."
    )
    return section


def _store_rate(db_path: Path) -> float:
    """Keyset pages straight from the workspace's SQLite file: the storage ceiling."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    position = (-(2**62), "")
    records = 0
    started = time.perf_counter()
    for _ in range(PAGES):
        rows = db.execute(
            "SELECT id, updated_ms, body FROM tasks WHERE (updated_ms, id) > (?, ?) AND deleted = 0 "
            "ORDER BY updated_ms, id LIMIT 101",
            position,
        ).fetchall()[:100]
        records += len(rows)
        position = (rows[-1][1], rows[-1][0])
    db.close()
    return records / (time.perf_counter() - started)


def _decode_rate(page: bytes) -> float:
    started = time.perf_counter()
    for _ in range(PAGES):
        json.loads(page)
    return PAGES * 100 / (time.perf_counter() - started)
