"""The public Tasklane v1 API: every request passes one gate that applies the contract's rules."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .config import RESOURCES
from .connection_faults import DroppedConnection, TruncatedResponse
from .cursors import CursorPosition, ExpiredCursor, InvalidCursor, query_fingerprint
from .errors import ApiError, error_response
from .exports import ExportJob, IdempotencyConflict
from .simulator import AuthProblem, Simulator
from .timestamps import BadTimestamp, parse_ms
from .webhooks import EVENT_PATTERN
from .workspace import Workspace

log = logging.getLogger("tasklane_sim")
MAX_PAGE = 100
DEFAULT_PAGE = 25
EXPORT_STATUSES = ("queued", "running", "succeeded", "failed", "expired")
NO_LOWER_BOUND = -(2**62)
WORKSPACE_PATH = re.compile(r"^/v1/workspaces/([^/]+)(/|$)")
Handler = Callable[[Workspace], Response]


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,6}", raw) or not low <= int(raw) <= high:
        raise ApiError(400, "bad_request", f"`{name}` must be an integer from {low} to {high}")
    return int(raw)


def _query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false")
    if raw not in ("true", "false"):
        raise ApiError(400, "bad_request", f"`{name}` must be `true` or `false`")
    return raw == "true"


def _timestamp(text: object, name: str) -> int:
    if not isinstance(text, str):
        raise ApiError(400, "bad_request", f"`{name}` must be an RFC 3339 timestamp")
    try:
        return parse_ms(text)
    except BadTimestamp as exc:
        raise ApiError(400, "bad_request", f"`{name}`: {exc}") from None


def _json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the request body must be a JSON object")
    return body


class Gate:
    """Workspace lookup, limits, counting, auth and faults, in the order the contract implies."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def __call__(self, request: Request, workspace_id: str, endpoint: str, handler: Handler) -> Response:
        workspace = self.sim.workspaces.get(workspace_id)
        if workspace is None:
            return error_response(404, "not_found", f"workspace {workspace_id!r} does not exist")
        now = time.time()
        knobs = workspace.knobs
        workspace.count(endpoint, "requests")
        admission = workspace.limiter.admit(now, workspace.in_flight, knobs)
        if not admission.allowed:
            workspace.count(endpoint, "rate_limited", f"rate_limited_{admission.reason}")
            message = {
                "window": "rate limit exceeded for this window; retry after the reset",
                "concurrency": "more than the allowed concurrent requests for this workspace",
                "lockout": "too many rate-limited requests; the workspace is locked out, retry later",
            }[admission.reason]
            response = error_response(429, "rate_limited", message, admission.headers(knobs, now))
            response.headers["Tasklane-Version"] = knobs.api_version
            return response
        fault = workspace.draw_fault()
        if fault:
            workspace.count(endpoint, f"fault_{fault}")
        if fault == "slow":
            await asyncio.sleep(knobs.faults.slow_seconds)
        try:
            self.sim.authenticate(workspace, request.headers.get("authorization"))
            if fault == "error":
                raise self._server_error(workspace)
            response = handler(workspace)
        except AuthProblem as problem:
            response = error_response(problem.status, problem.code, problem.message)
        except ApiError as error:
            response = error.response()
        if response.status_code == 304:  # free: give back the call reserved at admission
            workspace.limiter.refund(now, knobs)
            workspace.count(endpoint, "not_modified")
        else:
            workspace.count(endpoint, "counted")
            response.headers.update(workspace.limiter.current(now, knobs).headers(knobs, now))
        response.headers["Tasklane-Version"] = knobs.api_version
        workspace.count(endpoint, f"status_{response.status_code}")
        if fault == "drop":
            return DroppedConnection()
        if fault == "truncate" and not isinstance(response, FileResponse):
            return TruncatedResponse(response, short_read=workspace.rng.random() < 0.5)
        return response

    def _server_error(self, workspace: Workspace) -> ApiError:
        status = workspace.rng.choice((500, 502, 503))
        headers = {"Retry-After": "1"} if status == 503 else None
        return ApiError(status, "server_error", "transient server error; retry", headers)


