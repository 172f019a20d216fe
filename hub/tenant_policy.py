"""A tenant's policy: when its reminders go out, which channels it tries, how often, with whose templates.

Declared and validated once, here. `TenantSettings` (a `[tenants.<slug>]`
table of config.toml) and `TenantInfo` (what the core reads on every event)
both are a `TenantPolicy` with the tenant's identity beside it, so a policy
key is read as `tenant.reminders` wherever a tenant is at hand; the
database keeps the policy as JSON in `tenants.settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.business import BusinessProfile
from hub.phones import normalize_email
from hub.reminders import QuietHours, parse_offset


class TenantPolicy(BaseModel):
    """The policy keys of a tenant, with their defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reminders: tuple[str, ...] = ("24h", "2h", "30m")
    """How long before an appointment each reminder goes out."""
    quiet_hours: str | None = None
    """Local hours when no reminder is sent, e.g. "21:00-08:00"; reminders move earlier."""
    channel_order: tuple[str, ...] = ("whatsapp", "sms", "email")
    """Mediums or channel names to try in order when a notification names none."""
    max_attempts: int = Field(default=5, ge=1, le=50)
    """Tries per channel for transient failures (and channel crashes) before falling through to the next."""
    templates_dir: str | None = None
    """The tenant's own template folder, searched before the shared ones."""
    responder_timeout: float = Field(default=20.0, gt=0, le=300)
    """Seconds a responder may take to answer one message; past it the message gets no reply."""
    handoff_release_after: str = "12h"
    """How long a conversation handed to a human stays theirs with no release; then the bot answers again."""
    business: BusinessProfile = Field(default_factory=BusinessProfile)
    """What the responders tell clients: services, prices, address, opening hours (hub/business.py)."""
    handoff_email: str | None = None
    """Where hand-offs are emailed (through the outbox) when no plugin, such as Chatwoot, takes them."""
    api_requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    """REST API requests the tenant may make per minute, across every process; past it: 429 with Retry-After."""

    @field_validator("reminders")
    @classmethod
    def _offsets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_offset(text)
        return value

    @field_validator("handoff_release_after")
    @classmethod
    def _release_after(cls, value: str) -> str:
        parse_offset(value)
        return value

    @field_validator("handoff_email")
    @classmethod
    def _handoff_email(cls, value: str | None) -> str | None:
        if not value:
            return None
        return normalize_email(value)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value:
            QuietHours.parse(value)
        return value or None

    @classmethod
    def keys(cls) -> frozenset[str]:
        """The names of the policy keys (also on the models that include them)."""
        return frozenset(TenantPolicy.model_fields)

    @classmethod
    def stored_part(cls, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """The policy keys of a stored JSON document (other keys are not the policy's)."""
        return {key: value for key, value in (stored or {}).items() if key in cls.keys()}

    def policy(self) -> TenantPolicy:
        """Only the policy, without what a subclass adds."""
        return TenantPolicy.model_validate(self.model_dump(include=set(self.keys())))

    def to_stored(self) -> dict[str, Any]:
        """The policy as the JSON kept in `tenants.settings`."""
        return self.model_dump(mode="json", include=set(self.keys()))
