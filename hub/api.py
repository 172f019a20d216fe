"""The REST API, `/api/v1`: notifications, appointments and contacts for one tenant per API key.

Request bodies are pydantic models, so validation errors are 422 with the
field and the reason, and the OpenAPI description is built from the same
models. Every query filters on the caller's tenant: a tenant never sees
another's data, not even whether an id exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.appointment_input import AppointmentInput, AppointmentStatus
from hub.contacts import find_contact, identity_key
from hub.core import Hub
from hub.errors import TemplateError
from hub.header_text import UnsafeHeader, header_text
from hub.input_rules import LOCALE_PATTERN, MAX_ID, check_locale, check_moment, check_timezone, check_url, iso_text
from hub.models import Appointment, Contact, DeliveryAttempt, IdempotencyRecord, Identity, Message, Notification, utcnow
from hub.notifications import NotificationRequest
from hub.outbox import address_identity
from hub.phones import WHATSAPP_ID, InvalidAddress, is_whatsapp_id
from hub.request_body import parse_json, text_problem
from hub.tenants import TenantInfo, tenant_for_api_key

TENANT_KEY = web.RequestKey("tenant", TenantInfo)
API_HUB_KEY = web.AppKey("api_hub", Hub)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# The rules below are stated in the OpenAPI document too (format, pattern, lengths), so a client
# can check a request before sending it; the validators say the rest (time window, IANA zones).
Moment = Annotated[
    AwareDatetime, BeforeValidator(iso_text), AfterValidator(check_moment),
    Field(description="ISO 8601 with an offset, between 1900 and 2200"),
]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://\S+$", description="An http(s) URL"), AfterValidator(check_url)]
Locale = Annotated[str, Field(max_length=16, pattern=LOCALE_PATTERN, description="A language tag: es, es-MX, pt_BR"), AfterValidator(check_locale)]
TimeZone = Annotated[str, Field(max_length=64, description="An IANA time zone such as Europe/Madrid"), AfterValidator(check_timezone)]


class NotificationIn(Strict):
    """POST /notifications: send now or at `send_at`, to a contact or an address."""

    kind: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")]
    contact_id: Annotated[int | None, Field(ge=1, le=MAX_ID)] = None
    to: Annotated[str | None, Field(min_length=1, max_length=320, description="+34600123456, whatsapp:+34..., or an email")] = None
    template: Annotated[str | None, Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_\-]+$")] = None
    data: dict[str, Any] = Field(default_factory=dict, description="Template variables; `subject` becomes an email's subject")
    send_at: Moment | None = None
    expires_at: Moment | None = None
    channels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=20, description="Mediums or channel names in order")
    locale: Locale | None = None

    @model_validator(mode="after")
    def _one_recipient(self) -> NotificationIn:
        if (self.contact_id is None) == (self.to is None):
            raise ValueError("give exactly one of contact_id and to")
        if self.expires_at is not None and self.expires_at <= (self.send_at or utcnow()):
            raise ValueError("expires_at must be after send_at (or after now)")
        subject = self.data.get("subject")
        if subject is not None:
            if not isinstance(subject, str):
                raise ValueError("data.subject must be text")
            try:
                header_text(subject)
            except UnsafeHeader as exc:
                raise ValueError(f"data.subject {exc}") from None
        return self


# At most this many notifications in one POST /notifications/batch (the body limit, max_body_bytes, applies too).
MAX_BATCH = 1000


class BatchNotificationIn(NotificationIn):
    """One item of POST /notifications/batch: a notification, with its own idempotency key."""

    idempotency_key: Annotated[str | None, Field(min_length=1, max_length=200, description=(
        "A retried batch (or POST /notifications with this Idempotency-Key) answers with the notification queued first"))] = None


class NotificationBatchIn(Strict):
    """POST /notifications/batch: up to 1,000 notifications, queued together or not at all."""

    notifications: list[BatchNotificationIn] = Field(min_length=1, max_length=MAX_BATCH)


class ContactIn(Strict):
    name: Annotated[str | None, Field(max_length=200)] = None
    phone: Annotated[str | None, Field(max_length=64)] = None
    whatsapp: Annotated[str | None, Field(max_length=64)] = None
    email: Annotated[str | None, Field(max_length=320)] = None
    locale: Locale | None = None
    timezone: TimeZone | None = None


class AppointmentIn(Strict):
    """PUT /appointments/{external_id}: the appointment as your booking system knows it."""

    contact: ContactIn
    start: Moment
    end: Moment | None = None
    timezone: TimeZone | None = None
    service: Annotated[str | None, Field(max_length=200)] = None
    location: Annotated[str | None, Field(max_length=2000)] = None
    status: AppointmentStatus = "scheduled"
    cancel_url: Url | None = None
    reschedule_url: Url | None = None
    reason: Annotated[str | None, Field(max_length=500)] = None

    @model_validator(mode="after")
    def _reachable(self) -> AppointmentIn:
        if not (self.contact.phone or self.contact.whatsapp or self.contact.email):
            raise ValueError("contact needs a phone, whatsapp or email")
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def to_input(self, external_id: str) -> AppointmentInput:
        """The appointment this body describes, as the API's booking source."""
        contact = self.contact
        addresses = tuple(
            (kind, value)
            for kind, value in (
                ("phone", contact.phone),
                (WHATSAPP_ID if contact.whatsapp and is_whatsapp_id(contact.whatsapp) else "phone", contact.whatsapp),
                ("email", contact.email),
            )
            if value
        )
        return AppointmentInput(
            source="api", external_id=external_id, start_at=self.start, end_at=self.end, timezone=self.timezone,
            status=self.status, addresses=addresses, contact_name=contact.name, contact_locale=contact.locale,
            contact_timezone=contact.timezone or self.timezone, service=self.service, location=self.location,
            cancel_url=self.cancel_url, reschedule_url=self.reschedule_url, reason=self.reason,
        )


