"""Prometheus metrics: what the hub counts while it runs, and what it reads from the database when scraped.

Each hub process keeps its own registry (no module-level state) and exposes
it: `hub serve` at `/metrics` (with `HUB_METRICS_TOKEN` as a bearer token)
or on an operator-only listener (`--metrics-port`), `hub worker` on its
`--metrics-port`. Prometheus scrapes every process; the database figures
(outbox depth, oldest due, notifications by channel and status) are the
same from any of them, the counters and histograms are per process and add
up in queries (`sum by (...)`). See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from hub.models import Notification, utcnow
from hub.outbox import NotificationStatus

if TYPE_CHECKING:
    from hub.core import Hub

TOKEN_ENV = "HUB_METRICS_TOKEN"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESPONDER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HubMetrics:
    """One process's metrics; the hub owns one (`hub.metrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "hub_http_request_duration_seconds", "HTTP requests by route, method and status class", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.webhooks = Counter(
            "hub_webhooks_received", "Vendor webhooks received by plugin and outcome (accepted, rejected, error)",
            ["plugin", "outcome"], registry=r,
        )
        self.dispatched = Counter(
            "hub_notifications_dispatched", "Dispatch outcomes recorded by this process, by channel and status",
            ["channel", "status"], registry=r,
        )
        self.notifications = Gauge(
            "hub_notifications", "Notifications in the outbox by channel and status (read from the database at scrape)",
            ["channel", "status"], registry=r,
        )
        self.queue_depth = Gauge("hub_outbox_due", "Pending notifications due now (read at scrape)", registry=r)
        self.oldest_due = Gauge(
            "hub_outbox_oldest_due_age_seconds", "How long the oldest due pending notification has waited (0 when none)", registry=r,
        )
        self.responder_latency = Histogram(
            "hub_responder_duration_seconds", "Time respond_to_message took, by outcome (reply, none, timeout)", ["outcome"],
            buckets=RESPONDER_BUCKETS, registry=r,
        )
        self.responder_tokens = Counter("hub_responder_tokens", "Model tokens responders reported, by responder", ["responder"], registry=r)
        self.plugin_failures = Gauge(
            "hub_plugin_failures", "Hook calls that raised in this process, by plugin (since it started)", ["plugin"], registry=r,
        )

    # --- fed by the hub as things happen ---------------------------------------------------------

    def observe_responder(self, seconds: float, outcome: str) -> None:
        """One `respond_to_message` round: how long, and whether it replied."""
        self.responder_latency.labels(outcome).observe(seconds)

    def count_tokens(self, responder: str, tokens: int) -> None:
        """Tokens a responder reported for one model call."""
        if tokens > 0:
            self.responder_tokens.labels(responder or "unknown").inc(tokens)

    # --- read at scrape ------------------------------------------------------------------------------

    async def refresh(self, hub: Hub) -> None:
        """Read the database figures and the plugin failure counts into the gauges."""
        now = utcnow()
        due = (
            (Notification.status == NotificationStatus.PENDING)
            & (Notification.due_at <= now)
            & ((Notification.next_attempt_at.is_(None)) | (Notification.next_attempt_at <= now))
        )
        async with hub.db.sessions() as session:
            counts = (
                await session.execute(select(Notification.channel, Notification.status, func.count()).group_by(Notification.channel, Notification.status))
            ).all()
            depth = await session.scalar(select(func.count()).select_from(Notification).where(due))
            oldest = await session.scalar(select(func.min(Notification.due_at)).where(due))
        self.notifications.clear()
        for channel, status, count in counts:
            self.notifications.labels(channel or "none", status).set(count)
        self.queue_depth.set(depth or 0)
        if isinstance(oldest, str):  # SQLite answers min() of a datetime as text
            oldest = dt.datetime.fromisoformat(oldest).replace(tzinfo=dt.UTC)
        self.oldest_due.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        for plugin, failures in hub.hooks.failures.items():
            self.plugin_failures.labels(plugin).set(failures)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def route_label(request: web.Request) -> str:
    """The matched route's pattern, sub-app prefix included (never the raw path: ids would explode the label set)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def webhook_plugin(path: str) -> str | None:
    """The plugin a /webhooks/<plugin>/... path belongs to."""
    parts = path.split("/")
    return parts[2] if len(parts) > 3 and parts[1] == "webhooks" and parts[2] else None


def outcome_of(status: int) -> str:
    """How a webhook went: accepted (2xx), rejected (4xx: bad signature, bad body), error (5xx)."""
    return "accepted" if status < 400 else "rejected" if status < 500 else "error"


def metrics_middleware(hub: Hub) -> Middleware:
    """Time every request by route; count webhooks by plugin and outcome."""
    metrics = hub.metrics
    # The labelled children, looked up once per label set: `labels()` takes a lock and checks its arguments on
    # every call. Prometheus keeps a child per label set anyway, so these add no label sets of their own.
    timers: dict[tuple[str, str, int], Histogram] = {}
    counters: dict[tuple[str, str], Counter] = {}

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            key = (route_label(request), request.method, status // 100)
            timer = timers.get(key)
            if timer is None:
                timer = timers[key] = metrics.requests.labels(key[0], key[1], f"{key[2]}xx")
            timer.observe(time.perf_counter() - started)
            plugin = webhook_plugin(request.path)
            if plugin in hub.plugins:
                outcome = (plugin, outcome_of(status))
                counter = counters.get(outcome)
                if counter is None:
                    counter = counters[outcome] = metrics.webhooks.labels(*outcome)
                counter.inc()

    return observe


def token_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries the metrics token (constant-time)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_handler(hub: Hub, *, token: str | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: with a token, only for `Authorization: Bearer <token>`; with None, for anyone who can reach the listener."""

    async def serve(request: web.Request) -> web.Response:
        if token is not None and not token_matches(request.headers.get("Authorization", ""), token):
            return web.json_response({"error": "unauthorized", "detail": f"send Authorization: Bearer <{TOKEN_ENV}>"}, status=401)
        await hub.metrics.refresh(hub)
        return web.Response(body=hub.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve


def metrics_app(hub: Hub) -> web.Application:
    """The operator-only listener's app: /metrics and nothing else, no token (bind it where only operators reach)."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(hub, token=None))
    return app


def public_metrics_route(app: web.Application, hub: Hub) -> None:
    """Add /metrics to the public app when `HUB_METRICS_TOKEN` is set (otherwise it is not served there)."""
    token = hub.config.environ.get(TOKEN_ENV, "").strip()
    if token:
        app.router.add_get("/metrics", metrics_handler(hub, token=token))

