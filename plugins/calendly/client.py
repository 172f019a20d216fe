"""A small async client for the parts of Calendly API v2 the hub uses.

One `aiohttp.ClientSession` is shared (the plugin opens it at start-up);
each `CalendlyClient` adds a tenant's base URL and bearer token. Pages are
followed with `next_page_token` until it is null; a 429 is retried after
`Retry-After` a bounded number of times; errors carry Calendly's
`{"title", "message", "details"}`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from hub import HubError

if TYPE_CHECKING:
    import aiohttp

# aiohttp loads when the plugin first talks to its API: every `hub` command loads this module.

MAX_AVAILABILITY_RANGE = dt.timedelta(days=7)
"""Calendly refuses a longer range in one `event_type_available_times` request."""

WEBHOOK_EVENTS: tuple[str, ...] = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
)

_EVENT_UUID = re.compile(r"/scheduled_events/([^/?#]+)")


class CalendlyError(HubError):
    """Calendly answered with an error (or could not be reached)."""

    def __init__(
        self, message: str, *, status: int | None = None, title: str | None = None,
        details: tuple[str, ...] = (), retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.details = details
        self.retry_after = retry_after


class CalendlyAuthError(CalendlyError):
    """401: the token is expired, revoked or wrong."""


def event_uuid(value: str) -> str:
    """The scheduled event's uuid from a uuid, an event URI, or an invitee URI."""
    text = value.strip()
    match = _EVENT_UUID.search(text)
    uuid = match.group(1) if match else text
    if not uuid or "/" in uuid or "?" in uuid:
        raise ValueError(f"not a Calendly scheduled event uuid or URI: {value!r}")
    return uuid


