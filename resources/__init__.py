"""Dagster resources: the rate-limited Tasklane API client and the warehouse."""
