"""The API resource: its overhead against a bare requests loop, and how fully it spends a budget."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import requests
import yaml

from resources.tasklane.errors import parse_retry_after
from tasklane_sim import SimServer
from tests.support.resources import Resources, make_api

from .report import Section, run_parts

TOKEN = "bench-token"
ROUNDS = 3


def _sim_config(tasks: int, **knobs: object) -> dict:
    workspace = {"id": "big", "tokens": [TOKEN], "records": {"tasks": tasks}, "visibility_lag_seconds": 0, **knobs}
    return {"admin_token": "bench-admin", "seed": 1, "workspaces": [workspace]}


def _api(sim: SimServer, scratch: Path, **tenant: object) -> Resources:
    os.environ["TASKLANE_TOKEN_BIG"] = TOKEN
    path = scratch / f"tenants-{time.monotonic_ns()}.yaml"
    path.write_text(
        yaml.safe_dump({"tenants": [{"id": "big", "tier": "hourly", "token_env": "TASKLANE_TOKEN_BIG", **tenant}]})
    )
    return make_api(
        base_url=sim.base_url, tenants_file=str(path), state=str(scratch / f"state-{time.monotonic_ns()}.db")
    )


def _bare_listing(base_url: str) -> tuple[int, float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    params: dict[str, object] = {"limit": 100, "include_deleted": "true"}
    records, started = 0, time.perf_counter()
    while True:
        body = session.get(f"{base_url}/v1/workspaces/big/tasks", params=params, timeout=30).json()
        records += len(body["data"])
        if not body["next_cursor"]:
            return records, time.perf_counter() - started
        params["cursor"] = body["next_cursor"]


def _resource_listing(api: Resources) -> tuple[int, float]:
    client = api.client("big")
    started = time.perf_counter()
    records = sum(len(page.records) for page in client.list_pages("tasks", None))
    return records, time.perf_counter() - started


def overhead(section: Section, scratch: Path) -> None:
    with SimServer(_sim_config(100_000, rate_limit=10**9), subprocess_mode=True) as sim:
        api = _api(sim, scratch)
        rates: dict[str, list[float]] = {"bare": [], "resource": []}
        for _ in range(ROUNDS):  # interleaved, so drift on a busy machine hits both alike
            for name, run in (
                ("bare", lambda: _bare_listing(sim.base_url)),
                ("resource", lambda: _resource_listing(api)),
            ):
                records, seconds = run()
                rates[name].append(records / seconds)
    bare, through = statistics.median(rates["bare"]), statistics.median(rates["resource"])
    section.table(
        ["listing 100,000 tasks, 100 per page (median of 3, interleaved)", "records/s", "vs. bare loop"],
        [
            ["bare `requests` loop (keep-alive, no budget, no retries): the ceiling", f"{bare:,.0f}", "1.00"],
            [
                "**Resources** (budget, ledger, retries, ETag, validation)",
                f"**{through:,.0f}**",
                f"**{through / bare:.2f}**",
            ],
        ],
    )
    section.row("resource records/s ÷ bare loop records/s", f"{through / bare:.2f}", "≥ 0.9")


def _windows(sim: SimServer, first: int, count: int) -> list[int]:
    counted = {int(k): v for k, v in sim.admin.counters("big")["counted_by_window"].items()}
    return [counted.get(first + i * WINDOW, 0) for i in range(count)]


WINDOW, LIMIT, SHARE = 5, 100, 0.6
BUDGET = int(LIMIT * SHARE)
FULL_WINDOWS = 3


def _run_for_windows(sim: SimServer, consume: callable, other_client_spend: int = 0) -> tuple[list[int], int, int]:
    """Start at a window boundary, run `consume` through FULL_WINDOWS full windows after a warm-up one."""
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)
    first_full = int(time.time() // WINDOW) * WINDOW + WINDOW
    deadline = first_full + FULL_WINDOWS * WINDOW
    stop = threading.Event()
    spender = None
    if other_client_spend:

        def spend_each_window() -> None:
            while not stop.is_set():
                sim.admin.spend("big", other_client_spend)
                stop.wait(WINDOW - time.time() % WINDOW + 0.01)

        spender = threading.Thread(target=spend_each_window, daemon=True)
        spender.start()
    sim.admin.reset_counters("big")
    consume(lambda: time.time() >= deadline)
    stop.set()
    totals = sim.admin.counters("big")
    ours = [counted - other_client_spend for counted in _windows(sim, first_full, FULL_WINDOWS)]
    return ours, totals["totals"].get("rate_limited", 0), totals["lockouts"]


def _resource_consumer(api: Resources) -> callable:
    def consume(done: callable) -> None:
        client = api.client("big")
        while not done():
            for _ in client.list_pages("tasks", None):
                if done():
                    break

    return consume


def _hammer_consumer(base_url: str) -> callable:
    """What most connectors do: call as fast as possible, sleep Retry-After on a 429."""

    def consume(done: callable) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        while not done():
            response = session.get(f"{base_url}/v1/workspaces/big/users", timeout=30)
            if response.status_code == 429:
                time.sleep(min(parse_retry_after(response.headers.get("Retry-After")) or 1, WINDOW))

    return consume


def _paced_consumer(base_url: str) -> callable:
    """A per-process token bucket at the budget's rate (pyrate-limiter style), honouring Retry-After."""

    def consume(done: callable) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        interval = WINDOW / BUDGET
        next_call = time.monotonic()
        while not done():
            time.sleep(max(next_call - time.monotonic(), 0))
            next_call += interval
            response = session.get(f"{base_url}/v1/workspaces/big/users", timeout=30)
            if response.status_code == 429:
                time.sleep(min(parse_retry_after(response.headers.get("Retry-After")) or 1, WINDOW))
                next_call = time.monotonic()

    return consume


