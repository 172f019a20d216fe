"""The `twilio-whatsapp` and `twilio-sms` channels: building a Message create request and sending it.

`build_request` decides everything that goes to Twilio (sender, recipient,
free-form body or Content template, status callback), so sandbox mode runs
exactly the same decisions as a live send and fails the same way.
`TwilioClients` holds one SDK client per account, token and base URL, each
with its own aiohttp session, opened on first use inside the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog

from hub import WHATSAPP_ID, Delivery, Health, HubPort, OutboundMessage, PermanentError, TemplateError, TransientError

from .settings import ContentTemplate, Settings, locale_key

if TYPE_CHECKING:
    from twilio.base.exceptions import TwilioException
    from twilio.rest import Client

# The Twilio SDK (and aiohttp's client under it) loads when a message is first sent or checked, not
# with the plugin: every `hub` command and every hub, with Twilio configured or not, load this module.

NAME = "twilio_messaging"
STATUS_PATH = f"/webhooks/{NAME}/status"
WHATSAPP_PREFIX = "whatsapp:"

WINDOW = dt.timedelta(hours=24)
# A free-form message queued at 23h59m may reach WhatsApp after the window closed
# (and come back as 63016); near the edge the approved template is the safe choice.
WINDOW_MARGIN = dt.timedelta(minutes=5)

# Twilio codes that never succeed on a retry, with what they mean for an operator.
PERMANENT_CODES: Mapping[int, str] = {
    21211: "invalid 'To' number",
    21610: "the recipient replied STOP to this sender",
    21614: "the 'To' number cannot receive SMS (not a mobile number)",
    63016: "free-form WhatsApp message outside the 24-hour window",
}
OPTED_OUT_CODE = 21610
AUTH_CODE = 20003
RATE_LIMIT_CODE = 20429


@dataclass(frozen=True)
class Sender:
    """What a channel is: its hub name and medium."""

    name: str
    medium: str


WHATSAPP = Sender("twilio-whatsapp", "whatsapp")
SMS = Sender("twilio-sms", "sms")
CHANNEL_NAMES = frozenset({WHATSAPP.name, SMS.name})


def public_base(settings: Settings, hub_public_url: str) -> str:
    """Where Twilio reaches this hub: the plugin's `public_url`, else the hub's."""
    return (settings.public_url or hub_public_url).rstrip("/")


def status_callback_url(settings: Settings, hub_public_url: str, tenant: str) -> str:
    """The StatusCallback of every send; `tenant` tells the status handler whose token signed it."""
    return f"{public_base(settings, hub_public_url)}{STATUS_PATH}?tenant={quote(tenant, safe='')}"


def within_window(last_inbound_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether WhatsApp still allows a free-form message: the contact wrote within the last 24 hours."""
    if last_inbound_at is None:
        return False
    if last_inbound_at.tzinfo is None:
        last_inbound_at = last_inbound_at.replace(tzinfo=dt.UTC)  # the hub stores UTC
    return now - last_inbound_at < WINDOW - WINDOW_MARGIN


def locale_candidates(locale: str) -> list[str]:
    """`es-MX` then `es`: a template in the person's language, never one in another language."""
    key = locale_key(locale)
    return list(dict.fromkeys([key, key.split("-")[0]]))


def find_template(settings: Settings, locale: str, kind: str) -> tuple[str, ContentTemplate] | None:
    """(the locale it was found under, the template) for a kind, with language fallback; None if unmapped."""
    for candidate in locale_candidates(locale):
        template = settings.content_template(candidate, kind)
        if template is not None:
            return candidate, template
    return None


