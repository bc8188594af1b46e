"""The control store and what dripfeed keeps in it: state every process shares, beside the warehouse.

`store.py` (the tables, SQLite or Postgres; their schema versioned by Alembic in `migrations/`),
`rate_budget.py` (each tenant's calls in the vendor's window), `block_batch.py` (a tick's budget
blocks, reserved and settled at once), `call_ledger.py` (every call counted), `stream_checks.py`
(each stream's listing and ETag, and when it was last complete), `tenant_checks.py` (each tenant's
last check and what Dagster was told), `export_jobs.py` (+ `ExportStatus`), `deferrals.py` (tenants
waiting to resume). Nothing here imports Dagster or the Tasklane client.
"""