def iso(moment: dt.datetime) -> str:
    """Calendly's UTC form, "2020-01-02T03:04:05.000000Z"."""
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def availability_windows(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split [start, end) into consecutive ranges no longer than Calendly allows."""
    windows: list[tuple[dt.datetime, dt.datetime]] = []
    cursor = start
    while cursor < end:
        upper = min(cursor + MAX_AVAILABILITY_RANGE, end)
        windows.append((cursor, upper))
        cursor = upper
    return windows


class CalendlyClient:
    """Calendly API v2 for one tenant's token."""

    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, token: str, tenant: str,
        timeout_seconds: float = 15.0, max_retries: int = 3, max_retry_wait: float = 30.0,
    ) -> None:
        import aiohttp

        self.session = session
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait

    # --- transport ------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
        retry_rate_limit: bool = True,
    ) -> dict[str, Any]:
        """One API call; returns the JSON body ({} for 204). Raises CalendlyError.

        With `retry_rate_limit=False` a 429 is raised at once (a client waiting
        on WhatsApp is better served by a fallback than by a wait).
        """
        import aiohttp

        url = f"{self.base_url}{path}"
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        retries = self.max_retries if retry_rate_limit else 0
        for attempt in range(retries + 1):
            try:
                async with self.session.request(
                    method, url, params=query, json=json, headers=self._headers, timeout=self._timeout
                ) as response:
                    if response.status == 429:
                        wait = _retry_after(response.headers.get("Retry-After"), attempt)
                        if attempt < retries and wait <= self.max_retry_wait:
                            await asyncio.sleep(wait)
                            continue
                        raise CalendlyError(
                            f"Calendly rate limit for tenant {self.tenant}: {method} {path} still refused after "
                            f"{attempt + 1} tries (Retry-After {wait:g} s)",
                            status=429, title="Too Many Requests", retry_after=wait,
                        )
                    body = await _json_body(response)
                    if response.status >= 400:
                        raise self._error(method, path, response.status, body)
                    return body
            except aiohttp.ClientError as exc:
                raise CalendlyError(f"Calendly unreachable for tenant {self.tenant}: {method} {path}: {type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                raise CalendlyError(f"Calendly timed out for tenant {self.tenant}: {method} {path}") from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    def _error(self, method: str, path: str, status: int, body: Mapping[str, Any]) -> CalendlyError:
        title = body.get("title") if isinstance(body.get("title"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
        details = tuple(
            f"{d.get('parameter')}: {d.get('message')}" if d.get("parameter") else str(d.get("message"))
            for d in body.get("details") or [] if isinstance(d, Mapping)
        )
        said = ": ".join(p for p in (title, message) if p) or "no error body"
        if details:
            said += f" ({'; '.join(details)})"
        if status == 401:
            return CalendlyAuthError(
                f"Calendly token for tenant {self.tenant} is expired or wrong (401 {said})",
                status=status, title=title, details=details,
            )
        return CalendlyError(f"Calendly {method} {path} for tenant {self.tenant}: {status} {said}", status=status, title=title, details=details)

    def _resource(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        resource = body.get("resource")
        if not isinstance(resource, dict):
            raise CalendlyError(f"Calendly {path} for tenant {self.tenant}: the answer has no resource")
        return resource

    async def collection(self, path: str, params: Mapping[str, Any] | None = None, *, count: int = 100) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paginated collection, following `next_page_token` until it is null."""
        query = {**(params or {}), "count": count}
        while True:
            body = await self.request("GET", path, params=query)
            for item in body.get("collection") or []:
                yield item
            token = (body.get("pagination") or {}).get("next_page_token")
            if not token:
                return
            query = {**query, "page_token": token}

    # --- resources --------------------------------------------------------------

    async def current_user(self) -> dict[str, Any]:
        """`GET /users/me`: the token's user (uri, name, email, current_organization...)."""
        return self._resource("/users/me", await self.request("GET", "/users/me"))

    async def event_types(self, *, user: str | None = None, organization: str | None = None, active: bool | None = True) -> list[dict[str, Any]]:
        """The event types of a user or an organisation."""
        params = {"user": user, "organization": organization, "active": active}
        return [item async for item in self.collection("/event_types", params)]

    async def available_times(self, event_type: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Free start times of an event type in [start, end), asking a week at a time."""
        slots: list[dict[str, Any]] = []
        for lower, upper in availability_windows(start, end):
            body = await self.request(
                "GET", "/event_type_available_times",
                params={"event_type": event_type, "start_time": iso(lower), "end_time": iso(upper)},
            )
            slots.extend(body.get("collection") or [])
        return slots

    async def create_scheduling_link(self, event_type: str, max_event_count: int = 1) -> dict[str, Any]:
        """`POST /scheduling_links`: a single-use booking link for an event type."""
        body = {"max_event_count": max_event_count, "owner": event_type, "owner_type": "EventType"}
        return self._resource("/scheduling_links", await self.request("POST", "/scheduling_links", json=body))

    async def create_invitee(
        self, *, event_type: str, start_time: dt.datetime, email: str, name: str, timezone: str,
        text_reminder_number: str | None = None,
    ) -> dict[str, Any]:
        """`POST /invitees` (the Scheduling API): book an available time for the invitee; returns the Invitee.

        Paid plans only (403 otherwise) and tightly rate limited (429): both
        are raised at once as `CalendlyError` for the caller to fall back on.
        """
        invitee: dict[str, Any] = {"email": email, "name": name, "timezone": timezone}
        if text_reminder_number:
            invitee["text_reminder_number"] = text_reminder_number
        body = {"event_type": event_type, "start_time": iso(start_time), "invitee": invitee}
        return self._resource("/invitees", await self.request("POST", "/invitees", json=body, retry_rate_limit=False))

    def scheduled_events(
        self, *, organization: str | None = None, user: str | None = None, status: str | None = "active",
        min_start_time: dt.datetime | None = None, max_start_time: dt.datetime | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Scheduled events, soonest first."""
        params = {
            "organization": organization, "user": user, "status": status, "sort": "start_time:asc",
            "min_start_time": iso(min_start_time) if min_start_time else None,
            "max_start_time": iso(max_start_time) if max_start_time else None,
        }
        return self.collection("/scheduled_events", params)

    async def scheduled_event(self, event: str) -> dict[str, Any]:
        """`GET /scheduled_events/{uuid}`: one scheduled event (uuid or URI)."""
        path = f"/scheduled_events/{event_uuid(event)}"
        return self._resource(path, await self.request("GET", path))

    def invitees(self, event: str, *, status: str | None = "active") -> AsyncIterator[dict[str, Any]]:
        """The invitees of a scheduled event (uuid or URI)."""
        return self.collection(f"/scheduled_events/{event_uuid(event)}/invitees", {"status": status, "sort": "created_at:asc"})

    async def cancel_event(self, event: str, reason: str | None = None) -> dict[str, Any]:
        """`POST /scheduled_events/{uuid}/cancellation`: cancel the event for every invitee."""
        path = f"/scheduled_events/{event_uuid(event)}/cancellation"
        return self._resource(path, await self.request("POST", path, json={"reason": reason} if reason else {}))

    async def create_webhook_subscription(
        self, *, url: str, organization: str, signing_key: str, events: tuple[str, ...] = WEBHOOK_EVENTS,
        scope: str = "organization", user: str | None = None,
    ) -> dict[str, Any]:
        """`POST /webhook_subscriptions`; a 409 (same URL) raises CalendlyError with status 409."""
        body: dict[str, Any] = {"url": url, "events": list(events), "organization": organization, "scope": scope, "signing_key": signing_key}
        if user:
            body["user"] = user
        return self._resource("/webhook_subscriptions", await self.request("POST", "/webhook_subscriptions", json=body))

    async def webhook_subscriptions(self, *, organization: str, scope: str = "organization", user: str | None = None) -> list[dict[str, Any]]:
        """The webhook subscriptions of an organisation (or one of its users)."""
        params = {"organization": organization, "scope": scope, "user": user}
        return [item async for item in self.collection("/webhook_subscriptions", params)]

    async def delete_webhook_subscription(self, uri: str) -> None:
        """`DELETE /webhook_subscriptions/{uuid}`."""
        uuid = uri.rstrip("/").rsplit("/", 1)[-1]
        await self.request("DELETE", f"/webhook_subscriptions/{uuid}")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _retry_after(header: str | None, attempt: int) -> float:
    # Retry-After in seconds; without one, back off 1, 2, 4... seconds.
    try:
        value = float(header) if header is not None else None
    except ValueError:
        value = None
    return max(0.0, value) if value is not None else float(2**attempt)


async def _json_body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    if response.status == 204:
        return {}
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
