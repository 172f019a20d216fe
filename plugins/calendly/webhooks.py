"""`POST /webhooks/calendly/events`: verify, normalise, enqueue, answer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from hub import AppointmentEvent, parse_json

from .mapping import HANDLED_EVENTS, NO_SHOW_CREATED, NO_SHOW_DELETED, SOURCE, Unmappable, booking_from_invitee, status_for
from .client import CalendlyError
from .runtime import CalendlyPlugin
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
        settings = plugin.require_settings(tenant)
        region = (await hub.tenant(tenant)).default_region
        scheduled_event: dict[str, Any] | None = None
        if not isinstance(payload.get("scheduled_event"), dict):
            # Older subscriptions (and Calendly's documentation examples) name the event by its URI only.
            reference = payload.get("scheduled_event") or payload.get("event")
            if isinstance(reference, str) and reference.strip():
                try:
                    scheduled_event = await plugin.client(tenant).scheduled_event(reference)
                except CalendlyError as exc:
                    # Nothing stored yet: Calendly delivers the webhook again later, and the fetch is retried then.
                    log.warning("calendly_event_fetch_failed", tenant=tenant, status=exc.status)
                    retry = web.json_response({"error": "event_unavailable", "detail": "the scheduled event could not be read; retry"}, status=503)
                    retry.headers["Retry-After"] = str(int(exc.retry_after or 60))
                    return retry
        try:
            booking = booking_from_invitee(payload, status=status, region=region, phone_questions=settings.phone_questions,
                                           scheduled_event=scheduled_event)
        except Unmappable as exc:
            # Authentic but unusable: answering an error would only make Calendly retry it for a day.
            # `event` is structlog's own argument (the message): the Calendly event goes under its own name.
            log.warning("calendly_webhook_unmappable", tenant=tenant, calendly_event=name, reason=str(exc))
            return web.json_response({"accepted": False, "ignored": str(exc)})
        event = AppointmentEvent(tenant=tenant, appointment=booking)
        new = await hub.accept(event, source=SOURCE, dedupe_key=dedupe_key(tenant, name, envelope))
        return web.json_response({"accepted": new})

    return [web.post("/events", events, name="events")]
