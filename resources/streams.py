"""The Tasklane streams dripfeed syncs, listed once: their contract fields and what they reference.

Tasklane's API calls them resources (`GET /v1/workspaces/{ws}/{resource}`); dripfeed says
*stream*, because a resource here is a Dagster resource. The warehouse's bookkeeping columns and
the export API keep the vendor's word `resource`. A stream's asset, table, checks and exports all
follow from its entry here; parents come before the streams that reference them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .utc import rfc3339

# The contract: a write becomes visible up to 60 s after its updated_at. A sync re-reads that much
# before its watermark, and a reference younger than that may name a parent not listed yet.
VISIBILITY_OVERLAP = timedelta(seconds=60)
# The contract: a deleted record's tombstone is listed for 30 days, then it is gone. A tenant not
# synced for that long can learn of those deletes only by listing every id (a reconciliation).
TOMBSTONE_RETENTION = timedelta(days=30)


def minus_overlap(stamp: str) -> str:
    """`stamp` moved back by the visibility overlap: what a sync re-reads, what a check waits for."""
    return rfc3339(datetime.fromisoformat(stamp) - VISIBILITY_OVERLAP)


@dataclass(frozen=True)
class Stream:
    name: str
    description: str
    fields: Mapping[str, str]  # the contract's fields (besides id and timestamps), each with its stored type
    references: Mapping[str, str] = field(default_factory=dict)  # field -> the stream whose ids it holds

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.references.values()))


STREAMS: dict[str, Stream] = {
    stream.name: stream
    for stream in (
        Stream(
            "users",
            "Tasklane users of each tenant workspace (email, name, role, active), with soft-deleted tombstones.",
            {"email": "text", "name": "text", "role": "text", "active": "boolean"},
        ),
        Stream(
            "projects",
            "Tasklane projects of each tenant workspace (name, status, owner), with soft-deleted tombstones.",
            {"name": "text", "status": "text", "owner_id": "text"},
        ),
        Stream(
            "tasks",
            "Tasklane tasks of each tenant workspace (project, assignee, status, priority, estimates, tags, "
            "custom fields), with soft-deleted tombstones.",
            {
                "project_id": "text",
                "assignee_id": "text",
                "title": "text",
                "status": "text",
                "priority": "integer",
                "estimate_hours": "double",
                "tags": "json",
                "due_date": "date",
                "custom_fields": "json",
                "completed_at": "timestamp",
            },
            references={"project_id": "projects", "assignee_id": "users"},
        ),
    )
}
