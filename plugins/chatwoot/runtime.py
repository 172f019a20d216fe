"""The plugin's per-hub state: the shared HTTP session, per-tenant clients, tenant lookup and Dashboard App keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hub import HubError, HubPort

from .client import ChatwootClient
from .settings import Settings

if TYPE_CHECKING:
    import aiohttp

# aiohttp loads when the plugin first talks to its API: every `hub` command loads this module.

NAME = "chatwoot"
IDENTITY = "chatwoot"
"""Identity kind of a Chatwoot contact id on the hub."""
CHANNEL = "chatwoot"
MEDIUM = "chatwoot"
SOURCE = "chatwoot"
DASHBOARD_KEY = "dashboard"
"""`hub.set_plugin_data` key of the Dashboard App's keys: app_key (in its URL) and signing_key (for contact tokens)."""
TOKEN_SECONDS = 900
WEBHOOK_PATH = "/webhooks/chatwoot/events"
APP_PATH = "/webhooks/chatwoot/app"


class NotConfigured(HubError):
    """The tenant has no Chatwoot settings."""


class BadToken(HubError):
    """A Dashboard App token that is malformed, forged, expired or for another tenant."""


class ChatwootPlugin:
    """Everything the Chatwoot hooks, routes, channel, jobs and commands share for one hub."""

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def of(cls, hub: HubPort) -> ChatwootPlugin:
        """The one instance for this hub, made on first use."""
        return hub.runtime(NAME, cls)

    # --- settings ---------------------------------------------------------------

    def settings(self, tenant: str) -> Settings | None:
        """The tenant's Chatwoot settings, or None."""
        return self.hub.settings_for(NAME, tenant)

    def require_settings(self, tenant: str) -> Settings:
        """The tenant's settings; raises NotConfigured naming the table to add."""
        settings = self.settings(tenant)
        if settings is None:
            raise NotConfigured(f"Chatwoot is not configured for tenant {tenant}: add [tenants.{tenant}.plugins.chatwoot]")
        return settings

    def tenants_for_account(self, account_id: Any) -> list[str]:
        """The configured tenants whose Chatwoot account has this id."""
        return [
            slug for slug in self.hub.configured_tenants(NAME)
            if str(self.require_settings(slug).account_id) == str(account_id)
        ]

    # --- HTTP -------------------------------------------------------------------

    async def open(self) -> None:
        """Open the shared HTTP session (from `on_startup`)."""
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the shared HTTP session (from `on_shutdown`)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def client(self, tenant: str) -> ChatwootClient:
        """An API client with the tenant's account, token and base URL; raises NotConfigured."""
        import aiohttp

        settings = self.require_settings(tenant)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return ChatwootClient(
            self._session, base_url=settings.base_url, account_id=settings.account_id,
            token=settings.api_access_token.get_secret_value(), timeout_seconds=settings.timeout_seconds,
        )

    def webhook_url(self, tenant: str) -> str:
        """Where the tenant's Chatwoot should post its webhooks."""
        return f"{self.hub.public_url}{WEBHOOK_PATH}?tenant={quote(tenant, safe='')}"

    # --- Dashboard App keys and tokens ---------------------------------------------

    async def dashboard_keys(self, tenant: str, *, rotate: bool = False) -> dict[str, str]:
        """The tenant's app key (configured, else stored) and token signing key, made on first use."""
        stored = await self.hub.get_plugin_data(NAME, tenant, DASHBOARD_KEY) or {}
        if rotate or not stored.get("signing_key") or not stored.get("app_key"):
            stored = {"app_key": secrets.token_urlsafe(24), "signing_key": secrets.token_urlsafe(32)}
            await self.hub.set_plugin_data(NAME, tenant, DASHBOARD_KEY, stored)
        settings = self.require_settings(tenant)
        app_key = settings.dashboard_app_key.get_secret_value() if settings.dashboard_app_key else stored["app_key"]
        return {"app_key": app_key, "signing_key": stored["signing_key"]}

    async def dashboard_url(self, tenant: str) -> str:
        """The URL to register in Chatwoot as the tenant's Dashboard App."""
        keys = await self.dashboard_keys(tenant)
        return f"{self.hub.public_url}{APP_PATH}?tenant={quote(tenant, safe='')}&key={quote(keys['app_key'], safe='')}"

    async def issue_token(self, tenant: str, contact_id: int, *, now: float | None = None) -> str:
        """A token that lets the Dashboard App read and act on one hub contact for TOKEN_SECONDS."""
        keys = await self.dashboard_keys(tenant)
        claims = {"t": tenant, "c": contact_id, "exp": int((now or time.time()) + TOKEN_SECONDS)}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        mac = hmac.new(keys["signing_key"].encode(), body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    async def check_token(self, tenant: str, token: str, *, now: float | None = None) -> int:
        """The hub contact id a token is scoped to; raises BadToken."""
        body, _, mac = token.partition(".")
        if not body or not mac:
            raise BadToken("malformed token")
        keys = await self.dashboard_keys(tenant)
        expected = hmac.new(keys["signing_key"].encode(), body.encode(), hashlib.sha256).hexdigest()
        if not mac.isascii() or not hmac.compare_digest(expected, mac):
            raise BadToken("token does not verify")
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            raise BadToken("malformed token") from None
        if claims.get("t") != tenant or not isinstance(claims.get("c"), int):
            raise BadToken("token is for another tenant")
        if int(claims.get("exp", 0)) < (now or time.time()):
            raise BadToken("token expired")
        return int(claims["c"])
