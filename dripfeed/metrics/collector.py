"""What a scrape of the metrics endpoint reports, computed from the control store (and the Dagster
instance's daemon heartbeats) when Prometheus asks, as Prometheus' guidance for exporters has it:
nothing is pushed, nothing goes stale, and a counter is a total the store keeps, so it survives any
restart of the endpoint.

Per-tenant labels only on what an operator filters or is paged by tenant: its state, when it last
synced, its calls by outcome, its budget and what it waited for it (eight series a tenant), and the
few series that exist only while something is wrong (a failure, a deferral, drift, an open export).
The rest is summed per stream, tier or status.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline_assets.assets import tasks
from pipeline_assets.freshness import tenant_status
from resources.control.call_ledger import ERROR_FIELDS
from resources.control.tenant_checks import TenantCheck
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tenants import Tenant
from resources.tiers import Tier

CALL_OUTCOMES = {  # outcome label: the totals column (call_ledger.FIELDS); "ok" is what remains
    "not_modified": "not_modified",
    "rate_limited": "rate_limited",
    **{f"{error}_error": column for error, column in ERROR_FIELDS.items()},
}
ERROR_COLUMNS = tuple(ERROR_FIELDS.values())
ALWAYS_SHOWN = ("ok", "not_modified", "rate_limited")  # error outcomes appear once they happen
TASKS = tasks.key.path[-1]  # a tenant's freshness is its tasks'


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
    """Every family, from one read of each table it needs (a query per table, not per tenant)."""

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
        listed = self.registry.tenants()  # one read of tenants.yaml for the whole scrape
        tenants = {tenant_id: t for tenant_id, t in listed.items() if t.enabled}
        self._tenants(families, tenants, now)
        self._totals(families)
        self._exports(families, listed.keys(), now)
        self._deferrals_due(families, tenants.keys(), now)
        if self.heartbeats is not None:
            beats = families.gauge(
                "dripfeed_daemon_heartbeat_timestamp_seconds",
                "When each of the Dagster daemon's loops last reported alive (Unix seconds).",
                ("daemon",),
            )
            for daemon, at in sorted(self.heartbeats().items()):
                beats.add_metric([daemon], at)
        yield from families.found.values()

    def _tenants(self, families: Families, tenants: Mapping[str, Tenant], now: float) -> None:
        checks = self.state.tenant_checks.all()  # one query: cheaper than 500 tenants at a time for all of them
        tasks_checks = self.state.stream_checks.of_tenants(stream=TASKS)
        waiting = self.state.deferrals.waiting(now)
        state = families.gauge(
            "dripfeed_tenant_state",
            "1 for each tenant, labelled with its state: stale (older than its tier allows), failing "
            "(its last probe or sync failed), deferred (waiting for its rate window) or fresh.",
            ("tenant", "tier", "state"),
        )
        synced = families.gauge(
            "dripfeed_last_complete_sync_timestamp_seconds",
            "When the tenant's tasks were last known complete: its last complete sync began, or a probe "
            "found them unchanged (Unix seconds; time() - this is the age its tier's allowance bounds).",
            ("tenant",),
        )
        failing = families.gauge(
            "dripfeed_tenant_failing",
            "1 while the tenant's last probe or sync failed, labelled with the failure's class "
            "(auth, config, schema_drift, vendor_outage, bug); absent otherwise.",
            ("tenant", "error_class"),
        )
        by_state: Counter[tuple[str, str]] = Counter()
        for tenant_id, tenant in sorted(tenants.items()):
            check = checks.get(tenant_id) or TenantCheck(tenant_id, known_since=now)
            tasks_check = tasks_checks.get((tenant_id, TASKS))
            status = tenant_status(tenant_id, self.tiers[tenant.tier], tasks_check, check, waiting.get(tenant_id), now)
            name = tenant_state(status.fresh, check.failing_since is not None, tenant_id in waiting)
            state.add_metric([tenant_id, tenant.tier, name], 1)
            by_state[(tenant.tier, name)] += 1
            if tasks_check is not None and tasks_check.complete_at is not None:
                synced.add_metric([tenant_id], tasks_check.complete_at)
            if check.failing_since is not None:
                failing.add_metric([tenant_id, check.error_class or "bug"], 1)
        counts = families.gauge(
            "dripfeed_tenants", "Tenants by tier and state (the sum of dripfeed_tenant_state).", ("tier", "state")
        )
        for tier in self.tiers:
            for name in ("fresh", "stale", "failing", "deferred"):
                counts.add_metric([tier, name], by_state[(tier, name)])
        deferred = families.gauge(
            "dripfeed_tenant_deferred_until_timestamp_seconds",
            "While a tenant waits for its rate window: when it may call Tasklane again (Unix seconds); "
            "vendor_block is true when Tasklane asked for the wait (a 429 or a lockout).",
            ("tenant", "vendor_block"),
        )
        for tenant_id, deferral in sorted(waiting.items()):
            if tenant_id in tenants:
                deferred.add_metric([tenant_id, str(deferral.vendor_block).lower()], deferral.resume_at)
        self._calls(families, self.state.sync_totals.calls(), shown=tenants.keys())
        self._budgets(families, tenants, now)

    def _budgets(self, families: Families, tenants: Mapping[str, Tenant], now: float) -> None:
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
        budget = self.state.budget
        for tenant_id, window in sorted(budget.all_windows().items()):
            tenant = tenants.get(tenant_id)
            if tenant is None:
                continue
            calls_left, reset = budget.calls_left(tenant, now, window)
            if reset is None:
                continue
            if calls_left is not None:
                left.add_metric([tenant_id], calls_left)
            if window["vendor_cap"] is not None:
                remaining.add_metric([tenant_id], max(0, window["vendor_cap"] - (window["spent"] or 0)))

    @staticmethod
    def _calls(families: Families, calls: Mapping[str, Mapping[str, float]], shown: Collection[str]) -> None:
        """Per tenant for the `shown` ones (tenants.yaml's enabled tenants); the retries of all of them,
        so that the sum never goes down when a tenant is disabled."""
        by_outcome = families.counter(
            "dripfeed_api_calls",
            "Calls to Tasklane by outcome: ok, not_modified (304, not counted by the vendor), "
            "rate_limited (429), and by error class auth_error (401, 403), client_error (other 4xx), "
            "server_error (5xx), network_error (no answer).",
            ("tenant", "outcome"),
        )
        waited = families.counter(
            "dripfeed_budget_wait_seconds", "Seconds the tenant's calls waited for its rate budget.", ("tenant",)
        )
        retries = 0.0
        for tenant, sums in sorted(calls.items()):
            retries += sums["retries"]
            if tenant not in shown:
                continue
            outcomes = {label: sums[column] for label, column in CALL_OUTCOMES.items()}
            unclassified = sums["errors"] - sum([sums[column] for column in ERROR_COLUMNS])
            outcomes["error"] = unclassified  # calls a release before error classes recorded
            outcomes["ok"] = sums["calls"] - sum(outcomes.values())
            for label, value in outcomes.items():
                if value or label in ALWAYS_SHOWN:
                    by_outcome.add_metric([tenant, label], value)
            waited.add_metric([tenant], sums["wait_seconds"])
        families.counter("dripfeed_api_retries", "Calls that were a retry of a failed one, all tenants.").add_metric(
            [], retries
        )

    def _totals(self, families: Families) -> None:
        records = families.counter(
            "dripfeed_records_synced", "Records upserted by completed syncs, all tenants.", ("stream",)
        )
        tombstones = families.counter(
            "dripfeed_tombstones_synced", "Tombstones (deletes) applied by completed syncs, all tenants.", ("stream",)
        )
        rows = families.gauge(
            "dripfeed_warehouse_rows", "Rows in the stream's table after each tenant's last sync, summed.", ("stream",)
        )
        for stream, (record_sum, tombstone_sum, row_sum) in sorted(self.state.sync_totals.stream_sums().items()):
            records.add_metric([stream], record_sum)
            tombstones.add_metric([stream], tombstone_sum)
            rows.add_metric([stream], row_sum)
        drift = families.gauge(
            "dripfeed_drift_fields",
            "Fields whose type or presence differed from the contract in the last sync of the tenant's "
            "stream; absent when none did.",
            ("tenant", "stream"),
        )
        for total in self.state.sync_totals.drifted():
            drift.add_metric([total.tenant, total.stream], total.drift_fields)
        ticks = families.counter(
            "dripfeed_tier_ticks", "Ticks of the tier's schedule that served tenants (probed or requested).", ("tier",)
        )
        probes = families.counter("dripfeed_tier_probes", "Tenants probed by the tier's schedule.", ("tier",))
        runs = families.counter(
            "dripfeed_tier_runs_requested", "Runs the tier's schedule requested (tenants that changed).", ("tier",)
        )
        for tier in self.state.sync_totals.tiers():
            ticks.add_metric([tier.tier], tier.ticks)
            probes.add_metric([tier.tier], tier.probes)
            runs.add_metric([tier.tier], tier.runs_requested)

    def _exports(self, families: Families, listed: Collection[str], now: float) -> None:
        jobs = self.state.export_jobs.of_tenants(listed)
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

    def _deferrals_due(self, families: Families, enabled: Collection[str], now: float) -> None:
        """Deferred syncs of tenants.yaml's enabled tenants whose window has reset: while one waits
        longer, deferred_syncs is not resuming it (a resumption queued or running counts too)."""
        due = [d for d in self.state.deferrals.due(now) if d.tenant in enabled]
        self._oldest_due(families).add_metric(["deferrals"], max((now - d.resume_at for d in due), default=0.0))

    @staticmethod
    def _oldest_due(families: Families) -> GaugeMetricFamily:
        return families.gauge(
            "dripfeed_oldest_due_seconds",
            "How long the oldest piece of waiting work has been due and not yet taken up: a deferred "
            "tenant whose window has reset (deferrals), an open export whose next poll is due (exports).",
            ("queue",),
        )
