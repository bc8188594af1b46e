"""Tasklane records: deterministic generation from a seed, mutation, and per-workspace schema shape."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .timestamps import format_date, format_ms

ID_PREFIX = {"users": "usr", "projects": "prj", "tasks": "tsk"}
EVENT_NOUN = {"users": "user", "projects": "project", "tasks": "task"}
BASE_FIELDS: dict[str, tuple[str, ...]] = {
    "users": ("email", "name", "role", "active"),
    "projects": ("name", "status", "owner_id"),
    "tasks": (
        "project_id",
        "assignee_id",
        "title",
        "status",
        "priority",
        "estimate_hours",
        "tags",
        "due_date",
        "custom_fields",
        "completed_at",
    ),
}
COMMON_FIELDS = ("id", "created_at", "updated_at", "deleted_at")
DAY_MS = 86_400_000
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # reused: the C fast path
_ID_SPACE = 1 << 40
_ID_STRIDE = 0x9E3779B97F  # odd, so ordinal -> id is a bijection on the id space

_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Dennis", "Radia"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Allen"]
_WORDS = [
    "billing",
    "onboarding",
    "search",
    "export",
    "mobile",
    "api",
    "auth",
    "dashboard",
    "reports",
    "cache",
    "invoice",
    "migration",
    "alerts",
    "sync",
    "audit",
    "pricing",
    "checkout",
    "profile",
]
_VERBS = ["Fix", "Add", "Refactor", "Document", "Investigate", "Ship", "Review", "Remove", "Test"]
_TAGS = ["bug", "feature", "urgent", "backend", "frontend", "infra", "design", "customer"]
_CUSTOMERS = ["Initrode", "Vandelay", "Soylent", "Wonka", "Cyberdyne", "Tyrell"]
_STATUSES = ("todo", "in_progress", "done")
_POINTS = (1, 2, 3, 5, 8, 13)
# Strings the contract promises can appear: quotes, newlines, emoji, backslashes, markup.
_TRICKY_TITLES = [
    'Fix "quoted" export',
    "Line one\nline two",
    "Ship it 🚀🔥",
    "O'Brien's \"special\" task",
    "Tab\tseparated\tvalues",
    "Ünïcödé — em dash – and ½",
    "<script>alert('x')</script>",
    "back\\slash and \\n literal",
    "'; DROP TABLE tasks; --",
]


def _pick(options: Sequence[Any], r: Callable[[], float]) -> Any:
    return options[int(r() * len(options))]


def record_id(resource: str, ordinal: int, salt: int) -> str:
    """Stable, unique, random-looking ids: a bijection of the ordinal within 40 bits."""
    return f"{ID_PREFIX[resource]}_{(ordinal * _ID_STRIDE + salt) % _ID_SPACE:010x}"


@dataclass(frozen=True)
class SchemaChange:
    """One vendor-side change to a workspace's record shape (the contract's breaking/additive kinds)."""

    kind: Literal["add_field", "drop_field", "change_type"]
    resource: str
    field: str
    value: Any = None
    to: Literal["string", "number"] | None = None
    format: str = "{}"

    def apply(self, record: dict[str, Any]) -> None:
        if self.kind == "add_field":
            if self.field not in record:
                value = self.value if self.value is not None else f"{self.field}:{record['id']}"
                record[self.field] = None if record.get("deleted_at") else value
        elif self.kind == "drop_field":
            record.pop(self.field, None)
        else:
            current = record.get(self.field)
            if self.to == "string" and isinstance(current, (int, float)) and not isinstance(current, bool):
                record[self.field] = self.format.format(f"{current:g}")
            elif self.to == "number" and isinstance(current, str):
                try:
                    record[self.field] = float(current)
                except ValueError:
                    record[self.field] = None


@dataclass
class RecordFactory:
    """Builds and mutates a workspace's records; every random choice comes from a seeded RNG."""

    workspace: str
    seed: int
    counts: dict[str, int]
    schema_changes: list[SchemaChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.salt = random.Random(f"{self.seed}:{self.workspace}:ids").getrandbits(40)

    def id(self, resource: str, ordinal: int) -> str:
        return record_id(resource, ordinal, self.salt)

    def fields(self, resource: str) -> list[str]:
        names = list(COMMON_FIELDS) + list(BASE_FIELDS[resource])
        for change in self.schema_changes:
            if change.resource != resource:
                continue
            if change.kind == "add_field" and change.field not in names:
                names.append(change.field)
            elif change.kind == "drop_field" and change.field in names:
                names.remove(change.field)
        return names

    def shape(self, resource: str, record: dict[str, Any]) -> dict[str, Any]:
        for change in self.schema_changes:
            if change.resource == resource:
                change.apply(record)
        return record

    def encode(self, resource: str, record: dict[str, Any]) -> bytes:
        return _ENCODER.encode(self.shape(resource, record)).encode()

    def tombstone(self, resource: str, record_id_: str, deleted_ms: int) -> dict[str, Any]:
        """The contract's tombstone: id, updated_at and deleted_at set, every other field null."""
        record: dict[str, Any] = dict.fromkeys(self.fields(resource))
        stamp = format_ms(deleted_ms)
        record.update(id=record_id_, updated_at=stamp, deleted_at=stamp)
        return record

    def new(self, resource: str, ordinal: int, created_ms: int, updated_ms: int, rng: random.Random) -> dict[str, Any]:
        # Draws use rng.random() alone: it is C-level, and generation is the simulator's start-up.
        r = rng.random
        record: dict[str, Any] = {
            "id": self.id(resource, ordinal),
            "created_at": format_ms(created_ms),
            "updated_at": format_ms(updated_ms),
            "deleted_at": None,
        }
        if resource == "users":
            first, last = _pick(_FIRST, r), _pick(_LAST, r)
            role = r()
            record.update(
                email=f"{first.lower()}.{last.lower()}{ordinal}@{self.workspace}.example",
                name=f"{first} {last}",
                role="admin" if role < 0.05 else "guest" if role < 0.2 else "member",
                active=r() < 0.9,
            )
        elif resource == "projects":
            record.update(
                name=f"{_pick(_WORDS, r).title()} {_pick(_WORDS, r)} #{ordinal}",
                status="active" if r() < 0.8 else "archived",
                owner_id=self.id("users", int(r() * self.counts["users"])),
            )
        else:
            record.update(self._task_fields(ordinal, updated_ms, r))
        return record

    def _task_fields(self, ordinal: int, updated_ms: int, r: Callable[[], float]) -> dict[str, Any]:
        status = _pick(_STATUSES, r)
        if ordinal % 40 == 7:  # every workspace of 40+ tasks carries each hard string
            title = _TRICKY_TITLES[(ordinal // 40) % len(_TRICKY_TITLES)]
        else:
            title = f"{_pick(_VERBS, r)} {_pick(_WORDS, r)} {_pick(_WORDS, r)}"
        custom: dict[str, Any] = {}
        if r() < 0.5:
            custom["story_points"] = _pick(_POINTS, r)
        if r() < 0.3:
            custom["customer"] = _pick(_CUSTOMERS, r)
        return {
            "project_id": self.id("projects", int(r() * self.counts["projects"])),
            "assignee_id": self.id("users", int(r() * self.counts["users"])) if r() < 0.8 else None,
            "title": title,
            "status": status,
            "priority": 1 + int(r() * 4),
            "estimate_hours": round(0.5 + r() * 39.5, 1) if r() < 0.7 else None,
            "tags": sorted({_pick(_TAGS, r) for _ in range(int(r() * 4))}),
            "due_date": format_date(updated_ms + int(r() * 90 - 30) * DAY_MS) if r() < 0.6 else None,
            "custom_fields": custom,
            "completed_at": format_ms(updated_ms) if status == "done" else None,
        }

    def updated(self, resource: str, record: dict[str, Any], now_ms: int, rng: random.Random) -> dict[str, Any]:
        """A plausible edit by a user of the workspace: a few fields change, updated_at moves."""
        record = dict(record)
        record["updated_at"] = format_ms(now_ms)
        if resource == "users":
            record["active"] = not record.get("active")
            record["role"] = rng.choice(("admin", "member", "guest"))
        elif resource == "projects":
            record["status"] = "archived" if record.get("status") == "active" else "active"
        else:
            record["status"] = rng.choice(("todo", "in_progress", "done"))
            record["priority"] = rng.randint(1, 4)
            record["completed_at"] = format_ms(now_ms) if record["status"] == "done" else None
            if rng.random() < 0.3:
                record["title"] = rng.choice(_TRICKY_TITLES)
        return record
