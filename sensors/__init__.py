"""Sensors: tenant registry, export status and per-tenant alerts."""
