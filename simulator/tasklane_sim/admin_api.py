"""`/_sim/`: ground truth, counters and runtime knobs for tests and benchmarks (admin token only)."""

from __future__ import annotations

import hmac
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse, Response, StreamingResponse

from .config import RESOURCES, ConfigError, Knobs, WorkspaceSpec, deep_merge
from .crafted_replies import CraftedReply
from .errors import ApiError
from .records import SchemaChange
from .simulator import Simulator
from .timestamps import format_ms, now_ms
from .workspace import Workspace


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenBody(_Body):
    token: str = Field(min_length=1)


class SchemaChangeBody(_Body):
    kind: Literal["add_field", "drop_field", "change_type"]
    resource: Literal["users", "projects", "tasks"]
    field: str = Field(min_length=1, max_length=1000)
    value: Any = None
    to: Literal["string", "number"] | None = None
    format: str = "{}"


class MutationBody(_Body):
    creates: int = Field(0, ge=0, le=1_000_000)
    updates: int = Field(0, ge=0, le=1_000_000)
    deletes: int = Field(0, ge=0, le=1_000_000)
    resource: Literal["users", "projects", "tasks"] | None = None


class WebhookEventBody(_Body):
    type: str = Field(pattern=r"^(task|project|user)\.(created|updated|deleted)$")
    resource_id: str
    occurred_at: str | None = None


class SpendBody(_Body):
    calls: int = Field(ge=1, le=1_000_000)


class HoldBody(_Body):
    hold: bool


class CraftedRepliesBody(_Body):
    resource: Literal["users", "projects", "tasks"]
    replies: list[CraftedReply] = Field(min_length=1)


def _validated(model: type[BaseModel], payload: Any) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ApiError(400, "bad_request", problems) from None


async def _payload(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "bad_request", "the request body must be JSON") from None


