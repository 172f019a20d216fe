"""A Calendly API v2 stand-in on 127.0.0.1, and a sender of signed webhooks.

It keeps a small organisation in memory (one user, event types, scheduled
events and their invitees, free slots, webhook subscriptions) and answers
the endpoints the calendly plugin calls with the shapes of Calendly's
OpenAPI document (`/work/shared/specs/calendly/openapi.yaml`): resources
under `resource`, collections with a `pagination` object whose
`next_page_token` is null on the last page, errors as `{"title",
"message", "details"}`, a bearer token checked on every request, and 429
with `Retry-After` when a test asks for it.

Bookings made with `book`, `reschedule`, `cancel` and `mark_no_show` change
that state the way Calendly does (a reschedule cancels the old invitee with
`rescheduled: true` and books a new one whose `old_invitee` names it), and
return the webhook payload: the invitee resource with its
`scheduled_event` embedded. `envelope` wraps it as Calendly posts it,
`signed` adds the `Calendly-Webhook-Signature`, and `deliver` posts it to
every subscription created through the API, signed with that
subscription's key. Resource URIs use Calendly's own host whatever port
the stand-in listens on, as the real payloads do.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.pg import free_port

API = "https://api.calendly.com"
PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "calendly"
SIGNATURE_HEADER = "Calendly-Webhook-Signature"
MAX_AVAILABILITY_RANGE = dt.timedelta(days=7)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_id() -> str:
    """A 16-character id like Calendly's (`AAAAAAAAAAAAAAAA`)."""
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def iso(moment: dt.datetime) -> str:
    """Calendly's timestamp form: UTC with microseconds and a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def sign(key: str, timestamp: int, body: bytes) -> str:
    """The v1 signature: hex HMAC-SHA256 of "<t>.<body>" with the subscription's signing key."""
    return hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed(envelope: dict[str, Any] | bytes, key: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Calendly posts: JSON and `Calendly-Webhook-Signature: t=...,v1=...`."""
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope, ensure_ascii=False).encode()
    t = int(time.time()) if timestamp is None else timestamp
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: f"t={t},v1={sign(key, t, body)}"}


class ApiError(Exception):
    """An error answer in Calendly's shape."""

    def __init__(self, status: int, title: str, message: str, details: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"title": title, "message": message}
        if details:
            self.body["details"] = list(details)


def invalid(parameter: str, message: str) -> ApiError:
    return ApiError(400, "Invalid Argument", "The supplied parameters are invalid.", [{"parameter": parameter, "message": message}])


NOT_FOUND = ("Resource Not Found", "The server could not find the requested resource.")


@dataclass
class Seen:
    """One request the stand-in answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class CalendlyStandIn:
    """The fake organisation and its HTTP server; `start()` returns the base URL to configure."""

    token: str = field(default_factory=lambda: f"pat-{secrets.token_urlsafe(16)}")
    org_admin: bool = True
    """False: list requests by `organization` alone are refused with 403, as for a plain member."""
    scheduling_api: bool = True
    """False: `POST /invitees` is refused with 403, as on a free plan."""
    booking_limit_reached: bool = False
    """True: `POST /invitees` answers 429 (the Scheduling API's own per-hour and per-day limits)."""

    def __post_init__(self) -> None:
        user_id = new_id()
        self.organization = f"{API}/organizations/{new_id()}"
        self.user: dict[str, Any] = {
            "uri": f"{API}/users/{user_id}", "name": "Dra. Ruiz", "slug": "dra-ruiz", "email": "agenda@clinic.example",
            "scheduling_url": "https://calendly.com/dra-ruiz", "timezone": "Europe/Madrid", "avatar_url": None,
            "created_at": "2024-01-02T03:04:05.678123Z", "updated_at": "2024-01-02T03:04:05.678123Z",
            "current_organization": self.organization,
        }
        self.event_types: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.invitees: dict[str, list[dict[str, Any]]] = {}
        """Scheduled event uuid -> its invitees, oldest first."""
        self.slots: dict[str, list[dict[str, Any]]] = {}
        """Event type URI -> its free start times."""
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.signing_keys: dict[str, str] = {}
        """Subscription uuid -> the signing key it was created with."""
        self.links: list[dict[str, Any]] = []
        self.booked: list[str] = []
        """Invitee URIs booked through `POST /invitees`."""
        self.requests: list[Seen] = []
        self._throttle: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- the server -------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; returns the base URL (the plugin's `api_base_url`)."""
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def throttle(self, *retry_after: str) -> None:
        """Answer the next requests 429, one per value, each with that `Retry-After`."""
        self._throttle.extend(retry_after)

    def calls(self, method: str, path: str) -> list[Seen]:
        """The requests made to one endpoint."""
        return [seen for seen in self.requests if seen.method == method and seen.path == path]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/users/me", self._me)
        app.router.add_get("/event_types", self._event_types)
        app.router.add_get("/event_type_available_times", self._available_times)
        app.router.add_post("/scheduling_links", self._scheduling_link)
        app.router.add_post("/invitees", self._create_invitee)
        app.router.add_get("/scheduled_events", self._scheduled_events)
        app.router.add_get("/scheduled_events/{uuid}", self._scheduled_event)
        app.router.add_get("/scheduled_events/{uuid}/invitees", self._invitees)
        app.router.add_post("/scheduled_events/{uuid}/cancellation", self._cancellation)
        app.router.add_post("/webhook_subscriptions", self._create_subscription)
        app.router.add_get("/webhook_subscriptions", self._subscriptions)
        app.router.add_delete("/webhook_subscriptions/{uuid}", self._delete_subscription)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = Seen(request.method, request.path, dict(request.query), body)
        self.requests.append(seen)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthenticated", "The access token is invalid")
            if self._throttle:
                retry_after = self._throttle.pop(0)
                seen.status = 429
                return web.json_response(
                    {"title": "Too Many Requests", "message": "You have exceeded the rate limit"},
                    status=429, headers={"Retry-After": retry_after},
                )
            response = await handler(request)
        except ApiError as exc:
            seen.status = exc.status
            return web.json_response(exc.body, status=exc.status)
        except web.HTTPNotFound:
            seen.status = 404
            return web.json_response(dict(zip(("title", "message"), NOT_FOUND)), status=404)
        seen.status = response.status
        return response

    # --- pagination -------------------------------------------------------------

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        try:
            count = int(request.query.get("count", "20"))
        except ValueError:
            raise invalid("count", "must be a number") from None
        if not 1 <= count <= 100:
            raise invalid("count", "must be between 1 and 100")
        offset = 0
        if token := request.query.get("page_token"):
            try:
                path, _, number = base64.urlsafe_b64decode(token.encode()).decode().rpartition(":")
                offset = int(number)
            except ValueError:
                raise invalid("page_token", "is invalid") from None
            if path != request.path:
                raise invalid("page_token", "is invalid")
        chunk = items[offset:offset + count]

        def token_for(at: int | None) -> str | None:
            if at is None:
                return None
            return base64.urlsafe_b64encode(f"{request.path}:{at}".encode()).decode()

        def page_url(at_token: str | None) -> str | None:
            if at_token is None:
                return None
            query = {**request.query, "page_token": at_token}
            return str(request.url.with_query(query))

        next_token = token_for(offset + count if offset + count < len(items) else None)
        previous_token = token_for(max(offset - count, 0) if offset > 0 else None)
        return web.json_response({
            "collection": chunk,
            "pagination": {
                "count": len(chunk), "next_page": page_url(next_token), "previous_page": page_url(previous_token),
                "next_page_token": next_token, "previous_page_token": previous_token,
            },
        })

    def _owner_filter(self, request: web.Request) -> None:
        organization, user = request.query.get("organization"), request.query.get("user")
        if not organization and not user:
            raise invalid("organization", "organization or user is required")
        if organization and organization != self.organization:
            raise ApiError(403, "Permission Denied", "You do not have permission to access this resource.")
        if user and user != self.user["uri"]:
            raise ApiError(403, "Permission Denied", "This user is not in your organization")
        if organization and not user and not self.org_admin:
            raise ApiError(403, "Permission Denied", "You do not have permission to access this resource.")

    # --- endpoints --------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response({"resource": self.user})

    async def _event_types(self, request: web.Request) -> web.Response:
        self._owner_filter(request)
        items = self.event_types
        if "active" in request.query:
            wanted = request.query["active"] == "true"
            items = [t for t in items if t["active"] is wanted]
        return self._page(request, sorted(items, key=lambda t: t["name"]))

    async def _available_times(self, request: web.Request) -> web.Response:
        for name in ("event_type", "start_time", "end_time"):
            if not request.query.get(name):
                raise invalid(name, "is required")
        try:
            start, end = parse_time(request.query["start_time"]), parse_time(request.query["end_time"])
        except ValueError:
            raise invalid("start_time", "must be an ISO 8601 time") from None
        if end <= start:
            raise invalid("end_time", "must be after start_time")
        if end - start > MAX_AVAILABILITY_RANGE:
            raise invalid("end_time", "date range can be no greater than 1 week (7 days)")
        if start < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1):
            raise invalid("start_time", "must be in the future")
        uri = request.query["event_type"]
        if not any(t["uri"] == uri for t in self.event_types):
            raise ApiError(404, *NOT_FOUND)
        slots = [s for s in self.slots.get(uri, []) if start <= parse_time(s["start_time"]) < end]
        return web.json_response({"collection": slots})

    async def _scheduling_link(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("max_event_count") != 1:
            raise invalid("max_event_count", "must be 1")
        if body.get("owner_type") != "EventType":
            raise invalid("owner_type", "must be EventType")
        owner = next((t for t in self.event_types if t["uri"] == body.get("owner")), None)
        if owner is None:
            raise invalid("owner", "is not an event type of yours")
        link = {"booking_url": f"https://calendly.com/d/{new_id().lower()[:4]}-{new_id().lower()[:4]}/{owner['slug']}",
                "owner": owner["uri"], "owner_type": "EventType"}
        self.links.append(link)
        return web.json_response({"resource": link}, status=201)

    async def _create_invitee(self, request: web.Request) -> web.Response:
        """The Scheduling API: book an available time for an invitee, as the booking page would."""
        if not self.scheduling_api:
            raise ApiError(403, "Permission Denied", "Please upgrade your Calendly account to Standard")
        if self.booking_limit_reached:
            raise ApiError(429, "Too Many Requests", "You have exceeded the booking rate limit")
        body = await request.json()
        if not isinstance(body, dict):
            raise invalid("body", "must be a JSON object")
        for name in ("event_type", "start_time", "invitee"):
            if not body.get(name):
                raise invalid(name, "is required")
        invitee = body["invitee"]
        if not isinstance(invitee, dict):
            raise invalid("invitee", "must be an object")
        for name in ("email", "timezone"):
            if not invitee.get(name):
                raise invalid(f"invitee.{name}", "is required")
        if not (invitee.get("name") or invitee.get("first_name")):
            raise invalid("invitee.name", "name or first_name is required")
        number = invitee.get("text_reminder_number")
        if number is not None and not (isinstance(number, str) and number.startswith("+") and number[1:].isdigit()):
            raise invalid("invitee.text_reminder_number", "must be in E.164 format")
        event_type = next((t for t in self.event_types if t["uri"] == body["event_type"]), None)
        if event_type is None:
            raise invalid("event_type", "is not an event type of yours")
        try:
            start = parse_time(body["start_time"])
        except (TypeError, ValueError):
            raise invalid("start_time", "must be an ISO 8601 time") from None
        free = self.slots.get(event_type["uri"], [])
        slot = next((s for s in free if parse_time(s["start_time"]) == start), None)
        if slot is None:
            raise invalid("start_time", "is not an available time of this event type")
        free.remove(slot)
        name = invitee.get("name") or " ".join(filter(None, (invitee.get("first_name"), invitee.get("last_name"))))
        payload = self.book(
            start=start, email=invitee["email"], name=name, timezone=invitee["timezone"], text_reminder_number=number,
            event_type=event_type,
        )
        self.invitee(payload["uri"])["scheduling_method"] = "instant_book_api"
        resource = {k: v for k, v in self.payload(payload["uri"]).items() if k != "scheduled_event"}
        self.booked.append(resource["uri"])
        return web.json_response({"resource": resource}, status=201)

    async def _scheduled_events(self, request: web.Request) -> web.Response:
        self._owner_filter(request)
        events = list(self.events.values())
        if status := request.query.get("status"):
            events = [e for e in events if e["status"] == status]
        if "min_start_time" in request.query:
            lower = parse_time(request.query["min_start_time"])
            events = [e for e in events if parse_time(e["start_time"]) >= lower]
        if "max_start_time" in request.query:
            upper = parse_time(request.query["max_start_time"])
            events = [e for e in events if parse_time(e["start_time"]) <= upper]
        reverse = request.query.get("sort", "start_time:asc") == "start_time:desc"
        events.sort(key=lambda e: e["start_time"], reverse=reverse)
        return self._page(request, events)

    async def _scheduled_event(self, request: web.Request) -> web.Response:
        uuid = request.match_info["uuid"]
        if uuid not in self.events:
            raise ApiError(404, *NOT_FOUND)
        return web.json_response({"resource": self.events[uuid]})

    async def _invitees(self, request: web.Request) -> web.Response:
        uuid = request.match_info["uuid"]
        if uuid not in self.events:
            raise ApiError(404, *NOT_FOUND)
        invitees = self.invitees.get(uuid, [])
        if status := request.query.get("status"):
            invitees = [i for i in invitees if i["status"] == status]
        return self._page(request, invitees)

    async def _cancellation(self, request: web.Request) -> web.Response:
        uuid = request.match_info["uuid"]
        event = self.events.get(uuid)
        if event is None:
            raise ApiError(404, *NOT_FOUND)
        if event["status"] == "canceled":
            raise ApiError(403, "Permission Denied", "Event is already canceled")
        body = await request.json() if request.can_read_body else {}
        reason = body.get("reason") if isinstance(body, dict) else None
        cancellation = {"canceled_by": self.user["name"], "reason": reason, "canceler_type": "host", "created_at": iso(dt.datetime.now(dt.UTC))}
        event.update(status="canceled", cancellation=cancellation, updated_at=cancellation["created_at"])
        for invitee in self.invitees.get(uuid, []):
            if invitee["status"] == "active":
                invitee.update(status="canceled", canceled=True, cancellation=cancellation, updated_at=cancellation["created_at"])
        event["invitees_counter"]["active"] = 0
        return web.json_response({"resource": cancellation}, status=201)

    async def _create_subscription(self, request: web.Request) -> web.Response:
        body = await request.json()
        for name in ("url", "events", "organization", "scope"):
            if not body.get(name):
                raise invalid(name, "is required")
        if body["scope"] not in ("organization", "user"):
            raise invalid("scope", "must be organization or user")
        if body["scope"] == "user" and not body.get("user"):
            raise invalid("user", "is required for the user scope")
        if body["organization"] != self.organization:
            raise ApiError(403, "Permission Denied", "You do not have permission to access this resource.")
        if any(s["callback_url"] == body["url"] for s in self.subscriptions.values()):
            raise ApiError(409, "Already Exists", "Hook with this url already exists")
        uuid = new_id()
        now = iso(dt.datetime.now(dt.UTC))
        subscription = {
            "uri": f"{API}/webhook_subscriptions/{uuid}", "callback_url": body["url"], "created_at": now, "updated_at": now,
            "retry_started_at": None, "state": "active", "events": list(body["events"]), "scope": body["scope"],
            "organization": body["organization"], "user": body.get("user"), "creator": self.user["uri"],
        }
        self.subscriptions[uuid] = subscription
        # PATs choose their key; without one Calendly makes one up (it is never shown again).
        self.signing_keys[uuid] = body.get("signing_key") or secrets.token_urlsafe(32)
        return web.json_response({"resource": subscription}, status=201)

    async def _subscriptions(self, request: web.Request) -> web.Response:
        for name in ("organization", "scope"):
            if not request.query.get(name):
                raise invalid(name, "is required")
        items = [s for s in self.subscriptions.values()
                 if s["organization"] == request.query["organization"] and s["scope"] == request.query["scope"]]
        return self._page(request, items)

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        uuid = request.match_info["uuid"]
        if self.subscriptions.pop(uuid, None) is None:
            raise ApiError(404, *NOT_FOUND)
        self.signing_keys.pop(uuid, None)
        return web.Response(status=204)

    # --- the organisation's state -----------------------------------------------

    def add_event_type(self, name: str, *, slug: str | None = None, duration: int = 30, active: bool = True) -> dict[str, Any]:
        """An event type of the user (the EventType resource)."""
        slug = slug or name.lower().replace(" ", "-")
        event_type = {
            "uri": f"{API}/event_types/{new_id()}", "name": name, "active": active, "booking_method": "instant",
            "slug": slug, "scheduling_url": f"https://calendly.com/{self.user['slug']}/{slug}", "duration": duration,
            "kind": "solo", "pooling_type": None, "type": "StandardEventType", "color": "#8247f5",
            "created_at": "2024-01-02T03:04:05.678123Z", "updated_at": "2024-01-02T03:04:05.678123Z",
            "internal_note": None, "description_plain": None, "description_html": None,
            "profile": {"type": "User", "name": self.user["name"], "owner": self.user["uri"]},
            "secret": False, "deleted_at": None, "admin_managed": False,
            "custom_questions": [{"name": "Teléfono", "type": "phone_number", "position": 0, "enabled": True,
                                  "required": False, "answer_choices": [], "include_other": False}],
        }
        self.event_types.append(event_type)
        return event_type

    def add_slots(self, event_type: dict[str, Any], starts: Sequence[dt.datetime], invitees_remaining: int = 1) -> None:
        """Free start times of an event type, as `event_type_available_times` lists them."""
        for start in starts:
            moment = start.astimezone(dt.UTC)
            self.slots.setdefault(event_type["uri"], []).append({
                "status": "available", "invitees_remaining": invitees_remaining, "start_time": iso(start),
                "scheduling_url": f"{event_type['scheduling_url']}/{moment:%Y-%m-%dT%H:%M:%S}Z?month={moment:%Y-%m}&date={moment:%Y-%m-%d}",
            })

    def book(
        self,
        *,
        start: dt.datetime,
        email: str,
        name: str,
        timezone: str = "Europe/Madrid",
        text_reminder_number: str | None = None,
        questions: Sequence[tuple[str, str]] = (),
        location: dict[str, Any] | None = None,
        event_type: dict[str, Any] | None = None,
        old_invitee: str | None = None,
        booked_at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """A booking: a new scheduled event with one invitee; returns the `invitee.created` payload."""
        if event_type is None:
            event_type = self.event_types[0] if self.event_types else self.add_event_type("Limpieza dental", slug="limpieza")
        template = json.loads((PAYLOADS / "invitee.created.json").read_text(encoding="utf-8"))["payload"]
        event_uuid, invitee_uuid = new_id(), new_id()
        created = iso(booked_at or dt.datetime.now(dt.UTC))
        event = {k: copy.deepcopy(v) for k, v in template["scheduled_event"].items()}
        event.update(
            uri=f"{API}/scheduled_events/{event_uuid}", name=event_type["name"], status="active",
            start_time=iso(start), end_time=iso(start + dt.timedelta(minutes=event_type["duration"])),
            event_type=event_type["uri"], location=location if location is not None else event["location"],
            invitees_counter={"total": 1, "active": 1, "limit": 1}, created_at=created, updated_at=created,
            event_memberships=[{"user": self.user["uri"], "user_email": self.user["email"], "user_name": self.user["name"]}],
            calendar_event=None,
        )
        invitee = {k: copy.deepcopy(v) for k, v in template.items() if k != "scheduled_event"}
        invitee.update(
            uri=f"{event['uri']}/invitees/{invitee_uuid}", email=email, name=name, first_name=None, last_name=None,
            status="active", timezone=timezone, event=event["uri"], created_at=created, updated_at=created,
            text_reminder_number=text_reminder_number, rescheduled=False, old_invitee=old_invitee, new_invitee=None,
            cancel_url=f"https://calendly.com/cancellations/{invitee_uuid}",
            reschedule_url=f"https://calendly.com/reschedulings/{invitee_uuid}",
            questions_and_answers=[{"question": q, "answer": a, "position": i} for i, (q, a) in enumerate(questions)],
            canceled=False, no_show=None,
        )
        self.events[event_uuid] = event
        self.invitees[event_uuid] = [invitee]
        return self.payload(invitee["uri"])

    def invitee(self, uri: str) -> dict[str, Any]:
        for invitees in self.invitees.values():
            for invitee in invitees:
                if invitee["uri"] == uri:
                    return invitee
        raise KeyError(uri)

    def payload(self, invitee_uri: str) -> dict[str, Any]:
        """What a webhook carries for an invitee now: the resource with its scheduled event embedded."""
        invitee = self.invitee(invitee_uri)
        event = self.events[invitee["event"].rsplit("/", 1)[-1]]
        return copy.deepcopy({**invitee, "scheduled_event": event})

    def cancel(self, invitee_uri: str, reason: str | None, *, canceler_type: str = "invitee") -> dict[str, Any]:
        """The invitee cancels (the event too, as it has one invitee); returns the `invitee.canceled` payload."""
        return self._cancel(invitee_uri, reason, canceler_type=canceler_type, new_invitee=None)

    def reschedule(self, invitee_uri: str, start: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The invitee picks a new time: (the `invitee.canceled` payload, the `invitee.created` payload)."""
        old = self.invitee(invitee_uri)
        event = self.events[old["event"].rsplit("/", 1)[-1]]
        event_type = next(t for t in self.event_types if t["uri"] == event["event_type"])
        created = self.book(
            start=start, email=old["email"], name=old["name"], timezone=old["timezone"],
            text_reminder_number=old["text_reminder_number"],
            questions=[(qa["question"], qa["answer"]) for qa in old["questions_and_answers"]],
            location=event["location"], event_type=event_type, old_invitee=invitee_uri,
        )
        canceled = self._cancel(invitee_uri, None, canceler_type="invitee", new_invitee=created["uri"])
        return canceled, created

    def _cancel(self, invitee_uri: str, reason: str | None, *, canceler_type: str, new_invitee: str | None) -> dict[str, Any]:
        invitee = self.invitee(invitee_uri)
        event = self.events[invitee["event"].rsplit("/", 1)[-1]]
        now = iso(dt.datetime.now(dt.UTC))
        canceled_by = invitee["name"] if canceler_type == "invitee" else self.user["name"]
        cancellation = {"canceled_by": canceled_by, "reason": reason, "canceler_type": canceler_type, "created_at": now}
        invitee.update(status="canceled", canceled=True, cancellation=cancellation, updated_at=now,
                       rescheduled=new_invitee is not None, new_invitee=new_invitee)
        event.update(status="canceled", cancellation=cancellation, updated_at=now)
        event["invitees_counter"]["active"] = 0
        return self.payload(invitee_uri)

    def mark_no_show(self, invitee_uri: str) -> dict[str, Any]:
        """The host marks the invitee a no-show; returns the `invitee_no_show.created` payload."""
        now = iso(dt.datetime.now(dt.UTC))
        self.invitee(invitee_uri)["no_show"] = {"uri": f"{API}/invitee_no_shows/{new_id().lower()}", "created_at": now}
        return self.payload(invitee_uri)

    def unmark_no_show(self, invitee_uri: str) -> dict[str, Any]:
        """The host takes the no-show back; returns the `invitee_no_show.deleted` payload."""
        invitee = self.invitee(invitee_uri)
        # Assumed, not captured: the payload still names the no-show being deleted.
        payload = self.payload(invitee_uri)
        invitee["no_show"] = None
        return payload

    # --- webhooks ---------------------------------------------------------------

    def envelope(self, event: str, payload: dict[str, Any], created_at: dt.datetime | None = None) -> dict[str, Any]:
        """The body Calendly posts: `event`, `created_at`, `created_by` and `payload`."""
        return {"created_at": iso(created_at or dt.datetime.now(dt.UTC)), "created_by": self.user["uri"], "event": event, "payload": payload}

    async def deliver(self, event: str, payload: dict[str, Any], created_at: dt.datetime | None = None) -> list[tuple[int, Any]]:
        """Post the event to every subscription listening for it, signed with its key; (status, JSON) each."""
        body_envelope = self.envelope(event, payload, created_at)
        answers: list[tuple[int, Any]] = []
        async with aiohttp.ClientSession() as session:
            for uuid, subscription in self.subscriptions.items():
                if event not in subscription["events"] or subscription["state"] != "active":
                    continue
                body, headers = signed(body_envelope, self.signing_keys[uuid])
                async with session.post(subscription["callback_url"], data=body, headers=headers) as response:
                    answers.append((response.status, await response.json(content_type=None)))
        return answers
