"""Tasklane, for dripfeed: the `TasklaneAPI` resource and the per-tenant client behind it.

By concern: `transport.py` (one HTTP exchange and what its answer means), `metering.py` (the
tenant's shared budget, the ledger), `client.py` (the request loop, retries), `listing.py` and
`exports.py` (the endpoints the product calls, through `caller.py`'s narrow interface, which the
client satisfies), `errors.py` (the client's own errors, under `TasklaneError`), `resource.py` (the
Dagster resource). Only `resource.py` imports Dagster.
"""

from .client import ClientSettings, TenantClient
from .errors import TasklaneError, TasklaneFailure, TenantThrottled
from .exports import VendorExport
from .listing import Page
from .resource import TasklaneAPI

__all__ = [
    "ClientSettings",
    "Page",
    "TasklaneAPI",
    "TasklaneError",
    "TasklaneFailure",
    "TenantClient",
    "TenantThrottled",
    "VendorExport",
]
