"""The tables of dripfeed's releases before Alembic.

Those releases made them with `metadata.create_all` when a process opened the store, so a store
that one of them made already holds them: every table and index is created only if it is missing.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dripfeed_api_calls",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("hour", sa.String(length=20), nullable=False),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("not_modified", sa.Integer(), nullable=False),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "hour", "endpoint"),
        if_not_exists=True,
    )
    op.create_table(
        "dripfeed_call_leases",
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lease_id"),
        if_not_exists=True,
    )
    op.create_index("ix_dripfeed_call_leases_tenant", "dripfeed_call_leases", ["tenant"], if_not_exists=True)

    op.create_table(
        "dripfeed_deferrals",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("resume_at", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("deferred_at", sa.Float(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("vendor_block", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tenant"),
        if_not_exists=True,
    )
    op.create_table(
        "dripfeed_export_jobs",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("resource", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("updated_before", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("next_poll_at", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("result_url", sa.String(length=1000), nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "resource"),
        if_not_exists=True,
    )
    op.create_table(
        "dripfeed_rate_windows",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("window_reset", sa.BigInteger(), nullable=True),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.Column("vendor_cap", sa.Integer(), nullable=True),
        sa.Column("vendor_limit", sa.Integer(), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=True),
        sa.Column("last_reset_seen", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant"),
        if_not_exists=True,
    )
    op.create_table(
        "dripfeed_stream_checks",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("resource", sa.String(length=20), nullable=False),
        sa.Column("listing_since", sa.String(length=40), nullable=True),
        sa.Column("listing_etag", sa.String(length=200), nullable=True),
        sa.Column("synced_at", sa.Float(), nullable=True),
        sa.Column("checked_at", sa.Float(), nullable=True),
        sa.Column("reconciled_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "resource"),
        if_not_exists=True,
    )
    op.create_table(
        "dripfeed_tenant_checks",
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("known_since", sa.Float(), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=True),
        sa.Column("period", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("error_class", sa.String(length=20), nullable=True),
        sa.Column("failing_since", sa.Float(), nullable=True),
        sa.Column("failure_alerted", sa.Boolean(), nullable=False),
        sa.Column("reported_state", sa.String(length=20), nullable=True),
        sa.Column("reported_at", sa.Float(), nullable=True),
        sa.Column("reported_target", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant"),
        if_not_exists=True,
    )