def build_api_app(sim: Simulator) -> Starlette:
    """Plain Starlette for the hot public API: FastAPI's per-route dependency machinery cost a
    quarter of the serving time, and these handlers validate their own input per the contract."""
    gate = Gate(sim)

    async def list_exports(request: Request) -> Response:
        workspace_id = request.path_params["workspace_id"]

        def handle(ws: Workspace) -> Response:
            wanted = request.query_params.get("status")
            statuses = wanted.split(",") if wanted else list(EXPORT_STATUSES)
            if any(s not in EXPORT_STATUSES for s in statuses):
                raise ApiError(
                    400, "bad_request", f"`status` takes a comma-separated list of {', '.join(EXPORT_STATUSES)}"
                )
            now = time.time()
            jobs = [
                job.describe(now, _result_url(request, ws, job.id))
                for job in ws.exports.jobs.values()
                if job.status(now) in statuses
            ]
            return JSONResponse({"data": jobs})

        return await gate(request, workspace_id, "exports.list", handle)

    async def create_export(request: Request) -> Response:
        workspace_id = request.path_params["workspace_id"]
        body = await request.body()

        def handle(ws: Workspace) -> Response:
            key = request.headers.get("idempotency-key", "")
            if not key or len(key) > 255:
                raise ApiError(400, "bad_request", "send an `Idempotency-Key` header of 1 to 255 characters")
            payload = _json_object(body)
            if payload.get("resource") not in RESOURCES:
                raise ApiError(400, "bad_request", f"`resource` must be one of {', '.join(RESOURCES)}")
            before = _timestamp(payload.get("updated_before"), "updated_before")
            try:
                job, created = ws.exports.submit(key, payload["resource"], before, time.time(), ws.knobs.exports)
            except IdempotencyConflict as exc:
                raise ApiError(409, "idempotency_conflict", str(exc)) from None
            described = job.describe(time.time(), _result_url(request, ws, job.id))
            return JSONResponse(described, status_code=202 if created else 200)

        return await gate(request, workspace_id, "exports.create", handle)

    async def get_export(request: Request) -> Response:
        workspace_id, export_id = request.path_params["workspace_id"], request.path_params["export_id"]

        def handle(ws: Workspace) -> Response:
            job = _export_job(ws, export_id)
            return JSONResponse(job.describe(time.time(), _result_url(request, ws, job.id)))

        return await gate(request, workspace_id, "exports.get", handle)

    async def download_export(request: Request) -> Response:
        workspace_id, export_id = request.path_params["workspace_id"], request.path_params["export_id"]

        def handle(ws: Workspace) -> Response:
            job = _export_job(ws, export_id)
            status = job.status(time.time())
            if status == "expired":
                raise ApiError(410, "export_expired", "this export's result expired; submit the export again")
            if status != "succeeded" or not job.path.exists():
                raise ApiError(404, "not_found", f"export {export_id!r} has no result (status {status})")
            return FileResponse(job.path, media_type="application/gzip", filename=f"{job.id}.ndjson.gz")

        return await gate(request, workspace_id, "exports.download", handle)

    async def create_webhook(request: Request) -> Response:
        workspace_id = request.path_params["workspace_id"]
        body = await request.body()

        def handle(ws: Workspace) -> Response:
            payload = _json_object(body)
            url, events = payload.get("url"), payload.get("events")
            if not isinstance(url, str) or not re.match(r"^https?://", url):
                raise ApiError(400, "bad_request", "`url` must be an http(s) URL")
            if (
                not isinstance(events, list)
                or not events
                or not all(isinstance(e, str) and EVENT_PATTERN.match(e) for e in events)
            ):
                raise ApiError(400, "bad_request", '`events` must be a list like ["task.*", "project.updated"]')
            sub = sim.webhooks.subscribe(ws.id, url, events)
            return JSONResponse({"id": sub.id, "secret": sub.secret, "url": url, "events": events}, status_code=201)

        return await gate(request, workspace_id, "webhooks.create", handle)

    async def delete_webhook(request: Request) -> Response:
        workspace_id, webhook_id = request.path_params["workspace_id"], request.path_params["webhook_id"]

        def handle(ws: Workspace) -> Response:
            if not sim.webhooks.unsubscribe(ws.id, webhook_id):
                raise ApiError(404, "not_found", f"webhook {webhook_id!r} does not exist in this workspace")
            return Response(status_code=204)

        return await gate(request, workspace_id, "webhooks.delete", handle)

    async def list_records(request: Request) -> Response:
        workspace_id, resource = request.path_params["workspace_id"], request.path_params["resource"]
        if resource not in RESOURCES:
            unknown = ApiError(404, "not_found", f"unknown resource {resource!r}; use one of {', '.join(RESOURCES)}")
            return await gate(request, workspace_id, "unrouted", unknown.raise_for)
        first = "cursor" not in request.query_params

        def handle(ws: Workspace) -> Response:
            return ws.crafted.answer(resource, first, lambda conditional: _listing(request, ws, resource, conditional))

        return await gate(request, workspace_id, f"{resource}.list", handle)

    async def unrouted(request: Request, exc: Exception) -> Response:
        """A path or method the API does not have: counted, with the rate-limit headers, when it
        names a workspace (every answered request to a workspace counts)."""
        status = getattr(exc, "status_code", 500)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
        answer = ApiError(status, code, str(getattr(exc, "detail", "error")))
        workspace = WORKSPACE_PATH.match(request.url.path)
        if workspace is None:
            return answer.response()
        return await gate(request, workspace.group(1), "unrouted", answer.raise_for)

    prefix = "/v1/workspaces/{workspace_id}"
    routes = [
        Route(f"{prefix}/exports", list_exports, methods=["GET"]),
        Route(f"{prefix}/exports", create_export, methods=["POST"]),
        Route(f"{prefix}/exports/{{export_id}}", get_export, methods=["GET"]),
        Route(f"{prefix}/exports/{{export_id}}/result", download_export, methods=["GET"]),
        Route(f"{prefix}/webhooks", create_webhook, methods=["POST"]),
        Route(f"{prefix}/webhooks/{{webhook_id}}", delete_webhook, methods=["DELETE"]),
        Route(f"{prefix}/{{resource}}", list_records, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: unrouted, Exception: _unexpected})


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("simulator bug while serving a request")
    return error_response(500, "internal_error", "the simulator failed on this request; see its log")


