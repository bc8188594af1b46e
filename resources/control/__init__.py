"""The control store and what dripfeed keeps in it: state every process shares, beside the warehouse.

`store.py` (the tables, SQLite or Postgres), `rate_budget.py` (each tenant's calls in the vendor's
window), `call_ledger.py` (every call counted), `etag_store.py`, `export_jobs.py` (+ `ExportStatus`),
`deferrals.py` (tenants waiting to resume). Nothing here imports Dagster or the Tasklane client.
"""
