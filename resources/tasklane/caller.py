"""What the endpoint modules (`listing.py`, `exports.py`) need of a client: the tenant it calls for,
and one metered, retried call. `TenantClient` is one; they never import it, so the client can
import them."""

from __future__ import annotations

from typing import Any, Protocol

from ..tenants import Tenant
from .transport import Reply


class Caller(Protocol):
    tenant: Tenant

    def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Reply: ...
