"""Dagster resources and what they stand on: the rate-limited Tasklane client (`tasklane/`), the
warehouse (`warehouse/`), alerts, the control store every process shares (`control/`, through
`shared_state.py`), the tenant registry over tenants.yaml, the streams, the tiers, and moments as
UTC text (`utc.py`)."""
