"""The `[plugins.rules_responder]` table (and each tenant's overrides)."""

from __future__ import annotations

from pydantic import Field, field_validator

from hub import PluginSettings

from .replies import DEFAULTS


class Settings(PluginSettings):
    """The offline responder for one tenant; it answers only where `enabled` is true."""

    enabled: bool = False
    """Answer clients' messages (a tenant turns it on in its own table, or every tenant in [plugins.rules_responder])."""
    replies: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Texts that replace the defaults, by language and key (see plugins/rules_responder/replies.py)."""
    slots_offered: int = Field(default=3, ge=1, le=9)
    """How many free times one answer offers."""
    search_days: int = Field(default=7, ge=1, le=31)
    """How far ahead free times are looked for when the client names no day."""
    misunderstandings_before_handoff: int = Field(default=2, ge=1, le=10)
    """Messages in a row the responder did not understand before it hands the conversation to a person."""

    @field_validator("replies")
    @classmethod
    def _known_keys(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for lang, texts in value.items():
            if lang not in DEFAULTS:
                raise ValueError(f"no texts for language {lang!r} (use {', '.join(DEFAULTS)})")
            unknown = sorted(set(texts) - set(DEFAULTS[lang]))
            if unknown:
                raise ValueError(f"unknown reply {unknown[0]!r} for {lang!r} (known: {', '.join(DEFAULTS[lang])})")
        return value
