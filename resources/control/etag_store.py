"""The ETags of listings that fit on one page, kept in the control store beside the ledger.

Only a complete, single-page result is remembered: a `304` must mean the whole listing is
unchanged, and page one of a longer listing says nothing about the pages after it.
"""

from __future__ import annotations

import sqlalchemy as sa

from .store import ControlStore, etags


class ETagStore:
    """One tenant's remembered ETags, by the listing's query."""

    def __init__(self, store: ControlStore, tenant: str) -> None:
        self.store, self.tenant = store, tenant

    def get(self, query: str) -> str | None:
        with self.store.engine.connect() as conn:
            return conn.execute(
                sa.select(etags.c.etag).where(etags.c.tenant == self.tenant, etags.c.query == query)
            ).scalar_one_or_none()

    def remember(self, query: str, etag: str | None) -> None:
        """Keep `etag` for `query`, or forget the query's ETag (None)."""
        with self.store.transaction() as conn:
            conn.execute(sa.delete(etags).where(etags.c.tenant == self.tenant, etags.c.query == query))
            if etag:
                conn.execute(sa.insert(etags).values(tenant=self.tenant, query=query, etag=etag))


class NoETags(ETagStore):
    """Remembers as usual but never sends an ETag: for a listing that must read every page (a
    reconciliation), where a `304` would tell nothing of which ids exist."""

    def get(self, query: str) -> str | None:
        return None