def build_admin_router(sim: Simulator) -> APIRouter:
    def require_admin(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), sim.admin_token.encode()):
            raise ApiError(401, "unauthorized", "the simulator's admin API needs `Authorization: Bearer <admin token>`")

    router = APIRouter(prefix="/_sim")
    admin = APIRouter(dependencies=[Depends(require_admin)])

    def workspace(workspace_id: str) -> Workspace:
        found = sim.workspaces.get(workspace_id)
        if found is None:
            raise ApiError(404, "not_found", f"workspace {workspace_id!r} does not exist")
        return found

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok", "workspaces": len(sim.workspaces)}

    @admin.get("/workspaces")
    def list_workspaces() -> dict:
        return {
            "data": [
                {"id": ws.id, "records": {r: ws.store.count(r) for r in RESOURCES}, "pending_writes": ws.pending_writes}
                for ws in sim.workspaces.values()
            ]
        }

    @admin.post("/workspaces", status_code=201)
    async def add_workspace(request: Request) -> dict:
        spec = _validated(WorkspaceSpec, await _payload(request))
        try:
            ws = sim.add_workspace(spec)
        except ConfigError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return {"id": ws.id}

    @admin.get("/workspaces/{workspace_id}/truth/{resource}")
    def truth(workspace_id: str, resource: str) -> Response:
        """Every record as of now, tombstones included, as NDJSON ordered by id."""
        ws = workspace(workspace_id)
        if resource not in RESOURCES:
            raise ApiError(404, "not_found", f"unknown resource {resource!r}")
        ws.apply_due_writes()

        def lines() -> Iterator[bytes]:
            # Starlette iterates a sync generator on whichever worker thread is free: the connection
            # moves between threads (one iteration at a time), which SQLite allows when told so.
            db = sqlite3.connect(f"file:{ws.store.path}?mode=ro", uri=True, check_same_thread=False)
            try:
                db.execute("BEGIN")
                for (body,) in db.execute(f"SELECT body FROM {resource} ORDER BY id"):
                    yield body + b"\n"
            finally:
                db.close()

        headers = {"X-Sim-Pending-Writes": str(ws.pending_writes)}
        return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)

    @admin.get("/workspaces/{workspace_id}/counters")
    def counters(workspace_id: str) -> dict:
        ws = workspace(workspace_id)
        report = ws.counters_report()
        report["webhooks"] = dict(sim.webhooks.stats[ws.id]) | {"pending": sim.webhooks.pending(ws.id)}
        report["exports_created"] = len(ws.exports.jobs)
        return report

    @admin.post("/workspaces/{workspace_id}/counters/reset")
    def reset_counters(workspace_id: str) -> dict:
        workspace(workspace_id).reset_counters()
        return {"ok": True}

    @admin.get("/workspaces/{workspace_id}/knobs")
    def get_knobs(workspace_id: str) -> dict:
        return workspace(workspace_id).knobs.model_dump()

    @admin.patch("/workspaces/{workspace_id}/knobs")
    async def patch_knobs(workspace_id: str, request: Request) -> dict:
        ws = workspace(workspace_id)
        payload = await _payload(request)
        if not isinstance(payload, dict):
            raise ApiError(400, "bad_request", "send a JSON object of knobs to change")
        ws.knobs = _validated(Knobs, deep_merge(ws.knobs.model_dump(), payload))
        return ws.knobs.model_dump()

    @admin.post("/workspaces/{workspace_id}/tokens")
    async def add_token(workspace_id: str, request: Request) -> dict:
        body = _validated(TokenBody, await _payload(request))
        try:
            sim.add_token(workspace(workspace_id), body.token)
        except ConfigError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return {"ok": True}

    @admin.post("/workspaces/{workspace_id}/tokens/revoke")
    async def revoke_token(workspace_id: str, request: Request) -> dict:
        body = _validated(TokenBody, await _payload(request))
        if not sim.revoke_token(workspace(workspace_id), body.token):
            raise ApiError(404, "not_found", "that token is not an active token of this workspace")
        return {"ok": True}

    @admin.post("/workspaces/{workspace_id}/schema-changes")
    async def schema_change(workspace_id: str, request: Request) -> dict:
        body = _validated(SchemaChangeBody, await _payload(request))
        if body.kind == "change_type" and body.to is None:
            raise ApiError(400, "bad_request", "a change_type needs `to`: string or number")
        ws = workspace(workspace_id)
        rewritten = ws.apply_schema_change(SchemaChange(**body.model_dump()))
        return {"records_rewritten": rewritten, "api_version": ws.knobs.api_version}

    @admin.post("/workspaces/{workspace_id}/cursors/expire")
    def expire_cursors(workspace_id: str) -> dict:
        workspace(workspace_id).cursors.expire_all()
        return {"ok": True}

    @admin.post("/workspaces/{workspace_id}/tombstones/purge")
    def purge_tombstones(workspace_id: str) -> dict:
        """Drop the tombstones past their retention now, not at the next minute's purge."""
        return {"purged": workspace(workspace_id).purge_tombstones(now_ms())}

    @admin.post("/workspaces/{workspace_id}/mutations")
    async def mutate(workspace_id: str, request: Request) -> dict:
        body = _validated(MutationBody, await _payload(request))
        done = workspace(workspace_id).mutate(body.creates, body.updates, body.deletes, body.resource)
        return dict(done)

    @admin.post("/workspaces/{workspace_id}/settle")
    def settle(workspace_id: str) -> dict:
        return {"applied": workspace(workspace_id).settle()}

    @admin.post("/workspaces/{workspace_id}/spend")
    async def spend(workspace_id: str, request: Request) -> dict:
        """Calls made by the customer's other clients: they use the same window's budget."""
        body = _validated(SpendBody, await _payload(request))
        ws = workspace(workspace_id)
        ws.limiter.spend(time.time(), ws.knobs, body.calls)
        ws.counters["other_clients"]["counted"] += body.calls
        return {"remaining": ws.limiter.current(time.time(), ws.knobs).remaining}

    @admin.post("/workspaces/{workspace_id}/webhook-events")
    async def fire_webhook(workspace_id: str, request: Request) -> dict:
        body = _validated(WebhookEventBody, await _payload(request))
        ws = workspace(workspace_id)
        occurred = body.occurred_at or format_ms(now_ms())
        knobs = ws.knobs
        queued = sim.webhooks.emit(
            ws.id,
            body.type,
            body.resource_id,
            occurred,
            knobs.webhook_retry_base_seconds,
            knobs.webhook_retry_for_seconds,
        )
        return {"queued": queued}

    @admin.get("/workspaces/{workspace_id}/exports")
    def exports(workspace_id: str) -> JSONResponse:
        ws = workspace(workspace_id)
        now = time.time()
        return JSONResponse({"data": [job.describe(now, "") for job in ws.exports.jobs.values()]})

    @admin.post("/workspaces/{workspace_id}/exports/hold")
    async def hold_exports(workspace_id: str, request: Request) -> dict:
        """`{"hold": true}` keeps the workspace's open export jobs, and new ones, from completing until
        `{"hold": false}`: a test decides when an export finishes instead of racing its duration."""
        body = _validated(HoldBody, await _payload(request))
        ws = workspace(workspace_id)
        (ws.exports.hold if body.hold else ws.exports.release)(time.time())
        return {"held": body.hold}

    @admin.post("/workspaces/{workspace_id}/crafted-replies")
    async def craft_replies(workspace_id: str, request: Request) -> dict:
        """Queue hostile answers for the resource's next listing requests (see crafted_replies.py)."""
        body = _validated(CraftedRepliesBody, await _payload(request))
        return {"queued": workspace(workspace_id).crafted.add(body.resource, body.replies)}

    @admin.get("/workspaces/{workspace_id}/crafted-replies")
    def crafted_replies(workspace_id: str) -> dict:
        crafted = workspace(workspace_id).crafted
        queued = {resource: sum(reply.times for reply in queue) for resource, queue in crafted.queues.items()}
        return {"queued": queued, "streamed_bytes": crafted.streamed_bytes}

    @admin.delete("/workspaces/{workspace_id}/crafted-replies")
    def clear_crafted_replies(workspace_id: str) -> dict:
        return {"unused": workspace(workspace_id).crafted.clear()}

    router.include_router(admin)
    return router
