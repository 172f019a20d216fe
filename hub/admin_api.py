"""The admin API, `/api/v1/admin`: tenants and their plugin settings, for an operator's admin key.

The same operations as `hub tenants show` and `hub tenants configure`, with
the same validation (the plugin's own settings model) and the same masking:
a secret is accepted here but never sent back. Keys are made with
`hub admin-keys create`; a tenant's API key is refused with 403.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.admin_keys import key_kind
from hub.core import Hub
from hub.errors import UnknownTenant
from hub.secret_keys import SecretKeyError
from hub.tenant_settings import SettingsProblem, UnknownPlugin

ADMIN_HUB_KEY = web.AppKey("admin_hub", Hub)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, error: str, **extra: Any) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": error, **extra}, status=status)


@web.middleware
async def authenticate_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer admin key, or 401; a tenant's key is recognised and refused with 403."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return problem(401, "unauthorized", detail="send Authorization: Bearer <admin key> (make one with `hub admin-keys create`)")
    async with request.app[ADMIN_HUB_KEY].db.sessions() as session:
        kind = await key_kind(session, key.strip())
    if kind == "tenant":
        return problem(403, "forbidden", detail="a tenant API key cannot use the admin API: use an admin key")
    if kind != "admin":
        return problem(401, "unauthorized", detail="unknown or revoked admin key")
    try:
        return await handler(request)
    except SecretKeyError as exc:  # the deployment's set-up, not the request: say what to fix
        return problem(503, "secret_key_unavailable", detail=str(exc))


class AdminApi:
    """Handlers over one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def _tenant_json(self, slug: str) -> dict[str, Any]:
        info = await self.hub.tenants.get(slug)
        fields = info.model_dump(exclude={"id"})
        return {**fields, "source": "config" if slug in self.hub.config.tenants else "database"}

    async def list_tenants(self, request: web.Request) -> web.Response:
        """GET /tenants: every tenant."""
        return web.json_response({"tenants": [await self._tenant_json(info.slug) for info in await self.hub.tenants.all()]})

    async def get_tenant(self, request: web.Request) -> web.Response:
        """GET /tenants/{slug}: the tenant and every plugin's effective settings, secrets masked."""
        slug = request.match_info["slug"]
        try:
            tenant = await self._tenant_json(slug)
        except UnknownTenant as exc:
            return problem(404, "not_found", detail=str(exc))
        views = await self.hub.tenant_settings.views(slug)
        return web.json_response({"tenant": tenant, "plugins": [view.as_json() for view in views]})

    async def get_plugin(self, request: web.Request) -> web.Response:
        """GET /tenants/{slug}/plugins/{plugin}: one plugin's effective settings for the tenant."""
        slug, plugin = request.match_info["slug"], request.match_info["plugin"]
        try:
            await self.hub.tenants.get(slug)
            view = await self.hub.tenant_settings.view(slug, plugin)
        except (UnknownTenant, UnknownPlugin) as exc:
            return problem(404, "not_found", detail=str(exc))
        return web.json_response(view.as_json())

    async def put_plugin(self, request: web.Request) -> web.Response:
        """PUT: the body replaces every key the tenant stored for the plugin (config.toml and defaults fill the rest)."""
        return await self._change(request, replace=True)

    async def patch_plugin(self, request: web.Request) -> web.Response:
        """PATCH: a JSON merge patch (RFC 7396) of the tenant's stored keys; null removes a key."""
        return await self._change(request, replace=False)

    async def _change(self, request: web.Request, *, replace: bool) -> web.Response:
        slug, plugin = request.match_info["slug"], request.match_info["plugin"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return problem(400, "malformed_json")
        if not isinstance(body, dict):
            return problem(422, "validation_failed", plugin=plugin, field="body", reason="must be a JSON object of settings")
        if replace:
            changes, unset = body, []
        else:
            changes = {k: v for k, v in body.items() if v is not None}
            unset = [k for k, v in body.items() if v is None]
        try:
            await self.hub.tenants.get(slug)
            view = await self.hub.tenant_settings.configure(slug, plugin, changes, unset, replace=replace)
        except (UnknownTenant, UnknownPlugin) as exc:
            return problem(404, "not_found", detail=str(exc))
        except SettingsProblem as exc:
            return problem(422, "validation_failed", plugin=exc.plugin, field=exc.key, reason=exc.problem)

        return web.json_response(view.as_json())


def create_admin_api(hub: Hub, middlewares: list[Any]) -> web.Application:
    """The /api/v1/admin sub-application."""
    api = AdminApi(hub)
    app = web.Application(middlewares=[*middlewares, authenticate_admin], client_max_size=hub.config.hub.max_body_bytes)
    app[ADMIN_HUB_KEY] = hub
    app.router.add_get("/tenants", api.list_tenants)
    app.router.add_get("/tenants/{slug}", api.get_tenant)
    app.router.add_get("/tenants/{slug}/plugins/{plugin}", api.get_plugin)
    app.router.add_put("/tenants/{slug}/plugins/{plugin}", api.put_plugin)
    app.router.add_patch("/tenants/{slug}/plugins/{plugin}", api.patch_plugin)
    return app