class _KeyReused(Exception):
    """The Idempotency-Key was taken, concurrently, by a request with another body."""


def problem(status: int, error: str, **extra: Any) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": error, **extra}, status=status)


def invalid(field: str, reason: str) -> web.Response:
    """422 naming the field and why."""
    return problem(422, "validation_failed", field=field, reason=reason)


async def parse(request: web.Request, model: type[Strict]) -> Any:
    """The request body validated by `model`; raises a 4xx response otherwise."""
    raw = parse_json(await request.read())
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "body"
        response = invalid(field, error["msg"].removeprefix("Value error, "))
        raise web.HTTPUnprocessableEntity(text=response.text, content_type="application/json") from None


def path_id(request: web.Request) -> int | None:
    """The `{id}` of the path when it is a storable id, else None."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ID:
        return None
    return int(raw)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer API key -> the request's tenant; the OpenAPI description is public."""
    # The route, not the path's ending: /api/v1/contacts/openapi.json is an ordinary (authenticated) path.
    if request.match_info.route.name == "openapi":
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return problem(401, "unauthorized", detail="send Authorization: Bearer <tenant API key>")
    hub = request.app[API_HUB_KEY]
    async with hub.db.sessions() as session:
        tenant = await tenant_for_api_key(session, key.strip())
    if tenant is None:
        return problem(401, "unauthorized", detail="unknown, revoked or expired API key")
    wait = await hub.rate_limits.hit(f"api:{tenant.id}", tenant.api_requests_per_minute)
    if wait is not None:
        response = problem(429, "rate_limited", detail=f"at most {tenant.api_requests_per_minute} requests a minute")
        response.headers["Retry-After"] = str(int(wait))
        return response
    request[TENANT_KEY] = tenant
    return await handler(request)


def notification_json(row: Notification, attempts: list[DeliveryAttempt] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "contact_id": row.contact_id,
        "appointment_id": row.appointment_id,
        "channel": row.channel,
        "due_at": iso(row.due_at),
        "expires_at": iso(row.expires_at),
        "sent_at": iso(row.sent_at),
        "last_error": row.last_error,
        "status_history": row.status_history,
    }
    if attempts is not None:
        body["attempts"] = [
            {"channel": a.channel, "outcome": a.outcome, "provider_id": a.provider_id, "error": a.error,
             "started_at": iso(a.started_at), "finished_at": iso(a.finished_at)}
            for a in attempts
        ]
    return body


