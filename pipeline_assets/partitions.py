"""Tenants are partitions: each workspace is synced, retried and backfilled on its own."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

tenant_partitions = dg.DynamicPartitionsDefinition(name="tenants")


@contextmanager
def partitioned_checks() -> Iterator[None]:
    """Where the per-tenant asset checks are defined. Partitioned asset checks are a preview
    feature in Dagster 1.13, and the only way to show one tenant's check failing while the
    others pass; docs/architecture.md says so once. Dagster's PreviewWarning would otherwise be
    printed by every process that loads the code location (each run, the code server, the CLI)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec")
        yield
