"""What a scrape of the metrics endpoint reports, computed from the control store (and the Dagster
instance's daemon heartbeats) when Prometheus asks, as Prometheus' guidance for exporters has it:
nothing is pushed, nothing goes stale, and a counter is a total the store keeps, so it survives any
restart of the endpoint.

Per-tenant labels only on what an operator filters or is paged by tenant: its calls by outcome, its
state, its budget, when it last synced, and the few series that exist only while something is wrong
(a failure, a deferral, drift, an open export). The rest is summed per stream, tier or status.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline_assets.freshness import statuses
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tiers import Tier

CALL_OUTCOMES = {  # outcome label: the totals column (call_ledger.FIELDS); "ok" is what remains
    "not_modified": "not_modified",
    "rate_limited": "rate_limited",
    "auth_error": "auth_errors",
    "client_error": "client_errors",
    "server_error": "server_errors",
    "network_error": "network_errors",
}
ALWAYS_SHOWN = ("ok", "not_modified", "rate_limited")  # error outcomes appear once they happen


def tenant_state(fresh: bool, failing: bool, deferred: bool) -> str:
    """One state per tenant: stale whatever else is true (it pages), then failing, then deferred."""
    if not fresh:
        return "stale"
    if failing:
        return "failing"
    return "deferred" if deferred else "fresh"


@dataclass
class Families:
    """The metric families of one scrape, by name."""

    found: dict[str, Metric]

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        family = self.found.setdefault(name, GaugeMetricFamily(name, doc, labels=list(labels)))
        assert isinstance(family, GaugeMetricFamily)
        return family

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
        family = self.found.setdefault(name, CounterMetricFamily(name, doc, labels=list(labels)))
        assert isinstance(family, CounterMetricFamily)
        return family


class StoreCollector(Collector):
    """Every family, from a few queries per 500 tenants."""

    def __init__(
        self,
        state: SharedState,
        registry: TenantRegistry,
        tiers: Mapping[str, Tier],
        heartbeats: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.state, self.registry, self.tiers, self.heartbeats = state, registry, tiers, heartbeats

    def collect(self) -> Iterator[Metric]:
        families = Families({})
        now = time.time()
        self._tenants(families, now)
        self._totals(families)
        self._exports(families, now)
        self._deferrals_due(families, now)
        if self.heartbeats is not None:
            beats = families.gauge(
                "dripfeed_daemon_heartbeat_timestamp_seconds",
                "When each of the Dagster daemon's loops last reported alive (Unix seconds).",
                ("daemon",),
            )
            for daemon, at in sorted(self.heartbeats().items()):
                beats.add_metric([daemon], at)
        yield from families.found.values()

    def _tenants(self, families: Families, now: float) -> None:
        tenants = {t.id: t for t in self.registry.tenants().values() if t.enabled}
        checks = self.state.tenant_checks.of_tenants(tenants)
        waiting = self.state.deferrals.waiting(now)
        budget = self.state.budget
        windows = budget.windows(tenants)
        calls = self.state.sync_totals.calls(tenants)
        state = families.gauge(
            "dripfeed_tenant_state",
            "1 for each tenant, labelled with its state: stale (older than its tier allows), failing "
            "(its last probe or sync failed), deferred (waiting for its rate window) or fresh.",
            ("tenant", "tier", "state"),
        )
        by_state: Counter[tuple[str, str]] = Counter()
        synced = families.gauge(
            "dripfeed_last_complete_sync_timestamp_seconds",
            "When the tenant's tasks were last known complete: its last complete sync began, or a probe "
            "found them unchanged (Unix seconds; time() - this is the age its tier's allowance bounds).",
            ("tenant",),
        )
        checked = families.gauge(
            "dripfeed_last_check_timestamp_seconds",
            "When a tier schedule last probed the tenant, whatever it found (Unix seconds).",
            ("tenant",),
        )
        for status in statuses(self.registry, self.state, set(tenants), now, self.tiers):
            check = checks.get(status.tenant)
            failing = check is not None and check.failing_since is not None
            name = tenant_state(status.fresh, failing, status.tenant in waiting)
            state.add_metric([status.tenant, status.tier, name], 1)
            by_state[(status.tier, name)] += 1
            complete = max(filter(None, (status.last_synced_at, status.last_checked_at)), default=None)
            if complete is not None:
                synced.add_metric([status.tenant], complete)
            if check is not None and check.checked_at is not None:
                checked.add_metric([status.tenant], check.checked_at)
        counts = families.gauge(
            "dripfeed_tenants", "Tenants by tier and state (the sum of dripfeed_tenant_state).", ("tier", "state")
        )
        for tier in self.tiers:
            for name in ("fresh", "stale", "failing", "deferred"):
                counts.add_metric([tier, name], by_state[(tier, name)])
        failing_family = families.gauge(
            "dripfeed_tenant_failing",
            "1 while the tenant's last probe or sync failed, labelled with the failure's class "
            "(auth, config, schema_drift, vendor_outage, bug); absent otherwise.",
            ("tenant", "error_class"),
        )
        for tenant, check in sorted(checks.items()):
            if check.failing_since is not None and tenant in tenants:
                failing_family.add_metric([tenant, check.error_class or "bug"], 1)
        deferred = families.gauge(
            "dripfeed_tenant_deferred_until_timestamp_seconds",
            "While a tenant waits for its rate window: when it may call Tasklane again (Unix seconds); "
            "vendor_block is true when Tasklane asked for the wait (a 429 or a lockout).",
            ("tenant", "vendor_block"),
        )
        for tenant, deferral in sorted(waiting.items()):
            if tenant in tenants:
                deferred.add_metric([tenant, str(deferral.vendor_block).lower()], deferral.resume_at)
        self._calls(families, calls)
        left = families.gauge(
            "dripfeed_budget_left_calls",
            "Calls dripfeed may still make for the tenant in its current rate window (its share of what "
            "the vendor's headers say is left); absent when no window is open.",
            ("tenant",),
        )
        remaining = families.gauge(
            "dripfeed_vendor_remaining_calls",
            "What the vendor's X-RateLimit-Remaining last said is left in the tenant's window, less "
            "dripfeed's calls since; absent when no window is open.",
            ("tenant",),
        )
        resets = families.gauge(
            "dripfeed_budget_window_reset_timestamp_seconds",
            "When the tenant's current rate window resets (Unix seconds).",
            ("tenant",),
        )
        for tenant_id, window in sorted(windows.items()):
            tenant = tenants.get(tenant_id)
            if tenant is None:
                continue
            calls_left, reset = budget.calls_left(tenant, now, window)
            if reset is None:
                continue
            resets.add_metric([tenant_id], reset)
            if calls_left is not None:
                left.add_metric([tenant_id], calls_left)
            if window["vendor_cap"] is not None:
                remaining.add_metric([tenant_id], max(0, window["vendor_cap"] - (window["spent"] or 0)))

    @staticmethod
    def _calls(families: Families, calls: Mapping[str, Mapping[str, float]]) -> None:
        by_outcome = families.counter(
            "dripfeed_api_calls",
            "Calls to Tasklane by outcome: ok, not_modified (304, not counted by the vendor), "
            "rate_limited (429), and by error class auth_error (401, 403), client_error (other 4xx), "
            "server_error (5xx), network_error (no answer).",
            ("tenant", "outcome"),
        )
        retries = families.counter("dripfeed_api_retries", "Calls that were a retry of a failed one.", ("tenant",))
        waited = families.counter(
            "dripfeed_budget_wait_seconds", "Seconds the tenant's calls waited for its rate budget.", ("tenant",)
        )
        for tenant, sums in sorted(calls.items()):
            outcomes = {label: sums[column] for label, column in CALL_OUTCOMES.items()}
            unclassified = sums["errors"] - sum(sums[c] for c in CALL_OUTCOMES.values() if c.endswith("_errors"))
            outcomes["error"] = unclassified  # calls a release before error classes recorded
            outcomes["ok"] = sums["calls"] - sum(outcomes.values())
            for label, value in outcomes.items():
                if value or label in ALWAYS_SHOWN:
                    by_outcome.add_metric([tenant, label], value)
            retries.add_metric([tenant], sums["retries"])
            waited.add_metric([tenant], sums["wait_seconds"])

    def _totals(self, families: Families) -> None:
        records = families.counter("dripfeed_records_synced", "Records upserted by syncs, all tenants.", ("stream",))
        tombstones = families.counter(
            "dripfeed_tombstones_synced", "Tombstones (deletes) applied by syncs, all tenants.", ("stream",)
        )
        rows = families.gauge(
            "dripfeed_warehouse_rows", "Rows in the stream's table after each tenant's last sync, summed.", ("stream",)
        )
        drift = families.gauge(
            "dripfeed_drift_fields",
            "Fields whose type or presence differed from the contract in the last sync of the tenant's "
            "stream; absent when none did.",
            ("tenant", "stream"),
        )
        summed: dict[str, Counter[str]] = {}
        for total in self.state.sync_totals.streams():
            sums = summed.setdefault(total.stream, Counter())
            sums.update(records=total.records, tombstones=total.tombstones, rows=total.rows or 0)
            if total.drift_fields:
                drift.add_metric([total.tenant, total.stream], total.drift_fields)
        for stream, sums in sorted(summed.items()):
            records.add_metric([stream], sums["records"])
            tombstones.add_metric([stream], sums["tombstones"])
            rows.add_metric([stream], sums["rows"])
        ticks = families.counter("dripfeed_tier_ticks", "Ticks of the tier's schedule that probed.", ("tier",))
        probes = families.counter("dripfeed_tier_probes", "Tenants probed by the tier's schedule.", ("tier",))
        runs = families.counter(
            "dripfeed_tier_runs_requested", "Runs the tier's schedule requested (tenants that changed).", ("tier",)
        )
        for tier in self.state.sync_totals.tiers():
            ticks.add_metric([tier.tier], tier.ticks)
            probes.add_metric([tier.tier], tier.probes)
            runs.add_metric([tier.tier], tier.runs_requested)

    def _exports(self, families: Families, now: float) -> None:
        jobs = self.state.export_jobs.of_tenants(t.id for t in self.registry.tenants().values())
        by_status = families.gauge("dripfeed_export_jobs", "History export jobs by status.", ("status",))
        open_since = families.gauge(
            "dripfeed_export_open_since_timestamp_seconds",
            "When each open history export was first submitted (Unix seconds); absent once it is done.",
            ("tenant", "stream"),
        )
        counts = Counter(str(job.status) for job in jobs.values())
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
        for (tenant, stream), job in sorted(jobs.items()):
            if job.status.is_open:
                open_since.add_metric([tenant, stream], job.submitted_at)
        polls_due = [now - job.next_poll_at for job in jobs.values() if job.status.is_open and job.next_poll_at <= now]
        self._oldest_due(families).add_metric(["exports"], max(polls_due, default=0.0))

    def _deferrals_due(self, families: Families, now: float) -> None:
        due = self.state.deferrals.due(now)
        self._oldest_due(families).add_metric(["deferrals"], max((now - d.resume_at for d in due), default=0.0))

    @staticmethod
    def _oldest_due(families: Families) -> GaugeMetricFamily:
        return families.gauge(
            "dripfeed_oldest_due_seconds",
            "How long the oldest piece of waiting work has been due and not yet taken up: a deferred "
            "tenant whose window has reset (deferrals), an open export whose next poll is due (exports).",
            ("queue",),
        )
