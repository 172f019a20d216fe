"""A tenant's business profile: what the responders tell clients (services, prices, address, hours).

It is a tenant policy key (`business`, a `[tenants.<slug>.business]` table in
config.toml, kept with the rest of the policy in `tenants.settings`), so
every responder of a tenant reads the same facts through
`HubPort.business_profile(tenant)`. Nothing here is invented by a model:
a responder answers prices and hours only from this profile.
"""

from __future__ import annotations

import unicodedata

from pydantic import BaseModel, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Service(BaseModel):
    """One thing the business books: its name, price and the booking source's event type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    price: str | None = None
    """As the client should read it: "45 €", "$800 MXN", "desde 30 €"."""
    duration_minutes: int | None = Field(default=None, gt=0, le=24 * 60)
    event_type: str | None = None
    """The Calendly event type (URI, slug or name) booked for it; default: the profile's `event_type`."""
    aliases: tuple[str, ...] = ()
    """Other words clients use for it ("limpieza", "cleaning")."""
    description: str | None = None


class BusinessProfile(BaseModel):
    """The facts responders may state; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    phone: str | None = None
    """The number clients may call (said by responders, never used to send)."""
    hours: dict[str, str] = Field(default_factory=dict)
    """Opening hours by day ("mon" ... "sun", or ranges "mon-fri"), e.g. {"mon-fri" = "9:00-19:00", "sat" = "10:00-14:00"}."""
    services: tuple[Service, ...] = ()
    event_type: str | None = None
    """The Calendly event type booked when a client names no service."""
    about: str | None = None
    """Anything else worth telling: parking, insurance accepted, payment methods."""

    @field_validator("hours")
    @classmethod
    def _days(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            for part in key.lower().split("-"):
                if part.strip() not in DAYS:
                    raise ValueError(f"unknown day {part!r} in {key!r} (use {', '.join(DAYS)} or a range like mon-fri)")
        return value

    def service(self, name: str | None) -> Service | None:
        """The service with this name or alias (case and accents ignored), or None."""
        if not name:
            return None
        wanted = _fold(name)
        for service in self.services:
            if wanted in {_fold(service.name), *(_fold(a) for a in service.aliases)}:
                return service
        return None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold().strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
