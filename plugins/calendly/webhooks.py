"""`POST /webhooks/calendly/events`: verify, normalise, enqueue, answer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from hub import AppointmentEvent, DeferredEvent, InboxEvent, parse_json

from .mapping import HANDLED_EVENTS, NO_SHOW_CREATED, NO_SHOW_DELETED, SOURCE, Unmappable, booking_from_invitee, status_for
from .runtime import NAME, CalendlyPlugin
from .signature import HEADER, SignatureError, parse_header

_DEDUPE_KEY_MAX = 300  # inbox_events.dedupe_key


def dedupe_key(tenant: str, event_name: str, envelope: Mapping[str, Any]) -> str:
    """The identity of one webhook event, the same on every redelivery.

    An invitee is created once and canceled once, so (event, invitee URI)
    names those exactly. A no-show can be marked, removed and marked
    again: each marking is its own resource, so its URI (or, failing that,
    the envelope's `created_at`) tells the rounds apart. The tenant is part
    of it because the inbox's keys are unique per source, not per tenant,
    and two tenants may subscribe to one organisation.
    """
    payload = envelope["payload"]
    key = f"{tenant}:{event_name}:{payload['uri']}"
    if event_name in (NO_SHOW_CREATED, NO_SHOW_DELETED):
        no_show = payload.get("no_show") if isinstance(payload.get("no_show"), Mapping) else {}
        key += f":{no_show.get('uri') or envelope.get('created_at') or ''}"
    if len(key) > _DEDUPE_KEY_MAX:
        key = f"{tenant}:{event_name}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def routes(plugin: CalendlyPlugin) -> list[web.RouteDef]:
    """The plugin's webhook route, a closure over its per-hub state."""
    hub = plugin.hub
    log = structlog.get_logger("plugins.calendly")

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            signature = parse_header(request.headers.get(HEADER))
        except SignatureError as exc:
            log.warning("calendly_webhook_refused", reason=str(exc))
            raise web.HTTPUnauthorized(text=str(exc)) from None
        tenant, problem = await plugin.verify(signature, body, request.query.get("tenant") or None)
        if tenant is None:
            log.warning("calendly_webhook_refused", reason=problem, tenant_hint=request.query.get("tenant"))
            raise web.HTTPForbidden(text=problem)
        try:
            envelope = parse_json(body)
        except ValueError:
            raise web.HTTPBadRequest(text="malformed JSON") from None
        if not (isinstance(envelope, dict) and isinstance(envelope.get("event"), str) and isinstance(envelope.get("payload"), dict)):
            raise web.HTTPBadRequest(text="not a Calendly webhook: event and payload are required")
        name: str = envelope["event"]
        payload: dict[str, Any] = envelope["payload"]
        if name not in HANDLED_EVENTS:
            return web.json_response({"accepted": False, "ignored": name})
        status = status_for(name, payload)
        if status is None:
            # The canceled half of a reschedule: the created half moves the appointment.
            log.info("calendly_reschedule_cancel_ignored", tenant=tenant)
            return web.json_response({"accepted": False, "ignored": "rescheduled"})
        key = dedupe_key(tenant, name, envelope)
        if event_reference(payload) is not None:
            # Older subscriptions (and Calendly's documentation examples) name the event by its URI only:
            # stored as is and completed in the inbox worker, which fetches the event (and retries on failure).
            new = await hub.accept(DeferredEvent(tenant=tenant, plugin=NAME, name=name, payload=envelope), source=SOURCE, dedupe_key=key)
            return web.json_response({"accepted": new})
        settings = plugin.require_settings(tenant)
        region = (await hub.tenant(tenant)).default_region
        try:
            booking = booking_from_invitee(payload, status=status, region=region, phone_questions=settings.phone_questions)
        except Unmappable as exc:
            # Authentic but unusable: answering an error would only make Calendly retry it for a day.
            # `event` is structlog's own argument (the message): the Calendly event goes under its own name.
            log.warning("calendly_webhook_unmappable", tenant=tenant, calendly_event=name, reason=str(exc))
            return web.json_response({"accepted": False, "ignored": str(exc)})
        event = AppointmentEvent(tenant=tenant, appointment=booking)
        new = await hub.accept(event, source=SOURCE, dedupe_key=key)
        return web.json_response({"accepted": new})

    return [web.post("/events", events, name="events")]


def event_reference(payload: Mapping[str, Any]) -> str | None:
    """The scheduled event's URI when the payload names it without embedding it, else None."""
    if isinstance(payload.get("scheduled_event"), Mapping):
        return None
    reference = payload.get("scheduled_event") or payload.get("event")
    return reference if isinstance(reference, str) and reference.strip() else None


async def complete(plugin: CalendlyPlugin, event: DeferredEvent) -> list[InboxEvent]:
    """The appointment a URI-only webhook stands for, its event fetched with the tenant's token; raises CalendlyError."""
    log = structlog.get_logger("plugins.calendly")
    payload: dict[str, Any] = event.payload["payload"]
    reference = event_reference(payload)
    status = status_for(event.name, payload)
    if reference is None or status is None:
        return []
    scheduled_event = await plugin.client(event.tenant).scheduled_event(reference)
    settings = plugin.require_settings(event.tenant)
    region = (await plugin.hub.tenant(event.tenant)).default_region
    try:
        booking = booking_from_invitee(payload, status=status, region=region, phone_questions=settings.phone_questions,
                                       scheduled_event=scheduled_event)
    except Unmappable as exc:
        log.warning("calendly_webhook_unmappable", tenant=event.tenant, calendly_event=event.name, reason=str(exc))
        return []
    return [AppointmentEvent(tenant=event.tenant, appointment=booking)]