def _export_job(ws: Workspace, export_id: str) -> ExportJob:
    job = ws.exports.jobs.get(export_id)
    if job is None:
        raise ApiError(404, "not_found", f"export {export_id!r} does not exist in this workspace")
    return job


def _result_url(request: Request, ws: Workspace, export_id: str) -> str:
    return str(request.base_url).rstrip("/") + f"/v1/workspaces/{ws.id}/exports/{export_id}/result"


def _listing(request: Request, ws: Workspace, resource: str, conditional: bool = True) -> Response:
    """One keyset page; its ETag covers the query, the position and every record's bytes.
    `conditional=False` ignores If-None-Match (a crafted reply reshapes the full page)."""
    limit = _query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    since_text = request.query_params.get("updated_since")
    since_ms = _timestamp(since_text, "updated_since") if since_text is not None else NO_LOWER_BOUND
    include_deleted = _query_bool(request, "include_deleted")
    fingerprint = query_fingerprint(resource, limit, str(since_ms), include_deleted)
    cursor = request.query_params.get("cursor")
    after = None
    if cursor is not None:
        try:
            after = ws.cursors.read(cursor, fingerprint, time.time(), ws.knobs.cursor_ttl_seconds)
        except InvalidCursor as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        except ExpiredCursor as exc:
            raise ApiError(410, "cursor_expired", str(exc)) from None
    position = (after.updated_ms, after.record_id) if after else None
    rows = ws.store.page(resource, since_ms, position, include_deleted, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    data = b",".join(row[2] for row in rows)
    next_cursor = ws.cursors.issue(fingerprint, CursorPosition(rows[-1][1], rows[-1][0]), time.time()) if more else None
    digest = hashlib.blake2b(f"{fingerprint}|{position}|{more}|".encode(), digest_size=16)
    digest.update(data)
    etag = f'"{digest.hexdigest()}"'
    wanted = _etags(request.headers.get("if-none-match")) if conditional else set()
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers={"ETag": etag})
    body = b'{"data":[' + data + b'],"next_cursor":' + json.dumps(next_cursor).encode() + b"}"
    return Response(body, media_type="application/json", headers={"ETag": etag})
