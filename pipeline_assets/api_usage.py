"""`api_usage`: what dripfeed spent of each tenant's Tasklane budget, per hour, from the call ledger.

The ledger (`dripfeed_api_calls` in the control store) is the source; this asset copies the last
days of it into the warehouse, beside the synced data, with each hour's budget, so the people
who pay for the vendor's quota can read it with SQL or in the asset's metadata."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from resources.control.call_ledger import ledger_rows
from resources.control.rate_budget import CONTRACT_WINDOW_SECONDS, RateBudget
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tenants import Tenant
from resources.warehouse import USAGE_COLUMNS as TABLE_COLUMNS
from resources.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd  # imported when the asset runs: never on the path of a sync or a tick

LEDGER_SUMS = ["calls", "counted", "not_modified", "rate_limited", "retries", "errors", "wait_seconds"]
SUMMARY_TENANTS = 50  # the busiest tenants shown in the UI's table; the warehouse table has them all


class UsageConfig(dg.Config):
    days: int = Field(7, ge=1, le=90, description="how many days of the ledger to (re)write into the warehouse")


def hourly_budget(tenant: Tenant | None, budget: RateBudget) -> int | None:
    """The calls per hour dripfeed may spend for the tenant, as its current window says; None if unknown."""
    if tenant is None:  # in the ledger, but no longer in tenants.yaml
        return None
    window = budget.window(tenant.id)
    seconds = window.get("window_seconds") or CONTRACT_WINDOW_SECONDS
    per_window = tenant.calls_per_window(window.get("vendor_limit"), seconds)
    return None if per_window is None else int(per_window * 3600 / seconds)


def usage_frame(state: SharedState, registry: TenantRegistry, since_hour: str) -> "pd.DataFrame":
    """One row per tenant and hour since `since_hour`: the ledger's sums over endpoints, and budget use."""
    import pandas as pd

    ledger = pd.DataFrame(ledger_rows(state.store, since_hour=since_hour))
    if ledger.empty:
        return pd.DataFrame(columns=["tenant_id", "hour", *LEDGER_SUMS, "hourly_budget", "budget_used"])
    usage = ledger.groupby(["tenant", "hour"], as_index=False)[LEDGER_SUMS].sum()
    tenants, budget = registry.tenants(), state.budget  # tenants.yaml read once, not per tenant
    budgets = {tenant: hourly_budget(tenants.get(tenant), budget) for tenant in usage["tenant"].unique()}
    usage["hourly_budget"] = usage["tenant"].map(budgets).astype("Int64")
    usage["budget_used"] = (usage["counted"] / usage["hourly_budget"]).astype("Float64").round(3)
    return usage.rename(columns={"tenant": "tenant_id"}).sort_values(["tenant_id", "hour"], ignore_index=True)


def warehouse_rows(usage: "pd.DataFrame") -> list[tuple]:
    """The frame's rows as plain Python values in the warehouse table's column order (NA as None)."""
    import pandas as pd

    return [
        tuple(None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in row)
        for row in usage[list(TABLE_COLUMNS)].itertuples(index=False)
    ]


def usage_summary(usage: "pd.DataFrame") -> str:
    """A markdown table a person reads in the UI: per tenant, totals and the busiest hour's budget use,
    for the SUMMARY_TENANTS tenants that spent the most (metadata is stored with every materialization)."""
    if usage.empty:
        return "No calls in the ledger for this period."
    totals = usage.groupby("tenant_id").agg(
        calls=("calls", "sum"),
        counted=("counted", "sum"),
        not_modified=("not_modified", "sum"),
        rate_limited=("rate_limited", "sum"),
        busiest_hour_budget_used=("budget_used", "max"),
    )
    busiest = totals.sort_values("counted", ascending=False, kind="stable").head(SUMMARY_TENANTS).sort_index()
    table = busiest.rename(columns={"not_modified": "304s", "rate_limited": "429s"}).to_markdown()
    hidden = len(totals) - len(busiest)
    return table + (f"\n\nand {hidden} more tenants (table `api_usage` has every one)" if hidden else "")


@dg.asset(
    group_name="tasklane",
    kinds={"python", "sql"},
    owners=["team:data-platform"],
    description="Calls, 304s, 429s and budget used per tenant and hour, from dripfeed's call ledger.",
)
def api_usage(
    context: dg.AssetExecutionContext,
    config: UsageConfig,
    state: SharedState,
    registry: TenantRegistry,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    since = (datetime.now(UTC) - timedelta(days=config.days)).strftime("%Y-%m-%dT%H:00:00Z")
    usage = usage_frame(state, registry, since)
    warehouse.replace_api_usage(warehouse_rows(usage), since)
    last_day = usage[usage["hour"] >= (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:00:00Z")]
    context.log.info(f"api_usage: {len(usage)} tenant-hours since {since}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(usage)),
            "since": since,
            "tenants": dg.MetadataValue.int(int(usage["tenant_id"].nunique())),
            "counted_calls": dg.MetadataValue.int(int(usage["counted"].sum())),
            "rate_limited_429": dg.MetadataValue.int(int(usage["rate_limited"].sum())),
            "last_24_hours": dg.MetadataValue.md(usage_summary(last_day)),
        }
    )
