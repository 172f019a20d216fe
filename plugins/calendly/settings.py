"""The `[plugins.calendly]` table (and each tenant's `[tenants.<slug>.plugins.calendly]`)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from hub import PluginSettings

DEFAULT_PHONE_QUESTIONS: tuple[str, ...] = (
    "Teléfono",
    "Telefono",
    "WhatsApp",
    "Phone",
    "Phone number",
    "Móvil",
    "Celular",
)


class Settings(PluginSettings):
    """Calendly for one tenant: each tenant has its own organisation, token and signing key."""

    token: SecretStr
    """A personal access token or an OAuth access token; without it the plugin is not configured."""
    api_base_url: str = "https://api.calendly.com"
    signing_key: SecretStr | None = None
    """The webhook subscription's signing key; when unset, the one `hub calendly subscribe` stored."""
    organization: str | None = None
    """The organisation URI; when unset, the token's user's current organisation (`GET /users/me`)."""
    tolerance_seconds: int = 180
    """How old (or how far in the future) a webhook signature's timestamp may be."""
    phone_questions: tuple[str, ...] = DEFAULT_PHONE_QUESTIONS
    """Booking-form questions whose answers are phone numbers (matched ignoring case and accents, as substrings)."""
    timeout_seconds: float = 15.0
    """Limit for one API request, retries for 429 not included."""

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("tolerance_seconds")
    @classmethod
    def _positive_tolerance(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value

    @field_validator("timeout_seconds")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value