def utilisation(section: Section, scratch: Path) -> None:
    rows = []
    with SimServer(_sim_config(200_000, rate_limit=LIMIT, window_seconds=WINDOW), subprocess_mode=True) as sim:
        runs = [
            ("**Resources**, budget 60% of the limit", _resource_consumer(_api(sim, scratch, budget_share=SHARE)), 0),
            (
                "**Resources**, another client spends 50 calls each window",
                _resource_consumer(_api(sim, scratch, budget_share=SHARE)),
                50,
            ),
            ("peer: token bucket at the budget's rate", _paced_consumer(sim.base_url), 0),
            ("peer: token bucket, another client spends 50 calls each window", _paced_consumer(sim.base_url), 50),
            ("peer: as fast as possible, sleep on Retry-After", _hammer_consumer(sim.base_url), 0),
        ]
        for label, consumer, other in runs:
            spent, rejected, lockouts = _run_for_windows(sim, consumer, other)
            allowed = min(BUDGET, LIMIT - other)
            ratios = " / ".join(f"{s / allowed:.2f}" for s in spent)
            rows.append([label, " / ".join(map(str, spent)), str(allowed), ratios, str(rejected), str(lockouts)])
            if label.startswith("**Resources**, budget"):
                section.row(
                    "budget utilisation, 3 full windows (calls ÷ budget), zero 429s",
                    f"{min(s / BUDGET for s in spent):.2f} min, {rejected} × 429",
                    "≥ 0.95, 0 × 429",
                )
    section.table(
        [
            "who calls (vendor limit 100 per 5 s window)",
            "its calls per window",
            "may spend",
            "used",
            "429s",
            "lockouts",
        ],
        rows,
    )
    section.note(
        "“May spend” is the budget (60% of the vendor's limit) or, when another client spends too, what the vendor "
        "has left. The bucket peer knows nothing of the other client and runs into 429s; hammering spends the "
        "customer's whole limit and collects 429s every window."
    )


def run() -> Section:
    return run_parts("API resource: overhead and budget use", overhead, utilisation)
