"""The HTTP app factory: health, plugin webhooks, JSON errors.

Reads like a table of contents: middlewares, the hub's life cycle and its
workers as cleanup contexts, `/health`, and one `/webhooks/<plugin>/`
sub-app per plugin that registers routes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub.admin_api import create_admin_api
from hub.api import create_api
from hub.console import add_console
from hub.core import Hub
from hub.metrics import metrics_middleware, public_metrics_route
from hub.request_ids import request_ids
from hub.request_body import BadBody, check_form, parse_json

HUB_KEY = web.AppKey("hub", Hub)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, detail: str = "") -> web.Response:
    """The one shape every error response has."""
    body: dict[str, str] = {"error": error}
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into JSON; an unexpected one is logged and answered 500 without a trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.reason.lower().replace(" ", "_")
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        return json_error(exc.status, reason, detail)
    except json.JSONDecodeError:
        return json_error(400, "malformed_json")
    except BadBody as exc:
        return web.json_response({"error": exc.error, "field": exc.field, "reason": exc.reason}, status=exc.status)
    except (DBAPIError, PoolTimeout, OSError) as exc:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _unavailable(exc):
            return _unexpected(request, exc)
        # The database is down, restarting or busy: the client (or the vendor) retries later; the pool
        # reconnects by itself on the next checkout. Only the type is logged: the text may quote parameters.
        structlog.get_logger("hub.http").warning("database_unavailable", path=request.path, error=type(exc).__name__)
        response = json_error(503, "database_unavailable", "the database is unavailable; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except Exception as exc:
        return _unexpected(request, exc)


RETRY_AFTER_SECONDS = 5
"""What a 503 for an unreachable database asks clients and vendors to wait."""


def _unavailable(exc: DBAPIError) -> bool:
    """Whether a driver error means the database cannot be used right now (rather than a bad statement)."""
    text = str(exc.orig).lower() if exc.orig is not None else ""
    words = ("database is locked", "connection", "refused", "shutdown", "shutting down", "terminat", "closed", "timeout",
             "cannot connect", "recovery mode", "starting up")
    return any(word in text for word in words)


def _unexpected(request: web.Request, exc: BaseException) -> web.Response:
    # Only the type: a driver's message carries the statement's parameters (names, bodies).
    structlog.get_logger("hub.http").error("unhandled_error", path=request.path, error=type(exc).__name__)
    return json_error(500, "internal_error")


@web.middleware
async def checked_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read every body within a time bound and refuse, at the edge, what no handler could store or send.

    A client that announces a body and never sends it gets 408 after
    `body_timeout_seconds`; JSON and form bodies pass `hub.request_body`'s
    checks (depth, integer range, NaN, NUL, lone surrogates, UTF-8) before
    any handler or signature check reads them.
    """
    if request.body_exists:
        if request.content.is_eof():
            raw = await request.read()  # all of it has arrived (a webhook's usual case): nothing to wait for or bound
        else:
            try:
                async with asyncio.timeout(request.app[HUB_KEY].config.hub.body_timeout_seconds):
                    raw = await request.read()
            except TimeoutError:
                return json_error(408, "request_timeout", "the request body did not arrive in time")
        kind = request.content_type.lower()
        if kind == "application/json" or kind.endswith("+json"):
            parse_json(raw)
        elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
            check_form(raw, kind)
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """GET /health: database and each plugin's channels; 503 when a required part is down."""
    ok, body = await request.app[HUB_KEY].health()
    return web.json_response(body, status=200 if ok else 503)


@web.middleware
async def webhook_rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each source address's requests to one plugin's webhooks, before the body is read; 429 past the limit."""
    plugin = request.path.split("/")[2] if request.path.startswith("/webhooks/") else None
    if plugin:
        hub = request.app[HUB_KEY]
        per_minute = hub.config.hub.webhook_requests_per_minute
        wait = await hub.rate_limits.hit(f"webhook:{plugin[:60]}:{request.remote or '-'}", per_minute)
        if wait is not None:
            response = json_error(429, "rate_limited", f"at most {per_minute} requests a minute from one source")
            response.headers["Retry-After"] = str(int(wait))
            return response
    return await handler(request)


def create_app(hub: Hub, *, run_workers: bool = True, manage_hub: bool = True) -> web.Application:
    """Build the aiohttp application for a hub.

    `manage_hub` opens and closes the hub with the app (off when a test or
    the CLI already holds it open); `run_workers` runs the inbox worker and
    the dispatcher in this process.
    """
    app = web.Application(
        middlewares=[request_ids, metrics_middleware(hub), errors_as_json, webhook_rate_limit, checked_body],
        client_max_size=hub.config.hub.max_body_bytes,
    )
    app[HUB_KEY] = hub

    async def hub_life(_app: web.Application) -> AsyncIterator[None]:
        if manage_hub:
            await hub.open()
        try:
            yield
        finally:
            if manage_hub:
                await hub.close()

    async def workers(_app: web.Application) -> AsyncIterator[None]:
        async with hub.workers():
            yield

    app.cleanup_ctx.append(hub_life)
    if run_workers:
        app.cleanup_ctx.append(workers)
    app.router.add_get("/health", health, name="health")
    add_console(app, hub)  # issue 12: the web console at /
    public_metrics_route(app, hub)  # issue 12: /metrics, only with HUB_METRICS_TOKEN
    # Before /api/v1/: the admin routes must not reach the tenant-key check of the API sub-app.
    app.add_subapp("/api/v1/admin/", create_admin_api(hub, [errors_as_json]))
    app.add_subapp("/api/v1/", create_api(hub, [errors_as_json]))
    for plugin, routes in hub.hooks.call_sync("register_routes", hub=hub):
        # No middleware of its own: the app's (errors_as_json among them) already wrap every webhook.
        sub = web.Application(client_max_size=hub.config.hub.max_body_bytes)
        sub[HUB_KEY] = hub
        sub.add_routes(routes)
        app.add_subapp(f"/webhooks/{plugin}/", sub)
    return app
