"""The plugin's per-hub state: the shared HTTP session, per-tenant clients and signing keys."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hub import HubError, HubPort

from .client import CalendlyClient, CalendlyError
from .settings import Settings
from .signature import SignatureHeader, is_fresh, matches

if TYPE_CHECKING:
    import aiohttp

# aiohttp loads when the plugin first talks to its API: every `hub` command loads this module.

NAME = "calendly"
SUBSCRIPTION_KEY = "subscription"
"""`hub.set_plugin_data` key of what `hub calendly subscribe` stored: uri, callback_url, signing_key..."""
WEBHOOK_PATH = "/webhooks/calendly/events"


class NotConfigured(HubError):
    """The tenant has no Calendly settings (no token)."""


class CalendlyPlugin:
    """Everything the Calendly hooks, routes, tools and commands share for one hub."""

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub
        self._session: aiohttp.ClientSession | None = None
        self._users: dict[str, dict[str, Any]] = {}
        """Tenant -> its token's user, from /users/me."""

    @classmethod
    def of(cls, hub: HubPort) -> CalendlyPlugin:
        """The one instance for this hub, made on first use.

        Every hook, route and command receives the hub and nothing else of
        the plugin's, and plugins keep no module-level state, so the
        instance hangs off the hub it belongs to.
        """
        return hub.runtime(NAME, cls)

    # --- settings ---------------------------------------------------------------

    def settings(self, tenant: str) -> Settings | None:
        """The tenant's Calendly settings ([plugins.calendly] with its overrides), or None."""
        return self.hub.settings_for(NAME, tenant)

    def require_settings(self, tenant: str) -> Settings:
        """The tenant's Calendly settings; raises NotConfigured (a HubError) naming the table to add."""
        settings = self.settings(tenant)
        if settings is None:
            raise NotConfigured(
                f"Calendly is not configured for tenant {tenant}: run `hub tenants configure {tenant} calendly token=...` "
                f"(or add [tenants.{tenant}.plugins.calendly] with a token)"
            )
        return settings

    def configured_tenants(self) -> list[str]:
        """The tenants that have Calendly settings (config.toml and database)."""
        return self.hub.configured_tenants(NAME)

    def configured(self) -> bool:
        """Whether any tenant (or the plugin's own table) has Calendly settings."""
        return self.hub.settings_for(NAME) is not None or bool(self.configured_tenants())

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

    def client(self, tenant: str) -> CalendlyClient:
        """An API client with the tenant's token and base URL; raises NotConfigured."""
        import aiohttp

        settings = self.require_settings(tenant)
        if self._session is None or self._session.closed:
            # A hub opened before Calendly was configured, or a command run without on_startup.
            self._session = aiohttp.ClientSession()
        return CalendlyClient(
            self._session, base_url=settings.api_base_url, token=settings.token.get_secret_value(), tenant=tenant,
            timeout_seconds=settings.timeout_seconds,
        )

    async def me(self, tenant: str, client: CalendlyClient | None = None) -> dict[str, Any]:
        """The token's user (`GET /users/me`), read once per tenant and process."""
        if tenant not in self._users:
            self._users[tenant] = await (client or self.client(tenant)).current_user()
        return self._users[tenant]

    async def owner(self, tenant: str, client: CalendlyClient | None = None) -> tuple[str, str]:
        """(user URI, organisation URI) of the tenant's token; the `organization` setting wins."""
        settings = self.require_settings(tenant)
        me = await self.me(tenant, client)
        organization = settings.organization or me.get("current_organization")
        if not isinstance(organization, str) or not isinstance(me.get("uri"), str):
            raise CalendlyError(f"Calendly /users/me for tenant {tenant} names no user or organization")
        return me["uri"], organization

    # --- webhooks ---------------------------------------------------------------

    def callback_url(self, tenant: str) -> str:
        """Where Calendly should post this tenant's events (the tenant in the query saves trying every key)."""
        return f"{self.hub.public_url}{WEBHOOK_PATH}?tenant={quote(tenant, safe='')}"

    async def subscription(self, tenant: str) -> dict[str, Any] | None:
        """What `hub calendly subscribe` stored for the tenant, or None."""
        return await self.hub.get_plugin_data(NAME, tenant, SUBSCRIPTION_KEY)

    async def store_subscription(self, tenant: str, value: dict[str, Any]) -> None:
        """Keep a webhook subscription (with its signing key) for the tenant, replacing the last one."""
        await self.hub.set_plugin_data(NAME, tenant, SUBSCRIPTION_KEY, value)

    async def signing_key(self, tenant: str) -> str | None:
        """The configured signing key, else the stored subscription's, else None."""
        settings = self.settings(tenant)
        if settings is None:
            return None
        if settings.signing_key is not None:
            return settings.signing_key.get_secret_value()
        stored = await self.subscription(tenant)
        key = (stored or {}).get("signing_key")
        return key if isinstance(key, str) and key else None

    async def verify(self, parsed: SignatureHeader, body: bytes, hint: str | None) -> tuple[str | None, str]:
        """(the tenant whose key signed this body, "") or (None, why it was refused).

        With `?tenant=` only that tenant's key is tried; without it, every
        configured tenant's. A signature that verifies but is older (or
        further ahead) than that tenant's tolerance is refused as stale.
        """
        candidates = [hint] if hint else self.configured_tenants()
        now = time.time()
        stale = False
        for slug in candidates:
            try:
                key = await self.signing_key(slug)
            except HubError:  # an unknown tenant in the query
                continue
            if key is None or matches(parsed, [key], body) is None:
                continue
            settings = self.require_settings(slug)
            if is_fresh(parsed, now, settings.tolerance_seconds):
                return slug, ""
            stale = True
        return None, "stale signature" if stale else "signature does not verify"
