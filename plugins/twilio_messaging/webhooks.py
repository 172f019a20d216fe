"""Twilio's webhooks: inbound messages and status callbacks, verified, normalised, stored.

Both handlers do the same four steps (docs/plugins.md, Webhooks): find the
tenant the request is for, check `X-Twilio-Signature` with that tenant's
auth token against the public URL Twilio called, turn the form into an
inbox event, and answer at once. Nothing is stored before the signature
checked out.

The tenant comes from `?tenant=<slug>` when the URL carries it (every
StatusCallback the channels set does), else from the number the message
was sent to (`To` inbound, `From` in a status callback, `whatsapp:` prefix
stripped) or the `MessagingServiceSid`, matched against the tenants'
senders. Of the tenants that match, the one whose token validates the
signature wins; two that both validate are a configuration mistake (one
sender, two tenants, one account) and are refused with 409 rather than
guessed at.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiDictProxy
from urllib.parse import urlparse

from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)

from hub import WHATSAPP_ID, DeliveryStatusEvent, HubError, HubPort, InboundMessage, InvalidAddress, is_whatsapp_id, normalize_phone

from .keywords import classify
from .sending import NAME, SMS, WHATSAPP, WHATSAPP_PREFIX, public_base
from .settings import Settings

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_MEDIA = 10
# Inbound states Twilio may also report to a status callback; they say nothing about what we sent.
INBOUND_STATES = frozenset({"receiving", "received"})


def signature_ok(
    url: str,
    params: Any,
    headers: Mapping[str, str],
    *,
    auth_token: str,
    signing_key: str | None = None,
) -> bool:
    """Whether a webhook carries Twilio's signature over `url` and `params`.

    `params` is the form (a multidict: repeated fields count) or, for a
    JSON-body webhook whose URL carries `bodySHA256`, the raw body text.
    Without `X-Twilio-Webhooks-Signature-Settings` the signature is
    HMAC-SHA1 keyed with the auth token; with `algorithm=HMAC_SHA256` there,
    it is keyed with the SharedKey secret (`signing_key`), and refused when
    none is configured.
    """
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    algorithm = get_signature_algorithm(headers.get(SIGNATURE_SETTINGS_HEADER))
    if algorithm.upper() == HMAC_SHA1:
        secret = auth_token
    elif signing_key:
        secret = signing_key
    else:
        return False
    if isinstance(params, str) or algorithm.upper() not in _HASHES:
        # A JSON body (its hash rides in the URL) or an algorithm this module does not know: the SDK decides.
        return bool(RequestValidator(secret).validate(url, params, signature, algorithm=algorithm))
    return _form_signed(url, params, signature, secret.encode(), _HASHES[algorithm.upper()])


_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


def _form_signed(url: str, params: Any, signature: str, key: bytes, digest: Any) -> bool:
    """The SDK's check of a form's signature, computed once instead of twice: Twilio may sign the URL with or
    without its default port, and the SDK always computes both; here the other form is computed only on a miss."""
    # Each name once, its distinct values sorted (a repeated field counts once per distinct value), as the SDK does;
    # one pass over the items rather than a `getall` scan of the whole form per name.
    values: dict[str, set[str]] = {}
    for name, value in params.items():
        values.setdefault(name, set()).add(value)
    pairs = "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    expected = signature.encode()
    parsed = urlparse(url)
    # The URL as given is almost always the form Twilio signed: try it first.
    for variant in sorted(dict.fromkeys([remove_port(parsed), add_port(parsed)]), key=lambda v: v != url):
        mac = hmac.new(key, (variant + pairs).encode(), digest).digest()
        if hmac.compare_digest(base64.b64encode(mac), expected):
            return True
    return False


def bare_number(address: str | None) -> str | None:
    """`whatsapp:+14155238886` -> `+14155238886`; None for something that is not a phone number."""
    if not address:
        return None
    try:
        return normalize_phone(address.strip().removeprefix(WHATSAPP_PREFIX))
    except InvalidAddress:
        return None


@dataclass(frozen=True)
class TenantMatch:
    """The tenant a verified webhook belongs to, with its settings."""

    slug: str
    settings: Settings


class SenderDirectory:
    """Which tenants own a Twilio number or Messaging Service.

    An index over the tenants' settings, rebuilt when a request matches no
    tenant (or no matching tenant's token signed it), so a tenant configured
    while the hub runs is found by its first webhook. Numbers are normalised
    again only for settings that changed, so a rebuild is cheap.
    """

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub
        self.by_number: dict[str, list[str]] = {}
        self.by_service: dict[str, list[str]] = {}
        self._senders: dict[str, tuple[Settings, set[str]]] = {}
        self._index()

    def _index(self) -> None:
        by_number: dict[str, list[str]] = {}
        by_service: dict[str, list[str]] = {}
        senders: dict[str, tuple[Settings, set[str]]] = {}
        for slug in self.hub.configured_tenants(NAME):
            settings = self.hub.settings_for(NAME, slug)
            if settings is None:
                continue
            known = self._senders.get(slug)
            if known is None or known[0] is not settings:
                known = (settings, {n for n in (bare_number(settings.whatsapp_from), bare_number(settings.sms_from)) if n})
            senders[slug] = known
            for number in known[1]:
                by_number.setdefault(number, []).append(slug)
            if settings.messaging_service_sid:
                by_service.setdefault(settings.messaging_service_sid, []).append(slug)
        self._senders, self.by_number, self.by_service = senders, by_number, by_service

    def settings_for(self, slug: str) -> Settings | None:
        """A tenant's settings; tenants made with `hub tenants create` and not configured get the plugin's table."""
        return self.hub.settings_for(NAME, slug)

    async def known(self, slug: str) -> bool:
        """Whether a tenant exists: in config, or made with `hub tenants create` (a cached lookup)."""
        try:
            await self.hub.tenant(slug)
        except HubError:
            return False
        return True

    async def candidates(self, request: web.Request, our_address: str | None, service_sid: str | None) -> list[str]:
        """Tenants this request may be for, before the signature decides."""
        explicit = request.query.get("tenant")
        if explicit is not None:
            return [explicit] if await self.known(explicit) and self.settings_for(explicit) is not None else []
        found = list(self.by_number.get(bare_number(our_address) or "", []))
        for slug in self.by_service.get(service_sid or "", []):
            if slug not in found:
                found.append(slug)
        return found

    def _signed(self, request: web.Request, form: MultiDictProxy[Any], slugs: list[str]) -> list[TenantMatch]:
        signed: list[TenantMatch] = []
        for slug in slugs:
            settings = self.settings_for(slug)
            if settings is None:
                continue
            # Twilio signs the URL it called: the public one, query string included, not what the proxy forwarded.
            url = public_base(settings, self.hub.public_url) + request.raw_path
            signing_key = settings.webhook_signing_key.get_secret_value() if settings.webhook_signing_key else None
            if signature_ok(url, form, request.headers, auth_token=settings.auth_token.get_secret_value(), signing_key=signing_key):
                signed.append(TenantMatch(slug, settings))
        return signed

    async def verify(self, request: web.Request, form: MultiDictProxy[Any], our_address: str | None) -> TenantMatch:
        """The tenant whose token signed this request; raises the HTTP error to answer otherwise."""
        if not request.headers.get(SIGNATURE_HEADER):
            raise web.HTTPForbidden(text="missing X-Twilio-Signature")
        service_sid = form.get("MessagingServiceSid")
        slugs = await self.candidates(request, our_address, service_sid)
        signed = self._signed(request, form, slugs)
        if not signed and "tenant" not in request.query:
            self._index()  # a tenant configured, or a number moved, since the index was built
            fresh = await self.candidates(request, our_address, service_sid)
            if fresh != slugs:
                slugs, signed = fresh, self._signed(request, form, fresh)
        if not slugs:
            raise web.HTTPNotFound(text="no tenant uses this Twilio number or Messaging Service")
        if not signed:
            raise web.HTTPForbidden(text="X-Twilio-Signature does not match")
        if len(signed) > 1:
            raise web.HTTPConflict(
                text=f"tenants {', '.join(m.slug for m in signed)} share this sender and account: add ?tenant=<slug> to the webhook URL"
            )
        return signed[0]


def _media(form: MultiDictProxy[Any]) -> list[dict[str, str]]:
    try:
        count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    media = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if url:
            media.append({"url": str(url), "content_type": str(form.get(f"MediaContentType{index}") or "")})
    return media


def _text(form: MultiDictProxy[Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None


def sender_identity(form: MultiDictProxy[Any], sender: str) -> tuple[str, str, list[list[str]]]:
    """(identity kind, address, other [kind, address] pairs of the same account) for an inbound's sender.

    A WhatsApp user who hides their number writes from `whatsapp:<business-scoped id>`
    (`ExternalUserId` carries the same id); the id is never read as a number. When the payload
    also carries the phone (`WaId`), or a phone sender also has a business-scoped id, WhatsApp
    vouches that both are one account, so both are linked.
    """
    if not sender.startswith(WHATSAPP_PREFIX):
        return "phone", sender, []
    address = sender.removeprefix(WHATSAPP_PREFIX).strip()
    external = _text(form, "ExternalUserId")
    if is_whatsapp_id(address):
        wa_id = _text(form, "WaId")
        phone = bare_number(f"+{wa_id.strip().lstrip('+')}") if wa_id else None
        return WHATSAPP_ID, address, [["phone", phone]] if phone else []
    if external and is_whatsapp_id(external):
        return "phone", sender, [[WHATSAPP_ID, external]]
    return "phone", sender, []


def routes(hub: HubPort) -> list[web.RouteDef]:
    """The plugin's routes; the handlers are closures over `hub` and its tenants' senders."""
    directory = SenderDirectory(hub)
    log = structlog.get_logger("plugins.twilio_messaging")

    async def inbound(request: web.Request) -> web.Response:
        """POST /webhooks/twilio_messaging/inbound: a WhatsApp or SMS message to one of our numbers."""
        form = await request.post()
        match = await directory.verify(request, form, _text(form, "To"))
        sender, message_sid = _text(form, "From"), _text(form, "MessageSid") or _text(form, "SmsMessageSid")
        if sender is None or message_sid is None:
            raise web.HTTPBadRequest(text="From and MessageSid are required")
        channel = WHATSAPP if sender.startswith(WHATSAPP_PREFIX) else SMS
        sender_kind, address, linked = sender_identity(form, sender)
        event = InboundMessage(
            tenant=match.slug,
            medium=channel.medium,
            channel=channel.name,
            sender=address,
            sender_kind=sender_kind,
            linked_addresses=linked,
            body=_text(form, "Body") or "",
            provider_id=message_sid,
            profile_name=_text(form, "ProfileName"),
            media=_media(form),
            received_at=dt.datetime.now(dt.UTC),
        )
        await hub.accept(event, source=NAME, dedupe_key=message_sid)
        action = classify(event.body, channel.medium)
        if action in ("stop", "start"):
            # Stored before Twilio gets its answer: a crash now means a retry, never a lost opt-out.
            await hub.request_opt_out(
                match.slug, address_kind=sender_kind, address=address, medium=channel.medium, opted_out=action == "stop",
                source=NAME, dedupe_key=f"opt-out:{message_sid}",
                # Twilio confirms an SMS STOP itself; on WhatsApp the hub sends the one confirmation.
                confirm=action == "stop" and channel.medium == WHATSAPP.medium,
            )
            log.info("twilio_opt_out" if action == "stop" else "twilio_opt_in", tenant=match.slug, medium=channel.medium)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def status(request: web.Request) -> web.Response:
        """POST /webhooks/twilio_messaging/status: what happened to a message we sent."""
        form = await request.post()
        match = await directory.verify(request, form, _text(form, "From"))
        message_sid = _text(form, "MessageSid") or _text(form, "SmsSid")
        state = (_text(form, "MessageStatus") or _text(form, "SmsStatus") or "").lower()
        if message_sid is None or not state:
            raise web.HTTPBadRequest(text="MessageSid and MessageStatus are required")
        if state in INBOUND_STATES:
            return web.Response(text=EMPTY_TWIML, content_type="text/xml")
        whatsapp = (_text(form, "ChannelPrefix") or "").lower() == "whatsapp" or any(
            (_text(form, name) or "").startswith(WHATSAPP_PREFIX) for name in ("From", "To")
        )
        event = DeliveryStatusEvent(
            tenant=match.slug,
            channel=(WHATSAPP if whatsapp else SMS).name,
            provider_id=message_sid,
            status=state,
            error_code=_text(form, "ErrorCode"),
            error_message=_text(form, "ErrorMessage") or _text(form, "ChannelStatusMessage"),
            reported_at=dt.datetime.now(dt.UTC),
        )
        await hub.accept(event, source=NAME, dedupe_key=f"{message_sid}:{state}")
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    return [web.post("/inbound", inbound, name="inbound"), web.post("/status", status, name="status")]
