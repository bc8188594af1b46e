"""Running totals for the metrics endpoint (dripfeed/metrics/): a scrape reads one row per tenant,
stream or tier instead of summing the hourly call ledger. The ledger's errors are split by class.

The call totals start from what the ledger already holds, so the counters a Prometheus has scraped
keep counting up through the upgrade.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERROR_CLASSES = ("auth_errors", "client_errors", "server_errors", "network_errors")
CALL_SUMS = ("calls", "counted", "not_modified", "rate_limited", "retries", "errors", *ERROR_CLASSES)


def upgrade() -> None:
    with op.batch_alter_table("dripfeed_api_calls") as ledger:
        for name in ERROR_CLASSES:
            ledger.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "dripfeed_call_totals",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in CALL_SUMS),
        sa.Column("wait_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant"),
    )
    sums = ", ".join(f"sum({name})" for name in (*CALL_SUMS, "wait_seconds"))
    op.execute(
        f"INSERT INTO dripfeed_call_totals (tenant, {', '.join(CALL_SUMS)}, wait_seconds) "
        f"SELECT tenant, {sums} FROM dripfeed_api_calls GROUP BY tenant"
    )
    op.create_table(
        "dripfeed_stream_totals",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("resource", sa.String(length=20), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tombstones", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("drift_fields", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant", "resource"),
    )
    op.create_table(
        "dripfeed_tier_totals",
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("ticks", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("probes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("runs_requested", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tier"),
    )
