"""The `[plugins.chatwoot]` table (and each tenant's `[tenants.<slug>.plugins.chatwoot]`)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from hub import ProviderSettings


class Settings(ProviderSettings):
    """Chatwoot for one tenant: one account, its token, the inbox the hub writes into, the webhook secret."""

    base_url: str
    """Where the tenant's Chatwoot runs, e.g. "https://chat.example.com" (also the Dashboard App's allowed origin)."""
    account_id: int
    api_access_token: SecretStr
    """A user's access token (Profile settings; an administrator's for `hub chatwoot setup`).

    An agent bot's token is refused by Chatwoot for contacts and attribute
    definitions, so it cannot keep the context in step."""
    inbox_id: int
    """The inbox the hub writes into (usually the tenant's WhatsApp inbox)."""
    webhook_secret: SecretStr | None = None
    """The secret Chatwoot shows for the account webhook (4.11+): every delivery must carry a valid signature."""
    agent_bot_secret: SecretStr | None = None
    """The agent bot's secret (4.13+), when an agent bot posts to the same URL; either secret verifies."""
    allow_unsigned: bool = False
    """Accept deliveries without a signature (Chatwoot older than 4.11). Anyone who knows the URL can then post events."""
    tolerance_seconds: int = 300
    """How old a signed delivery may be (and up to 30 s ahead of this clock)."""
    create_contacts: bool = False
    """Create a Chatwoot contact for a hub client who has none yet, when their context changes."""
    coalesce_seconds: float = 5.0
    """Attribute updates for one contact within this many seconds go out as one."""
    dashboard_app_key: SecretStr | None = None
    """The key in the Dashboard App URL; when unset, one the plugin generates and stores (`hub chatwoot setup` prints the URL)."""
    whatsapp_template: str | None = None
    """An approved WhatsApp template with one body parameter, used outside the 24-hour window."""
    whatsapp_template_language: str = "es"
    whatsapp_template_category: str = "UTILITY"
    bot_enabled: bool = False
    """Inbound messages from Chatwoot conversations go to the responders; off: every Chatwoot conversation is the agents'."""
    handoff_team_id: int | None = None
    """On a hand-off, assign the Chatwoot conversation to this team."""
    handoff_assignee_id: int | None = None
    """On a hand-off, assign the Chatwoot conversation to this agent."""
    timeout_seconds: float = 15.0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("webhook_secret", "agent_bot_secret", "dashboard_app_key")
    @classmethod
    def _blank_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty secret would make every forged webhook verify with HMAC(b"", ...).
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("tolerance_seconds")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("coalesce_seconds", "timeout_seconds")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value
