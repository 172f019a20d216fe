"""`POST /webhooks/chatwoot/events`: verify, normalise, enqueue, answer."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any

import structlog
from aiohttp import web

from hub import HubError, InboundMessage, InvalidAddress, normalize_email, normalize_phone

from .runtime import CHANNEL, IDENTITY, MEDIUM, NAME, SOURCE, ChatwootPlugin
from .signature import DELIVERY, SIGNATURE, TIMESTAMP, check
from .sync import AGENT_REPLY, LINK, STATUS, evidence_key

CONTACT_EVENTS = ("contact_created", "contact_updated")
CONVERSATION_EVENTS = ("conversation_created", "conversation_status_changed")


def account_id_of(envelope: dict[str, Any]) -> Any:
    """The account a payload belongs to, wherever its event puts it."""
    account = envelope.get("account")
    if isinstance(account, dict) and account.get("id") is not None:
        return account["id"]
    messages = envelope.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        return messages[0].get("account_id")
    return None


def sender_evidence(contact: dict[str, Any], region: str) -> dict[str, Any] | None:
    """A Chatwoot contact's id, normalised phone and email (None for a contact without an id)."""
    if not isinstance(contact, dict) or not str(contact.get("id") or "").isdigit():
        return None
    phone = email = None
    try:
        phone = normalize_phone(str(contact["phone_number"]), region) if contact.get("phone_number") else None
    except InvalidAddress:
        phone = None
    try:
        email = normalize_email(str(contact["email"])) if contact.get("email") else None
    except InvalidAddress:
        email = None
    name = contact.get("name") if isinstance(contact.get("name"), str) else None
    return {"chatwoot_id": int(contact["id"]), "phone": phone, "email": email, "name": name}


def routes(plugin: ChatwootPlugin) -> list[web.RouteDef]:
    """The webhook route, a closure over the plugin's per-hub state."""
    hub = plugin.hub
    log = structlog.get_logger("plugins.chatwoot")

    async def verify(request: web.Request, body: bytes, envelope: dict[str, Any]) -> str:
        hint = request.query.get("tenant") or None
        if hint is not None:
            candidates = [hint] if plugin.settings(hint) is not None else []
        else:
            candidates = plugin.tenants_for_account(account_id_of(envelope))
        if not candidates:
            raise web.HTTPForbidden(text="no tenant with Chatwoot settings matches this delivery")
        signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
        problems: list[str] = []
        for slug in candidates:
            settings = plugin.require_settings(slug)
            if not signature and settings.allow_unsigned:
                return slug
            keys = [s.get_secret_value() for s in (settings.webhook_secret, settings.agent_bot_secret) if s is not None]
            if not keys:
                problems.append("missing" if not signature else "no webhook_secret configured")
                continue
            for key in keys:
                problem = check(key, signature, timestamp, body, now=time.time(), tolerance=settings.tolerance_seconds)
                if not problem:
                    return slug
                problems.append(problem)
        reason = "missing" if "missing" in problems else ("stale" if "stale" in problems else problems[0])
        log.warning("chatwoot_webhook_refused", reason=reason, tenant_hint=hint)
        if reason in ("missing", "malformed"):
            raise web.HTTPUnauthorized(text=f"{reason} X-Chatwoot-Signature")
        raise web.HTTPForbidden(text=f"signature {reason}" if reason in ("wrong", "stale") else reason)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            # Verified first only when a tenant is named; otherwise nothing tells whose secret to use.
            if request.query.get("tenant"):
                await verify(request, body, {})
            raise web.HTTPBadRequest(text="not a Chatwoot webhook: a JSON object is required")
        tenant = await verify(request, body, envelope)
        event = envelope.get("event")
        if not isinstance(event, str):
            raise web.HTTPBadRequest(text="not a Chatwoot webhook: event is required")
        delivery = request.headers.get(DELIVERY) or hashlib.sha256(body).hexdigest()
        region = (await hub.tenant(tenant)).default_region
        if event == "message_created":
            return web.json_response(await message_created(tenant, envelope, region))
        if event in CONTACT_EVENTS:
            return web.json_response({"accepted": await link_contact(tenant, envelope, region)})
        if event in CONVERSATION_EVENTS:
            sender = _object(_object(envelope.get("meta")).get("sender"))
            linked = await link_contact(tenant, sender, region)
            status = envelope.get("status")
            if event == "conversation_status_changed" and isinstance(status, str):
                await hub.enqueue_job(NAME, tenant, STATUS, f"status:{delivery}", {
                    "conversation": envelope.get("id"), "status": status,
                    "chatwoot_id": sender.get("id"),
                }, once=True)
            return web.json_response({"accepted": linked})
        return web.json_response({"accepted": False, "ignored": event})

    async def link_contact(tenant: str, contact: dict[str, Any], region: str) -> bool:
        evidence = sender_evidence(contact, region)
        if evidence is None:
            return False
        key = evidence_key(evidence["chatwoot_id"], evidence["phone"], evidence["email"])
        return await hub.enqueue_job(NAME, tenant, LINK, key, evidence, once=True)

    async def message_created(tenant: str, envelope: dict[str, Any], region: str) -> dict[str, Any]:
        if envelope.get("private"):
            return {"accepted": False, "ignored": "private note"}
        message_id = envelope.get("id")
        conversation = _object(envelope.get("conversation"))
        sender = _object(envelope.get("sender"))
        kind = envelope.get("message_type")
        if not str(message_id or "").isdigit():
            raise web.HTTPBadRequest(text="message_created without a message id")
        if kind == "incoming":
            evidence = sender_evidence(sender, region)
            if evidence is None:
                raise web.HTTPBadRequest(text="incoming message without a sender contact id")
            await link_contact(tenant, sender, region)
            address, address_kind = (
                (evidence["phone"], "phone") if evidence["phone"]
                else (evidence["email"], "email") if evidence["email"]
                else (str(evidence["chatwoot_id"]), IDENTITY)
            )
            received_at = _time(envelope.get("created_at"))
            inbound = InboundMessage(
                tenant=tenant, medium=MEDIUM, channel=CHANNEL, sender=address, sender_kind=address_kind,
                body=str(envelope.get("content") or ""), provider_id=f"in:{message_id}", profile_name=evidence["name"],
                received_at=received_at,
            )
            new = await hub.accept(inbound, source=SOURCE, dedupe_key=f"{tenant}:message:{message_id}")
            return {"accepted": new}
        if kind == "outgoing" and sender.get("type") == "user":
            contact = _object(_object(conversation.get("meta")).get("sender"))
            if not str(contact.get("id") or "").isdigit():
                return {"accepted": False, "ignored": "agent message without a contact"}
            await link_contact(tenant, contact, region)
            new = await hub.enqueue_job(NAME, tenant, AGENT_REPLY, f"agent:{message_id}", {
                "message_id": int(str(message_id)), "chatwoot_id": int(contact["id"]), "conversation": conversation.get("id"),
                "body": str(envelope.get("content") or ""), "sent_at": _iso(envelope.get("created_at")),
            }, once=True)
            return {"accepted": new}
        # The hub's own messages and the agent bot's come back as outgoing from a bot or as templates.
        return {"accepted": False, "ignored": f"{kind} message"}

    async def guarded(request: web.Request) -> web.Response:
        try:
            return await events(request)
        except HubError as exc:
            log.warning("chatwoot_webhook_unusable", error=str(exc))
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None

    return [web.post("/events", guarded, name="events")]


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from a payload, or {} for anything else (a vendor field may be null or the wrong type)."""
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return None


def _iso(value: Any) -> str | None:
    moment = _time(value)
    return moment.isoformat() if moment else None