def build_request(
    message: OutboundMessage,
    settings: Settings,
    sender: Sender,
    *,
    hub: HubPort,
    tenant_locale: str,
    tenant_timezone: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The keyword arguments of `messages.create_async` for this message; PermanentError if it cannot be sent."""
    request: dict[str, Any] = {
        "status_callback": status_callback_url(settings, hub.public_url, message.tenant),
    }
    if sender.medium == "whatsapp":
        request["to"] = f"{WHATSAPP_PREFIX}{message.to}"
        if settings.whatsapp_from:
            request["from_"] = f"{WHATSAPP_PREFIX}{settings.whatsapp_from}"
    else:
        request["to"] = message.to
        if settings.sms_from:
            request["from_"] = settings.sms_from
    if settings.messaging_service_sid:
        request["messaging_service_sid"] = settings.messaging_service_sid
    if "from_" not in request and "messaging_service_sid" not in request:
        raise PermanentError(
            f"no {sender.medium} sender for tenant {message.tenant}: set "
            f"{'whatsapp_from' if sender.medium == 'whatsapp' else 'sms_from'} or messaging_service_sid",
            code="no_sender",
        )
    if sender.medium == "whatsapp" and not within_window(message.last_inbound_at, now):
        locale = message.locale or tenant_locale
        found = find_template(settings, locale, message.kind)
        if found is None:
            tried = ", ".join(locale_candidates(locale))
            raise PermanentError(
                f"no WhatsApp template for {message.kind or 'this kind'!r} in {tried}, and the contact has not "
                f"written in the last 24 hours: map one in content_templates.{locale_candidates(locale)[-1]}."
                f"{message.kind or '<kind>'} of twilio_messaging",
                code="no_template",
            )
        _, template = found
        request["content_sid"] = template.content_sid
        request["content_variables"] = json.dumps(
            render_variables(template, message, hub=hub, locale=locale, timezone=message.timezone or tenant_timezone),
            ensure_ascii=False,
        )
        return request
    if not message.body.strip():
        raise PermanentError("the message body is empty", code="empty_body")
    request["body"] = message.body
    return request


def render_variables(
    template: ContentTemplate, message: OutboundMessage, *, hub: HubPort, locale: str, timezone: str
) -> dict[str, str]:
    """Each Content variable rendered from its Jinja expression; PermanentError naming a broken one."""
    values: dict[str, str] = {}
    for number, expression in template.variables.items():
        try:
            values[number] = hub.render_inline(
                expression, locale=locale, timezone=timezone, context=message.data,
                name=f"twilio_messaging content variable {number} of {template.content_sid}",
            )
        except TemplateError as exc:  # names the variable and the reason
            raise PermanentError(f"WhatsApp template variable {number}: {exc}", code="bad_variable") from None
    return values


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, (moment - now).total_seconds())


def _error_body(text: str) -> tuple[int | None, str]:
    try:
        body = json.loads(text)
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or body.get("detail") or "")


class TwilioClients:
    """One SDK client per (account, token, API base URL), created on first use, closed by `close`."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, str, float], Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, settings: Settings) -> Client:
        """The client for these settings (tenants sharing an account share it)."""
        token = settings.auth_token.get_secret_value()
        key = (settings.account_sid, token, settings.api_base_url, settings.timeout_seconds)
        client = self._clients.get(key)
        if client is None:
            from twilio.rest import Client

            from .http_client import RetryingHttpClient

            http = RetryingHttpClient(timeout=settings.timeout_seconds)
            # Given an empty mapping the SDK reads TWILIO_EDGE / TWILIO_REGION from os.environ, which
            # rewrite the API host; the blank values keep config.toml the only source.
            client = Client(
                settings.account_sid, token, http_client=http, environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""}
            )
            # The SDK has no base URL option: the API domain's base_url is a plain attribute.
            client.api.base_url = settings.api_base_url
            self._clients[key] = client
        return client

    async def close(self) -> None:
        """Close every client's HTTP session; the next send opens new ones."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.http_client.close()


def map_error(exc: TwilioException) -> TransientError | PermanentError:
    """What a Twilio error answer means for the dispatcher."""
    status = int(getattr(exc, "status", 0) or 0)
    raw_code = getattr(exc, "code", None)
    code = raw_code if isinstance(raw_code, int) else None
    detail = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "")).removeprefix(
        "Unable to create record: "
    )
    label = str(code or status)
    if status == 429 or code == RATE_LIMIT_CODE or status >= 500:
        return TransientError(f"Twilio answered {status} ({label}): {detail}", code=label)
    if code == AUTH_CODE or status == 401:
        # Retried (a token being rotated may come back), then the next channel takes over.
        return TransientError(
            "Twilio refused the credentials (20003): check account_sid and auth_token of twilio_messaging",
            code=label,
        )
    if code is not None and code in PERMANENT_CODES:
        return PermanentError(f"Twilio {code}: {PERMANENT_CODES[code]}", code=label, opted_out=code == OPTED_OUT_CODE)
    return PermanentError(f"Twilio refused the message ({label}): {detail[:200]}", code=label)


class TwilioChannel:
    """`twilio-whatsapp` or `twilio-sms`: settings are read per tenant on every send."""

    address_kind = "phone"

    def __init__(self, hub: HubPort, sender: Sender, clients: TwilioClients, settings: Settings | None) -> None:
        self.hub = hub
        self.sender = sender
        self.name = sender.name
        self.medium = sender.medium
        # A WhatsApp user who hides their number is reached at their business-scoped id instead.
        self.address_kinds: tuple[str, ...] = ("phone", WHATSAPP_ID) if sender.medium == "whatsapp" else ("phone",)
        self.clients = clients
        self.settings = settings
        """The [plugins.twilio_messaging] table; None when only tenants configure the plugin."""
        self.sandbox = settings.sandbox if settings is not None else True
        self.log = structlog.get_logger("plugins.twilio_messaging")

    async def send(self, message: OutboundMessage) -> Delivery:
        """Send through Twilio (or, in sandbox mode, build the request and record it)."""
        settings: Settings | None = self.hub.settings_for(NAME, message.tenant)
        if settings is None:
            raise PermanentError(f"twilio_messaging is not configured for tenant {message.tenant}", code="not_configured")
        tenant = await self.hub.tenant(message.tenant)
        request = build_request(
            message,
            settings,
            self.sender,
            hub=self.hub,
            tenant_locale=tenant.locale,
            tenant_timezone=tenant.timezone,
            now=dt.datetime.now(dt.UTC),
        )
        shape = "template" if "content_sid" in request else "free-form"
        context = {"tenant": message.tenant, "channel": self.name, "notification_id": message.notification_id, "shape": shape}
        if settings.sandbox:
            self.log.info("twilio_sandboxed", **context)
            return Delivery(provider_id=None, status="sandboxed", detail=f"{shape} message built, not sent")
        import aiohttp
        from twilio.base.exceptions import TwilioException

        try:
            created = await self.clients.get(settings).messages.create_async(**request)
        except TransientError as exc:
            self.log.warning("twilio_send_failed", **context, code=exc.code, retry_after=exc.retry_after)
            raise
        except TwilioException as exc:
            error = map_error(exc)
            self.log.warning("twilio_send_failed", **context, code=error.code, permanent=isinstance(error, PermanentError))
            raise error from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.log.warning("twilio_unreachable", **context, error=type(exc).__name__)
            raise TransientError(f"Twilio unreachable: {type(exc).__name__}: {exc}", code="connection") from None
        self.log.info("twilio_sent", **context, provider_id=created.sid)
        return Delivery(provider_id=created.sid, status="sent", detail=shape)

    async def check(self) -> Health:
        """Sandbox: ok. Live: fetch the account; never required, so a Twilio outage leaves webhooks up."""
        if self.settings is None:
            return Health(True, "configured per tenant", required=False)
        if self.settings.sandbox:
            return Health(True, "sandbox: messages are built, not sent", required=False)
        import aiohttp
        from twilio.base.exceptions import TwilioException

        try:
            account = await self.clients.get(self.settings).api.v2010.accounts(self.settings.account_sid).fetch_async()
        except TransientError as exc:
            return Health(False, exc.reason, required=False)
        except TwilioException as exc:
            return Health(False, map_error(exc).reason, required=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Health(False, f"Twilio unreachable: {type(exc).__name__}", required=False)
        if account.status != "active":
            return Health(False, f"the Twilio account is {account.status}", required=False)
        return Health(True, f"account {self.settings.account_sid[:6]}… active", required=False)
