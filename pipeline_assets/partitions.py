"""Tenants are partitions: each workspace is synced, retried and backfilled on its own."""

import dagster as dg

tenant_partitions = dg.DynamicPartitionsDefinition(name="tenants")
