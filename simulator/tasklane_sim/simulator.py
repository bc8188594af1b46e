"""The whole simulated vendor: every workspace, the token index, webhooks and the background ticker."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import ConfigError, SimConfig, WorkspaceSpec
from .timestamps import now_ms, parse_ms
from .webhooks import WebhookDispatcher
from .workspace import Workspace

log = logging.getLogger("tasklane_sim")
TICK_SECONDS = 0.1
PURGE_EVERY_SECONDS = 60.0


@contextmanager
def _logged_failure(workspace: Workspace) -> Iterator[None]:
    """A background tick's failure is logged and leaves the other workspaces' ticks alone."""
    try:
        yield
    except Exception:
        log.exception("background tick failed for workspace %s", workspace.id)


class AuthProblem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Simulator:
    """Built from a config; generates every workspace's history before it serves a request."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.admin_token = config.resolve_admin_token()
        self._owns_data_dir = config.data_dir is None
        self.data_dir = Path(config.data_dir or tempfile.mkdtemp(prefix="tasklane-sim-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.as_of_ms = parse_ms(config.as_of) if config.as_of else now_ms()
        self.workspaces: dict[str, Workspace] = {}
        self.token_owner: dict[str, str] = {}
        self.webhooks = WebhookDispatcher()
        try:
            for spec in config.workspaces:
                self.add_workspace(spec)
        except BaseException:
            self.close()
            raise

    def add_workspace(self, spec: WorkspaceSpec) -> Workspace:
        if spec.id in self.workspaces:
            raise ConfigError(f"workspace {spec.id!r} already exists")
        tokens: dict[str, int | None] = {}
        for ref in spec.token_refs():
            token = ref.resolve(spec.id)
            owner = self.token_owner.get(token)
            if owner is not None and owner != spec.id:
                raise ConfigError(f"workspace {spec.id!r}: a token is already used by workspace {owner!r}")
            tokens[token] = parse_ms(ref.expires_at) if ref.expires_at else None
        started = time.perf_counter()
        seed = spec.seed if spec.seed is not None else self.config.seed
        workspace = Workspace(spec, seed, self.data_dir, tokens)
        workspace.generate(self.as_of_ms)
        workspace.on_visible = self._emit_webhook
        for token in tokens:
            self.token_owner[token] = spec.id
        self.workspaces[spec.id] = workspace
        log.info("workspace %s ready: %s in %.1fs", spec.id, spec.records.model_dump(), time.perf_counter() - started)
        return workspace

    def add_token(self, workspace: Workspace, token: str) -> None:
        owner = self.token_owner.get(token)
        if owner is not None and owner != workspace.id:
            raise ConfigError("that token already belongs to another workspace")
        workspace.tokens[token] = None
        workspace.revoked.discard(token)
        self.token_owner[token] = workspace.id

    def revoke_token(self, workspace: Workspace, token: str) -> bool:
        if token not in workspace.tokens:
            return False
        del workspace.tokens[token]
        workspace.revoked.add(token)
        return True

    def authenticate(self, workspace: Workspace, authorization: str | None) -> None:
        """Raise the contract's 401 or 403 for this request's Authorization header. A token that is
        not valid (unknown, revoked, expired) is a 401 wherever it is used; only a valid token of
        another workspace is a 403."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthProblem(
                401, "unauthorized", "missing or malformed Authorization header; send `Authorization: Bearer <token>`"
            )
        owner = self.workspaces.get(self.token_owner.get(token, ""))
        if owner is None:
            raise AuthProblem(401, "unauthorized", "unknown token")
        if token in owner.revoked:
            raise AuthProblem(401, "unauthorized", "this token was revoked; issue a new token for the workspace")
        if token not in owner.tokens:
            raise AuthProblem(401, "unauthorized", "unknown token")
        expires = owner.tokens[token]
        if expires is not None and now_ms() >= expires:
            raise AuthProblem(401, "unauthorized", "this token has expired; issue a new token for the workspace")
        if owner is not workspace:
            raise AuthProblem(403, "forbidden", f"this token does not belong to workspace {workspace.id!r}")

    def _emit_webhook(self, workspace: Workspace, event_type: str, resource_id: str, occurred_at: str) -> None:
        knobs = workspace.knobs
        self.webhooks.emit(
            workspace.id,
            event_type,
            resource_id,
            occurred_at,
            knobs.webhook_retry_base_seconds,
            knobs.webhook_retry_for_seconds,
        )

    async def run_ticker(self) -> None:
        """Background writes and late visibility ten times a second; each workspace's tombstone purge
        and export expiry once a minute, spread over the minute's ticks. (Purging every workspace in
        one tick held every request for tens of seconds at 20,000 workspaces.)"""
        last = time.monotonic()
        purges_due = 0.0
        next_purged = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            workspaces = list(self.workspaces.values())
            for workspace in workspaces:
                if workspace.writes_in_background:
                    with _logged_failure(workspace):
                        workspace.run_background_mutations(now - last)
                        workspace.apply_due_writes()
            purges_due += len(workspaces) * (now - last) / PURGE_EVERY_SECONDS
            for _ in range(min(int(purges_due), len(workspaces))):
                workspace = workspaces[next_purged % len(workspaces)]
                next_purged = (next_purged + 1) % len(workspaces)
                with _logged_failure(workspace):
                    workspace.purge_tombstones(now_ms())
                    workspace.exports.expire_results(time.time())
            purges_due -= int(purges_due)
            last = now

    def close(self) -> None:
        self.webhooks.stop()
        for workspace in self.workspaces.values():
            workspace.store.close()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
