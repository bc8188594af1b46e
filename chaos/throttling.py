"""Throttling and lockouts: beside healthy tenants, a tenant at a tenth of its budget, a tenant whose
customer spent the whole window, a tenant the vendor locked out (its customer's script drew the 429s),
a tenant whose token was revoked and a tenant in a 5xx storm. Nobody may trigger a lockout, the
healthy tenants' runs must cost the same calls and about the same time as without the bad tenants,
and no tick of any schedule or sensor may fail because of them."""

from __future__ import annotations

import statistics
from pathlib import Path

import requests

from tasklane_sim import SimServer

from .harness import Location, new_secret, simulator, workspace
from .ticks import evaluate_every_tick, webhook_receiver

VENDOR_LIMIT = 200  # calls an hour, for the bad tenants: small enough to spend
BIG = {"users": 20, "projects": 10, "tasks": 3000}


def lock_out(base_url: str, tenant: str, token: str, threshold: int) -> None:
    """What the customer's own script does once its window is spent: knock until the vendor locks it out."""
    for _ in range(threshold + 2):
        requests.get(
            f"{base_url}/v1/workspaces/{tenant}/users", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


def calls(sim: SimServer, tenant: str) -> int:
    """Every call the simulator answered for the tenant, 304s included."""
    return sim.admin.counters(tenant)["totals"]["requests"]


def run(scratch: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    healthy = [f"healthy-{n:02d}" for n in range(2 if quick else 4)]
    bad = {
        "tenth-budget": {"budget_per_hour": VENDOR_LIMIT // 10},
        "window-spent": {},
        "locked-out": {},
        "revoked-token": {},
        "vendor-storm": {},
    }
    specs = [workspace(t, new_secret(f"tok-{t}")) for t in healthy]
    specs += [workspace(t, new_secret(f"tok-{t}"), records=BIG, rate_limit=VENDOR_LIMIT) for t in bad]
    rounds = 1 if quick else 3
    with simulator(specs) as sim, webhook_receiver() as hook:
        location = Location(
            scratch / "throttling",
            sim,
            {t: {} for t in healthy},
            extra_env={"DRIPFEED_ALERT_WEBHOOK_URL": hook},
        )
        for _ in range(2):  # the first sync, then one that reads the overlap and remembers its ETags
            location.sync_all(healthy)
        for tenant, entry in bad.items():
            location.add_tenant(tenant, **entry)
        with location.instance() as instance:
            instance.add_dynamic_partitions("tenants", list(bad))
        sim.admin.spend("window-spent", VENDOR_LIMIT)
        sim.admin.spend("locked-out", VENDOR_LIMIT)
        lock_out(sim.base_url, "locked-out", location.tokens["locked-out"], threshold=20)
        sim.admin.revoke_token("revoked-token", location.tokens["revoked-token"])
        sim.admin.set_knobs("vendor-storm", faults={"error_rate": 1.0})
        lockouts_before = {t: sim.admin.counters(t)["lockouts"] for t in [*healthy, *bad]}

        alone_walls: list[float] = []
        beside_walls: list[float] = []
        alone_calls: list[int] = []
        beside_calls: list[int] = []
        bad_exit_codes: dict[str, int] = {}
        for _ in range(rounds):  # interleaved, so that a drifting machine weighs on both alike
            location.entries = {t: e for t, e in location.entries.items() if t in healthy}
            location.write_tenants()  # the bad tenants do not exist
            before = sum(calls(sim, t) for t in healthy)
            runs = location.sync_all(healthy)
            alone_walls.append(max(r.wall for r in runs.values()))
            alone_calls.append(sum(calls(sim, t) for t in healthy) - before)

            for tenant, entry in bad.items():
                location.add_tenant(tenant, **entry)
            location.write_tenants()
            # Their runs start first, meet their throttle or failure, and end; then the healthy
            # tenants run while the bad ones wait (deferred, blocked by the vendor, locked out).
            bad_runs = {t: location.launch_job(t, tags={"dripfeed/tenant": t}) for t in bad}
            bad_exit_codes = {t: r.wait() for t, r in bad_runs.items()}
            before = sum(calls(sim, t) for t in healthy)
            runs = location.sync_all(healthy)
            beside_walls.append(max(r.wall for r in runs.values()))
            beside_calls.append(sum(calls(sim, t) for t in healthy) - before)

        ticks = evaluate_every_tick(location)
        with location.instance() as instance:
            deferred = {
                r.dagster_run.tags.get("dagster/partition")
                for r in instance.get_run_records()
                if "dripfeed/deferred_until" in r.dagster_run.tags
            }
        lockouts = sum(sim.admin.counters(t)["lockouts"] - lockouts_before[t] for t in lockouts_before)
        customer_lockouts = lockouts_before["locked-out"]
    ratio = statistics.median(beside_walls) / statistics.median(alone_walls)
    if ticks.failures:
        print("    tick failures:\n      " + "\n      ".join(ticks.failures), flush=True)
    failed_bad = sorted(t for t, code in bad_exit_codes.items() if code != 0)
    return [
        ("bad tenants beside the healthy ones", str(len(bad)), "", True),
        ("lockouts the customer's own script caused (the setup)", str(customer_lockouts), "1", customer_lockouts == 1),
        ("lockouts dripfeed triggered", str(lockouts), "0", lockouts == 0),
        (
            "healthy tenants' calls, alone → beside the bad",
            f"{statistics.median(alone_calls):.0f} → {statistics.median(beside_calls):.0f}",
            "equal",
            alone_calls == beside_calls,
        ),
        (
            f"healthy tenants' wall, bad ones waiting ÷ alone (median of {rounds}, interleaved)",
            f"{ratio:.2f}",
            "≤ 1.5",
            ratio <= 1.5,
        ),
        ("throttled tenants' runs that deferred", ", ".join(sorted(deferred)) or "none", "all 3", len(deferred) == 3),
        (
            "bad tenants' runs that failed (revoked token, 5xx storm; the throttled defer)",
            ", ".join(failed_bad) or "none",
            "",
            True,
        ),
        (
            "ticks evaluated (every schedule and sensor, the failure sensor per failed run)",
            str(ticks.evaluated),
            "",
            True,
        ),
        ("tick failures caused by another tenant", str(len(ticks.failures)), "0", not ticks.failures),
        ("alerts posted to the webhook", str(ticks.alerts), "≥ 1", ticks.alerts >= 1),
    ]
