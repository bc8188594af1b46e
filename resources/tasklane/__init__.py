"""Tasklane, for dripfeed: the `TasklaneAPI` resource and the per-tenant client behind it.

By concern: `transport.py` (one HTTP exchange and what its answer means), `metering.py` (the
tenant's shared budget, the ledger), `client.py` (the request loop, retries), `listing.py` and
`exports.py` (what the product calls), `errors.py` (the client's own errors), `resource.py` (the
Dagster resource). Only `stream.py` imports Dagster.
"""

from .client import ClientSettings, TenantClient
from .errors import TasklaneFailure, TenantThrottled
from .listing import Page
from .resource import TasklaneAPI

__all__ = ["ClientSettings", "Page", "TasklaneAPI", "TasklaneFailure", "TenantClient", "TenantThrottled"]