class Api:
    """Handlers of /api/v1, bound to one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def post_notification(self, request: web.Request) -> web.Response:
        tenant = request[TENANT_KEY]
        raw = await request.read()
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            return invalid("Idempotency-Key", "at most 200 characters")
        digest = hashlib.sha256(raw).hexdigest()
        if key:
            replay = await self._replay(tenant, key, digest)
            if replay is not None:
                return replay
        body: NotificationIn = await parse(request, NotificationIn)
        if body.channels:
            unknown = [c for c in body.channels if c not in self.hub.channels and c not in {ch.medium for ch in self.hub.channels.values()}]
            if unknown:
                return invalid("channels", f"unknown channel or medium {unknown[0]!r}")
        if problem := self._template_problem(tenant, body):
            return invalid("template" if body.template else "kind", problem)
        try:
            return await self._queue(tenant, body, key, digest)
        except _KeyReused:
            return invalid("Idempotency-Key", "already used with a different request body")

    async def _queue(self, tenant: TenantInfo, body: NotificationIn, key: str, digest: str) -> web.Response:
        async with self.hub.unit_of_work() as uow:
            session = uow.session
            if body.contact_id is not None:
                owner = await session.scalar(select(Contact.id).where(Contact.id == body.contact_id, Contact.tenant_id == tenant.id))
                if owner is None:
                    return invalid("contact_id", "no such contact")
            try:
                queued = await self.hub.queue_notification(
                    uow,
                    tenant=tenant.slug,
                    request=NotificationRequest(
                        kind=body.kind, contact_id=body.contact_id, address=body.to, data=body.data, send_at=body.send_at,
                        expires_at=body.expires_at, channel_order=tuple(body.channels), template=body.template,
                        locale=body.locale, idempotency_key=f"api:{key}" if key else None,
                    ),
                )
            except InvalidAddress as exc:
                return invalid("to", exc.reason)
            answer = {"id": queued.id, "status": queued.status}
            if key:
                # A concurrent retry with the same key got the same notification from enqueue; keep its record.
                insert = (pg_insert if self.hub.db.dialect == "postgresql" else sqlite_insert)(IdempotencyRecord)
                await session.execute(
                    insert.values(tenant_id=tenant.id, key=key, request_hash=digest, status=202, body=answer, created_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
                )
                # A concurrent request with the same key and another body won the insert: this one is refused,
                # and rolled back, rather than answered 202 for a body that was never queued.
                stored = await session.scalar(
                    select(IdempotencyRecord.request_hash).where(IdempotencyRecord.tenant_id == tenant.id, IdempotencyRecord.key == key)
                )
                if stored != digest:
                    raise _KeyReused()
        return web.json_response(answer, status=202)

    async def post_notification_batch(self, request: web.Request) -> web.Response:
        """Queue many notifications in one transaction: every item valid and queued, or none (422 naming the first bad item)."""
        tenant = request[TENANT_KEY]
        if request.headers.get("Idempotency-Key", "").strip():
            return invalid("Idempotency-Key", "not used on a batch: give each notification its own idempotency_key")
        try:
            body = NotificationBatchIn.model_validate(parse_json(await request.read()))
        except ValidationError as exc:
            return self._batch_invalid([self._batch_error(error) for error in exc.errors()])
        items = body.notifications
        problems = self._batch_problems(tenant, items)
        requests = [
            NotificationRequest(
                kind=item.kind, contact_id=item.contact_id, address=item.to, data=item.data, send_at=item.send_at,
                expires_at=item.expires_at, channel_order=tuple(item.channels), template=item.template, locale=item.locale,
                idempotency_key=f"api:{item.idempotency_key}" if item.idempotency_key else None,
            )
            for item in items
        ]
        async with self.hub.unit_of_work() as uow:
            # Checked in the transaction that queues them, as POST /notifications does.
            owned = await self._owned_contacts(uow.session, tenant, {item.contact_id for item in items if item.contact_id is not None})
            problems += [(index, "contact_id", "no such contact") for index, item in enumerate(items)
                         if item.contact_id is not None and item.contact_id not in owned]
            if problems:
                return self._batch_invalid(sorted(problems))
            queued = await self.hub.queue_notifications(uow, tenant=tenant.slug, requests=requests)
        return web.json_response({"notifications": [
            {"index": index, "id": one.id, "status": one.status, "created": one.created} for index, one in enumerate(queued)
        ]}, status=202)

    @staticmethod
    def _batch_error(error: Any) -> tuple[int | None, str, str]:
        """(item index, field within the item, reason) of a pydantic error on the batch body."""
        location = list(error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        if len(location) >= 2 and location[0] == "notifications" and isinstance(location[1], int):
            return location[1], ".".join(str(p) for p in location[2:]) or "body", reason
        return None, ".".join(str(p) for p in location) or "body", reason

    @staticmethod
    def _batch_invalid(problems: list[tuple[int | None, str, str]]) -> web.Response:
        """422 naming the first bad item and field, with every problem found listed under `errors`."""
        listed = [
            {"index": index, "field": field if index is None else f"notifications[{index}].{field}", "reason": reason}
            for index, field, reason in problems
        ]
        first = listed[0]
        return problem(422, "validation_failed", field=first["field"], reason=first["reason"], index=first["index"], errors=listed[:100])

    def _batch_problems(self, tenant: TenantInfo, items: list[BatchNotificationIn]) -> list[tuple[int | None, str, str]]:
        """What the hub, not the schema, refuses in each item: unknown channels, templates, unusable addresses."""
        known = set(self.hub.channels) | {channel.medium for channel in self.hub.channels.values()}
        templates: dict[tuple[str, str | None], str | None] = {}
        problems: list[tuple[int | None, str, str]] = []
        for index, item in enumerate(items):
            unknown = [c for c in item.channels if c not in known]
            if unknown:
                problems.append((index, "channels", f"unknown channel or medium {unknown[0]!r}"))
            template = (item.template or item.kind, item.locale)
            if template not in templates:
                templates[template] = self._template_problem(tenant, item)
            if templates[template] is not None:
                problems.append((index, "template" if item.template else "kind", str(templates[template])))
            if item.to is not None:
                try:
                    identity_key(*address_identity(item.to), tenant.default_region)
                except InvalidAddress as exc:
                    problems.append((index, "to", exc.reason))
        return problems

    @staticmethod
    async def _owned_contacts(session: AsyncSession, tenant: TenantInfo, ids: set[int]) -> set[int]:
        if not ids:
            return set()
        found = await session.scalars(select(Contact.id).where(Contact.id.in_(ids), Contact.tenant_id == tenant.id))
        return set(found.all())

    def _template_problem(self, tenant: TenantInfo, body: NotificationIn) -> str | None:
        """Why no channel could render this notification (no template for its kind), or None."""
        name = body.template or body.kind
        mediums = {channel.medium for channel in self.hub.channels.values()} or {"text"}
        locale = body.locale or tenant.locale
        for medium in sorted(mediums):
            try:
                self.hub.templates.find(kind=name, medium=medium, locale=locale, tenant_dir=self.hub.tenant_template_dir(tenant))
                return None
            except TemplateError:
                continue
        return f"no template named {name!r} (see `hub templates list`)"

    async def _replay(self, tenant: TenantInfo, key: str, digest: str) -> web.Response | None:
        async with self.hub.db.sessions() as session:
            record = await session.scalar(
                select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant.id, IdempotencyRecord.key == key)
            )
        if record is None:
            return None
        if record.request_hash != digest:
            return invalid("Idempotency-Key", "already used with a different request body")
        return web.json_response(record.body, status=record.status, headers={"Idempotent-Replayed": "true"})

    async def get_notification(self, request: web.Request) -> web.Response:
        tenant = request[TENANT_KEY]
        notification_id = path_id(request)
        if notification_id is None:
            return invalid("id", f"must be an integer from 1 to {MAX_ID}")
        async with self.hub.db.sessions() as session:
            row = await session.scalar(
                select(Notification).where(Notification.id == notification_id, Notification.tenant_id == tenant.id)
            )
            if row is None:
                return problem(404, "not_found")
            attempts = (
                await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == row.id).order_by(DeliveryAttempt.id))
            ).all()
            messages = (await session.scalars(select(Message).where(Message.notification_id == row.id).order_by(Message.id))).all()
        body = notification_json(row, list(attempts))
        body["messages"] = [
            {"channel": m.channel, "body": m.body, "provider_id": m.provider_id, "status": m.status, "status_history": m.status_history}
            for m in messages
        ]
        return web.json_response(body)

    async def put_appointment(self, request: web.Request) -> web.Response:
        tenant = request[TENANT_KEY]
        external_id = request.match_info["external_id"]
        if not 1 <= len(external_id) <= 300:
            return invalid("external_id", "1 to 300 characters")
        if problem := text_problem(external_id):
            return invalid("external_id", problem)
        body: AppointmentIn = await parse(request, AppointmentIn)
        try:
            async with self.hub.unit_of_work() as uow:
                change = await self.hub.apply_appointment(uow, tenant, body.to_input(external_id))
        except InvalidAddress as exc:
            field = "contact.email" if exc.reason == "invalid email" else "contact.phone"
            return invalid(field, exc.reason)
        appointment = change.appointment
        status = 201 if change.change == "created" else 200
        return web.json_response(
            {
                "id": appointment.id, "external_id": appointment.external_id, "status": appointment.status,
                "change": change.change, "start": iso(appointment.start_at), "end": iso(appointment.end_at),
                "contact_id": appointment.contact_id, "notifications": list(change.notifications),
                "confirmed_at": iso(appointment.confirmed_at),
            },
            status=status,
        )

    async def find_contacts(self, request: web.Request) -> web.Response:
        tenant = request[TENANT_KEY]
        query = {k: v for k, v in request.query.items() if k in ("phone", "email")}
        if len(query) != 1:
            return invalid("query", "give exactly one of phone= or email=")
        (kind, raw), = query.items()
        if len(raw) > (64 if kind == "phone" else 320):
            return invalid(kind, "too long")
        if problem := text_problem(raw):
            return invalid(kind, problem)
        async with self.hub.db.sessions() as session:
            try:
                contact = await find_contact(session, tenant, kind, raw)
            except InvalidAddress as exc:
                return invalid(kind, exc.reason)
            found = [await self._contact_json(session, contact, full=False)] if contact else []
        return web.json_response({"contacts": found})

    async def get_contact(self, request: web.Request) -> web.Response:
        tenant = request[TENANT_KEY]
        contact_id = path_id(request)
        if contact_id is None:
            return invalid("id", f"must be an integer from 1 to {MAX_ID}")
        async with self.hub.db.sessions() as session:
            contact = await session.scalar(select(Contact).where(Contact.id == contact_id, Contact.tenant_id == tenant.id))
            if contact is None:
                return problem(404, "not_found")
            return web.json_response(await self._contact_json(session, contact, full=True))

    async def _contact_json(self, session: Any, contact: Contact, *, full: bool) -> dict[str, Any]:
        identities = (await session.scalars(select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id))).all()
        body: dict[str, Any] = {
            "id": contact.id, "name": contact.name, "locale": contact.locale, "timezone": contact.timezone,
            "merged_into": contact.merged_into_id,
            "identities": [{"kind": i.kind, "value": i.value, "opted_out": sorted(i.opted_out or {})} for i in identities],
        }
        if full:
            appointments = (
                await session.scalars(select(Appointment).where(Appointment.contact_id == contact.id).order_by(Appointment.start_at))
            ).all()
            notifications = (
                await session.scalars(select(Notification).where(Notification.contact_id == contact.id).order_by(Notification.due_at, Notification.id))
            ).all()
            body["appointments"] = [
                {"id": a.id, "source": a.source, "external_id": a.external_id, "start": iso(a.start_at), "end": iso(a.end_at),
                 "status": a.status, "service": a.service, "location": a.location, "confirmed_at": iso(a.confirmed_at)}
                for a in appointments
            ]
            body["notifications"] = [notification_json(n) for n in notifications]
        return body

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.hub.config.hub.public_url))


def openapi_document(server: str) -> dict[str, Any]:
    """The OpenAPI 3 description of /api/v1, with schemas taken from the request models."""
    schemas: dict[str, Any] = {}
    for model in (NotificationIn, NotificationBatchIn, AppointmentIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    error = {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"}, "reason": {"type": "string"}}}
    schemas["Error"] = error

    def body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    def answer(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}

    def failure(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    errors = {
        "400": failure("The body is not JSON (or not UTF-8)"),
        "401": failure("Missing, unknown, revoked or expired API key"),
        "408": failure("The body did not arrive within the body timeout"),
        "413": failure("The body is larger than max_body_bytes"),
        "429": failure("Over the tenant's api_requests_per_minute; retry after `Retry-After` seconds"),
        "422": failure("Validation failed: `field` and `reason` say why (lengths, patterns, formats, nesting depth at most 32, "
                     "integers within 64 bits, no NaN, no NUL characters or lone surrogates, times between 1900 and 2200)"),
        "503": failure("The database is unavailable; retry after `Retry-After` seconds"),
    }
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200},
                   "description": "A retried POST with the same key returns the first answer."}
    path_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Notification Hub API", "version": "1"},
        "servers": [{"url": server.rstrip("/") + "/api/v1"}],
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/notifications": {"post": {"summary": "Queue a notification", "parameters": [idempotency], "requestBody": body("NotificationIn"),
                                        "responses": {"202": answer("Queued: id and status"), **errors}}},
            "/notifications/batch": {"post": {
                "summary": f"Queue up to {MAX_BATCH} notifications in one transaction: all of them, or none when any item is refused",
                "description": ("Each item is a NotificationIn with an optional `idempotency_key` (the Idempotency-Key header is not "
                                "used here). 202 answers `notifications`: per item, in order, its `index`, `id`, `status` and "
                                "`created` (false when its key named a notification queued before, or earlier in the batch). "
                                "A refused item makes the whole batch 422 with nothing queued: `field` is "
                                "`notifications[<index>].<field>`, `index` the item, and `errors` lists every problem found."),
                "requestBody": body("NotificationBatchIn"),
                "responses": {"202": answer("Queued: per item index, id, status and created"), **errors}}},
            "/notifications/{id}": {"get": {"summary": "A notification: status, attempts, channel, errors", "parameters": [path_id],
                                            "responses": {"200": answer("The notification"), "404": answer("No such notification"), **errors}}},
            "/appointments/{external_id}": {"put": {
                "summary": "Create or update an appointment; drives confirmation, reminders, reschedule and cancellation notices",
                "parameters": [{"name": "external_id", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 300}}],
                "requestBody": body("AppointmentIn"),
                "responses": {"201": answer("Created"), "200": answer("Updated"), **errors}}},
            "/contacts": {"get": {"summary": "Find a contact by phone or email",
                                  "parameters": [{"name": "phone", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                                                 {"name": "email", "in": "query", "schema": {"type": "string", "maxLength": 320}}],
                                  "responses": {"200": answer("Matching contacts"), **errors}}},
            "/contacts/{id}": {"get": {"summary": "A contact: identities, appointments and notification timeline", "parameters": [path_id],
                                       "responses": {"200": answer("The contact"), "404": answer("No such contact"), **errors}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": answer("OpenAPI 3")}}},
        },
    }


def create_api(hub: Hub, middlewares: list[Any]) -> web.Application:
    """The /api/v1 sub-application."""
    api = Api(hub)
    app = web.Application(middlewares=[*middlewares, authenticate], client_max_size=hub.config.hub.max_body_bytes)
    app[API_HUB_KEY] = hub
    app.router.add_post("/notifications", api.post_notification)
    app.router.add_post("/notifications/batch", api.post_notification_batch)
    app.router.add_get("/notifications/{id}", api.get_notification)
    app.router.add_put("/appointments/{external_id}", api.put_appointment)
    app.router.add_get("/contacts", api.find_contacts)
    app.router.add_get("/contacts/{id}", api.get_contact)
    app.router.add_get("/openapi.json", api.openapi, name="openapi")
    return app
