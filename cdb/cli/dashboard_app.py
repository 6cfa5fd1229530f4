"""The ``cdb dashboard`` web app: one read-only page and the JSON it polls (Starlette).

A :class:`Sampler` reads the pipeline's Redis state every ``interval`` seconds
(:func:`core.dashboard_state.read_snapshot`, the state ``cdb status`` reads) and the
cutover verdict every ``verdict_every`` seconds (:func:`migration.cutover.check_cutover`, while
the migration plug-in is installed; after week 4 the page says there is no cutover to check);
requests are answered from the latest sample, so a browser never adds load on Redis.
Routes: ``/`` (the page), ``/api/state`` (everything the page shows),
``/api/dead-letters/{topic}`` (the newest dead letters of a topic) and ``/healthz``.
With a token, every route but ``/healthz`` needs it (``?token=`` or ``Authorization: Bearer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cdb.cli.options import open_async_target
from cdb.cli.status import instance_row
from core.dashboard_state import History, Snapshot, read_snapshot
from core.logging import get_logger
from core.redis.dead_letters import DeadLetters
from core.redis.modes import AsyncClient, RedisTarget
from core.topics import KeySpace, ServiceName, Topic
from core.utils.clock import now_ms

__all__ = ["Sampler", "create_app"]

PAGE = Path(__file__).with_name("dashboard.html")
_SERIES_POINTS = 180  # points of each topic's chart sent to the page
_RAW_PREVIEW = 300  # bytes of a dead letter's payload shown
_log = get_logger("cdb.cli.dashboard")

VerdictCheck = Callable[[AsyncClient, KeySpace], Awaitable[dict[str, Any]]]


def _cutover_check() -> VerdictCheck | None:
    """The migration's GO/NO-GO check, or ``None`` once the plug-in is deleted (week 4)."""
    try:
        from migration.cutover import CheckOptions, check_cutover
    except ModuleNotFoundError as exc:
        if exc.name not in ("migration", "migration.cutover"):
            raise
        return None

    async def check(client: AsyncClient, keys: KeySpace) -> dict[str, Any]:
        return (await check_cutover(client, keys, CheckOptions())).to_dict()

    return check


class Sampler:
    """Keeps the latest look at the pipeline and its history, refreshed in the background."""

    def __init__(
        self, target: RedisTarget, prefix: str, *, interval_s: float = 1.0, verdict_every_s: float = 10.0
    ) -> None:
        self.target = target
        self.keys = KeySpace(prefix)
        self.interval_s = interval_s
        self.verdict_every_s = verdict_every_s
        self.history = History()
        self.snapshot: Snapshot | None = None
        self.verdict: dict[str, Any] | None = None
        self.error: str | None = None
        self.client: AsyncClient | None = None
        self.cutover = _cutover_check()

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set; Redis errors are shown on the page and retried."""
        next_verdict = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if self.client is None:
                    self.client = await open_async_target(self.target)
                self.snapshot = await read_snapshot(self.client, self.keys)
                self.history.add(self.snapshot)
                if self.cutover is not None and loop.time() >= next_verdict:
                    self.verdict = await self.cutover(self.client, self.keys)
                    next_verdict = loop.time() + self.verdict_every_s
                self.error = None
            except Exception as exc:  # the page says Redis is unreachable; never crash the server
                self.error = f"{type(exc).__name__}: {exc}"
                _log.warning("dashboard.sample_failed", error=self.error)
                await self.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
        await self.close()

    async def close(self) -> None:
        """Close the Redis client (a new one is opened on the next sample)."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()
            self.client = None

    def state(self) -> dict[str, Any]:
        """Everything the page shows, as plain JSON values."""
        snap = self.snapshot
        at = now_ms()
        rows = [instance_row(s, at) for s in snap.states] if snap else []
        validation: dict[str, dict[str, int]] = {}
        shadow: dict[str, dict[str, int]] = {}
        later: dict[str, dict[str, int]] = {}
        lag: dict[str, int] = {}
        for row in rows:
            for reason, n in row["validation_reasons"].items():
                by = validation.setdefault(row["service"], {})
                by[reason] = by.get(reason, 0) + n
            for name, n in row["shadow_by_field"].items():
                by = shadow.setdefault(row["service"], {})
                by[name] = by.get(name, 0) + n
            for version, n in row["shadow_later_by_version"].items():
                by = later.setdefault(row["service"], {})
                by[version] = by.get(version, 0) + n
            if ServiceName(row["service"]).consumes is not None:  # ws reads no stream: no group
                lag[row["service"]] = lag.get(row["service"], 0) + int(row["lag"])
        unowned = snap.unowned if snap else []
        for free in unowned:  # in no instance's lag, but the group has not finished it
            lag[free.service] = lag.get(free.service, 0) + free.waiting
        series = self.history.topic_series()
        return {
            "prefix": self.keys.prefix,
            "at_ms": snap.at_ms if snap else None,
            "error": self.error,
            "partitions": snap.partitions if snap else None,
            "instances": rows,
            "topics": {topic: points[-_SERIES_POINTS:] for topic, points in series.items()},
            "validation_errors": validation,
            "dead_letters": snap.dead_letters if snap else {},
            "shadow_mismatches": shadow,
            "shadow_later_versions": later,
            "lag": lag,
            "unowned": [asdict(free) for free in unowned],
            "verdict": self.verdict,
            "cutover_installed": self.cutover is not None,
            "timeline": self.history.timeline(),
        }

    async def dead_letters(self, topic: Topic, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` dead letters of ``topic``, payload shortened."""
        if self.client is None:
            return []
        out = []
        for letter in await DeadLetters(self.client, self.keys).read(topic, count=limit):
            raw = letter.raw[:_RAW_PREVIEW].decode("utf-8", errors="replace")
            out.append(
                {
                    "entry_id": letter.entry_id,
                    "service": letter.service,
                    "path": letter.path,
                    "profile": letter.profile,
                    "cause": letter.cause,
                    "reason": letter.reason,
                    "errors": letter.errors,
                    "time_ms": letter.time_ms,
                    "raw_preview": raw,
                    "raw_bytes": len(letter.raw),
                }
            )
        return out


def create_app(sampler: Sampler, *, token: str | None = None, run_sampler: bool = True) -> Starlette:
    """The app serving ``sampler``'s state; ``token`` (if set) guards every route but /healthz."""
    page = PAGE.read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def api_state(request: Request) -> Response:
        return JSONResponse(sampler.state(), headers={"Cache-Control": "no-store"})

    async def api_dead_letters(request: Request) -> Response:
        try:
            topic = Topic(request.path_params["topic"])
            limit = max(1, min(int(request.query_params.get("limit", "50")), 500))
        except ValueError:
            return JSONResponse({"error": "unknown topic or bad limit"}, status_code=404)
        return JSONResponse({"topic": topic.value, "dead_letters": await sampler.dead_letters(topic, limit)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": sampler.error is None and sampler.snapshot is not None})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(sampler.run(stop)) if run_sampler else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", api_state),
            Route("/api/dead-letters/{topic}", api_dead_letters),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_token_guard(token))] if token else [],
    )
    return app


Handler = Callable[[Request], Awaitable[Response]]


def _token_guard(token: str) -> Callable[[Request, Handler], Awaitable[Response]]:
    expected = token.encode()

    async def guard(request: Request, call_next: Handler) -> Response:
        if request.url.path != "/healthz":
            given = request.query_params.get("token", "")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:]
            if not hmac.compare_digest(given.encode(), expected):
                return JSONResponse({"error": "token required"}, status_code=401)
        return await call_next(request)

    return guard
