"""The `[plugins.twilio_messaging]` table: which account, which senders, which WhatsApp templates."""

from __future__ import annotations

import re

from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator

from hub import PluginSettings, ProviderSettings

DEFAULT_API_BASE_URL = "https://api.twilio.com"

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
# Twilio's alphanumeric sender IDs (common in Spain): up to 11 letters, digits and spaces, one letter at least.
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")


def locale_key(tag: str) -> str:
    """A locale written the one way the template mapping is keyed: `es`, `es-MX`, `pt-BR`."""
    language, *rest = re.split(r"[-_]", tag.strip())
    return "-".join([language.lower(), *(part.upper() if len(part) == 2 else part for part in rest)])


class ContentTemplate(PluginSettings):
    """One approved WhatsApp Content template: its SID and how to fill its numbered variables."""

    content_sid: str
    variables: dict[str, str] = Field(default_factory=dict)
    """Variable number -> Jinja expression over the notification's render context."""

    @field_validator("content_sid")
    @classmethod
    def _content_sid(cls, value: str) -> str:
        if not _CONTENT_SID.fullmatch(value.strip()):
            raise ValueError("must be a Content SID: HX followed by 32 hex digits")
        return value.strip()


class Settings(ProviderSettings):
    """[plugins.twilio_messaging]; `sandbox = true` (the default) builds every message and sends none."""

    account_sid: str
    auth_token: SecretStr
    """Authenticates API calls and is the key Twilio signs webhooks with."""
    api_base_url: str = DEFAULT_API_BASE_URL
    whatsapp_from: str | None = None
    """The WhatsApp sender number (E.164; a `whatsapp:` prefix is accepted)."""
    sms_from: str | None = None
    """The SMS sender: a number in E.164, or an alphanumeric sender ID."""
    messaging_service_sid: str | None = None
    """A Messaging Service (MG...): sends for a medium with no sender number of its own."""
    public_url: str | None = None
    """The URL Twilio reaches the hub at (behind a proxy); default: [hub] public_url."""
    webhook_signing_key: SecretStr | None = None
    """The SharedKey secret for webhooks signed with HMAC-SHA256 (X-Twilio-Webhooks-Signature-Settings)."""
    help_text: str | None = None
    """The answer to HELP / AYUDA; unset lets other responders answer."""
    content_templates: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    """Locale -> notification kind -> the WhatsApp template sent outside the 24-hour window
    (each checked as a `ContentTemplate`, kept as plain values so `hub plugins --json` can print them)."""
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str) -> str:
        if not _ACCOUNT_SID.fullmatch(value.strip()):
            raise ValueError("must be an Account SID: AC followed by 32 hex digits")
        return value.strip()

    @field_validator("messaging_service_sid")
    @classmethod
    def _service_sid(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE_SID.fullmatch(value.strip()):
            raise ValueError("must be a Messaging Service SID: MG followed by 32 hex digits")
        return value.strip() if value else None

    @field_validator("whatsapp_from")
    @classmethod
    def _whatsapp_number(cls, value: str | None) -> str | None:
        if not value:
            return None
        # Kept as written: Twilio matches the sender it registered character for character.
        number = value.strip().removeprefix("whatsapp:")
        if not _E164.fullmatch(number):
            raise ValueError(f"not a number in E.164 form (+ and digits only): {value!r}")
        return number

    @field_validator("sms_from")
    @classmethod
    def _sms_sender(cls, value: str | None) -> str | None:
        if not value:
            return None
        text = value.strip()
        if _E164.fullmatch(text) or _ALPHANUMERIC_SENDER.fullmatch(text):
            return text
        raise ValueError("must be a number in E.164 form (+ and digits only) or an alphanumeric sender ID of up to 11 characters")

    @field_validator("api_base_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// or http://")
        return value.rstrip("/")

    @field_validator("content_templates")
    @classmethod
    def _templates(cls, value: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
        keyed: dict[str, dict[str, dict[str, Any]]] = {}
        for tag, kinds in value.items():
            if not _LOCALE.fullmatch(tag.strip()):
                raise ValueError(f"not a locale: {tag!r} (use es, es-MX, pt-BR ...)")
            checked: dict[str, dict[str, Any]] = {}
            for kind, table in kinds.items():
                try:
                    checked[kind] = ContentTemplate.model_validate(table).model_dump()
                except ValidationError as exc:
                    problem = exc.errors()[0]
                    where = ".".join(str(part) for part in (tag, kind, *problem["loc"]))
                    raise ValueError(f"{where}: {problem['msg'].removeprefix('Value error, ')}") from None
            keyed[locale_key(tag)] = checked
        return keyed

    def content_template(self, locale: str, kind: str) -> ContentTemplate | None:
        """The template mapped for exactly this locale key and kind, or None."""
        table = self.content_templates.get(locale, {}).get(kind)
        return ContentTemplate.model_validate(table) if table is not None else None
