"""Assembles the simulator's ASGI app: routes, the in-flight counter and contract-shaped errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .admin_api import build_admin_router
from .api import build_api_app
from .errors import ApiError, error_response
from .simulator import Simulator

log = logging.getLogger("tasklane_sim")
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class InFlightCounter:
    """Counts each workspace's requests in flight until their response is fully sent (the 8 cap)."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope.get("path", "").split("/") if scope["type"] == "http" else []
        workspace = self.sim.workspaces.get(parts[3]) if len(parts) > 3 and parts[1:3] == ["v1", "workspaces"] else None
        if workspace is None:
            await self.app(scope, receive, send)
            return
        workspace.apply_due_writes()
        workspace.in_flight += 1
        workspace.max_in_flight = max(workspace.max_in_flight, workspace.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            workspace.in_flight -= 1


class PublicOrAdmin:
    """`/v1/...` goes straight to the lean public API; admin, docs and lifespan go to FastAPI."""

    def __init__(self, public: ASGIApp, admin: ASGIApp) -> None:
        self.public, self.admin = public, admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.public(scope, receive, send)
        else:
            await self.admin(scope, receive, send)


def create_app(sim: Simulator) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sim.webhooks.start()
        ticker = asyncio.create_task(sim.run_ticker())
        yield
        ticker.cancel()

    app = FastAPI(
        title="Tasklane simulator",
        lifespan=lifespan,
        docs_url="/_sim/docs",
        redoc_url=None,
        openapi_url="/_sim/openapi.json",
    )
    app.include_router(build_admin_router(sim))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "bad_request", "invalid request parameters")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("simulator bug while serving a request")
        return error_response(500, "internal_error", "the simulator failed on this request; see its log")

    return PublicOrAdmin(InFlightCounter(build_api_app(sim), sim), app)
