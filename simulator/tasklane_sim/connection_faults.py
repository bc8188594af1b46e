"""Faults below HTTP: a connection reset before any byte, and a body cut short.

uvicorn does not hand the transport to the application, so a small protocol subclass puts it in
the ASGI scope's extensions; the fault responses use it to abort or close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_KEY = "tasklane_sim.transport"


class FaultableHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, exposing the connection's transport to the application."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: self.transport}


async def _wait_disconnect(receive: Receive) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(2):
            while (await receive())["type"] != "http.disconnect":
                pass


class DroppedConnection(Response):
    """The server resets the connection without answering (the client sees a connection error)."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"][TRANSPORT_KEY].abort()
        await _wait_disconnect(receive)


class TruncatedResponse(Response):
    """Half of the body, then the connection closes.

    `short_read=True` announces the full Content-Length (an incomplete read for the client);
    otherwise the cut body is sent as complete, valid HTTP carrying undecodable JSON.
    """

    def __init__(self, full: Response, short_read: bool) -> None:
        self.full, self.short_read = full, short_read
        super().__init__(status_code=full.status_code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body: bytes = self.full.body
        cut = body[: max(len(body) // 2, 1)]
        headers: list[Any] = [(k, v) for k, v in self.full.raw_headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body) if self.short_read else len(cut)).encode()))
        await send({"type": "http.response.start", "status": self.full.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": cut, "more_body": self.short_read})
        if self.short_read:
            scope["extensions"][TRANSPORT_KEY].close()
            await _wait_disconnect(receive)
