"""The HTTP app factory: health, plugin webhooks, JSON errors.

Reads like a table of contents: middlewares, the hub's life cycle and its
workers as cleanup contexts, `/health`, and one `/webhooks/<plugin>/`
sub-app per plugin that registers routes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from hub.admin_api import create_admin_api
from hub.api import create_api
from hub.console import add_console
from hub.core import Hub
from hub.metrics import metrics_middleware, public_metrics_route
from hub.request_ids import request_ids

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
    except Exception as exc:
        structlog.get_logger("hub.http").error(
            "unhandled_error", path=request.path, error=f"{type(exc).__name__}: {exc}"
        )
        return json_error(500, "internal_error")


async def health(request: web.Request) -> web.Response:
    """GET /health: database and each plugin's channels; 503 when a required part is down."""
    ok, body = await request.app[HUB_KEY].health()
    return web.json_response(body, status=200 if ok else 503)


def create_app(hub: Hub, *, run_workers: bool = True, manage_hub: bool = True) -> web.Application:
    """Build the aiohttp application for a hub.

    `manage_hub` opens and closes the hub with the app (off when a test or
    the CLI already holds it open); `run_workers` runs the inbox worker and
    the dispatcher in this process.
    """
    app = web.Application(middlewares=[request_ids, metrics_middleware(hub), errors_as_json], client_max_size=hub.config.hub.max_body_bytes)
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
        sub = web.Application(middlewares=[errors_as_json], client_max_size=hub.config.hub.max_body_bytes)
        sub[HUB_KEY] = hub
        sub.add_routes(routes)
        app.add_subapp(f"/webhooks/{plugin}/", sub)
    return app
