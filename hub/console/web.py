"""The web console's routes: sign-in, and one set of pages per tenant under /t/<tenant>/.

Pages are rendered on the server with Jinja2 (autoescaped); the few forms
post back and redirect. A tenant user reaches only their own tenant (any
other slug is a 404, as is another tenant's contact id); an operator reaches
every tenant. Every POST needs the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import structlog
from aiohttp import web
from argon2 import PasswordHasher

from hub import merge_decisions
from hub.console import queries
from hub.console.actions import ActionRefused, cancel_notification, retry_notification
from hub.console.passwords import new_hasher
from hub.console.sections import Section, has_handoff, sections_for
from hub.console.sessions import SessionCodec, SessionData, csrf_ok, derive_signing_key, new_csrf
from hub.console.users import SignedInUser, sign_in, user_for_session
from hub.core import Hub
from hub.errors import HubError, UnknownTenant
from hub.merges import MergeError
from hub.models import utcnow
from hub.outbox import STATUSES
from hub.tenants import TenantInfo

TEMPLATES = Path(__file__).resolve().parent / "templates"
MEDIUM_TEMPLATES = {"email": "email", "sms": "sms", "whatsapp": "whatsapp"}
TEMPLATE_KINDS = ("confirmation", "reminder", "reschedule", "cancellation", "message")
NOTICES = {
    "retried": "Queued again: the dispatcher sends it now.",
    "canceled": "Canceled.",
    "handed-off": "Handed to a person: the bot stays quiet in this conversation.",
    "released": "Released: the bot answers this conversation again.",
    "replayed": "Queued again for delivery.",
    "configured": "Saved. Running hub processes pick the change up by themselves.",
    "merged": "Merged: everything of the other contact is on this one now (Undo below).",
    "kept-apart": "Kept apart: later evidence will not merge these two.",
    "unmerged": "Merge undone: the other contact has its addresses, threads and appointments back.",
}


@dataclass
class Page:
    """What every console page knows: who is looking, at which tenant, with which sections."""

    user: SignedInUser
    session: SessionData
    tenant: TenantInfo | None = None
    sections: list[Section] = field(default_factory=list)
    sandbox: list[str] = field(default_factory=list)
    tenants: list[TenantInfo] = field(default_factory=list)


PageHandler = Callable[[web.Request, Page], Awaitable[web.StreamResponse]]


class Console:
    """The console's handlers for one hub."""

    def __init__(self, hub: Hub, hasher: PasswordHasher | None = None) -> None:
        self.hub = hub
        self.hasher = hasher or new_hasher()
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
        self.env.filters["when"] = self._when
        self._codec: SessionCodec | None = None
        self.log = structlog.get_logger("hub.console")

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def codec(self) -> SessionCodec:
        """The cookie codec, keyed from the hub's secret key on first use."""
        if self._codec is None:
            key = self.hub.tenant_settings.keyring.current("the console signs its session cookies with the hub's secret key")
            self._codec = SessionCodec(derive_signing_key(key), secure=self.hub.public_url.startswith("https://"))
        return self._codec

    @staticmethod
    def _when(value: dt.datetime | None, zone: str = "UTC") -> str:
        if value is None:
            return ""
        from zoneinfo import ZoneInfo

        return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")

    def render(self, name: str, status: int = 200, page: Page | None = None, **context: Any) -> web.Response:
        """A rendered template as an HTML response."""
        context.setdefault("active", None)
        context.setdefault("sandbox", [])
        html = self.env.get_template(name).render(page=page, notices=NOTICES, **context)
        return web.Response(text=html, status=status, content_type="text/html", headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        })

    def not_found(self, page: Page | None) -> web.Response:
        """The same answer for a missing row and another tenant's row."""
        return self.render("not_found.html", 404, page)

    async def _sandboxed(self, tenant: TenantInfo | None) -> list[str]:
        names = []
        for name, state in self.hub.plugins.items():
            settings = self.hub.settings_for(name, tenant.slug) if tenant else state.settings
            if getattr(settings, "sandbox", None) is True:
                names.append(name)
        return sorted(names)

    def guarded(self, handler: PageHandler, *, tenant_page: bool = True) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a page: signed-in user required, tenant resolved and checked, CSRF checked on POST."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                session = self.codec.read(request)
            except HubError as exc:
                return self.render("problem.html", 503, None, problem=str(exc))
            user = None
            if session is not None and session.user_id is not None:
                async with self.hub.db.sessions.begin() as db:
                    user = await user_for_session(db, session.user_id, session.version)
            if user is None or session is None:
                raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
            page = Page(user, session)
            if request.method == "POST":
                form = await request.post()
                if not csrf_ok(session, str(form.get("csrf", ""))):
                    return self.render("problem.html", 403, page, problem="This form is out of date (CSRF check failed): reload the page and try again.")
            if user.is_operator:
                page.tenants = await self.hub.tenants.all()
            if tenant_page:
                slug = request.match_info["tenant"]
                if not user.is_operator and slug != user.tenant_slug:
                    return self.not_found(page)
                try:
                    page.tenant = await self.hub.tenants.get(slug)
                except UnknownTenant:
                    return self.not_found(page)
                page.sections = sections_for(self.hub)
            page.sandbox = await self._sandboxed(page.tenant)
            return await handler(request, page)

        return wrapped

    # --- sign-in ------------------------------------------------------------------------------

    async def signin_form(self, request: web.Request, problem: str = "", status: int = 200) -> web.Response:
        """GET /signin: the form, with a CSRF token in a fresh anonymous session."""
        try:
            session = self.codec.read(request) or SessionData(new_csrf())
        except HubError as exc:
            return self.render("problem.html", 503, None, problem=str(exc))
        response = self.render(
            "signin.html", status, None, csrf=session.csrf, problem=problem, next=_safe_next(request.query.get("next", "")),
            sandbox=await self._sandboxed(None),
        )
        self.codec.write(response, SessionData(session.csrf))
        return response

    async def signin(self, request: web.Request) -> web.StreamResponse:
        """POST /signin: check the password (counting failures), then start a session with a new CSRF token."""
        form = await request.post()
        session = self.codec.read(request)
        if not csrf_ok(session, str(form.get("csrf", ""))):
            return await self.signin_form(request, "This form is out of date: please try again.", 403)
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        async with self.hub.db.sessions.begin() as db:
            outcome = await sign_in(db, self.hasher, email, password)
        if outcome.user is None:
            self.log.info("console_sign_in_refused", reason=outcome.problem)
            return await self.signin_form(request, outcome.problem, 401)
        self.log.info("console_signed_in", user=outcome.user.id, role=outcome.user.role)
        target = _safe_next(str(form.get("next", ""))) or (f"/t/{outcome.user.tenant_slug}/" if outcome.user.tenant_slug else "/")
        response = web.HTTPSeeOther(target)
        self.codec.write(response, SessionData(new_csrf(), outcome.user.id, outcome.user.session_version))
        raise response

    async def signout(self, request: web.Request, page: Page) -> web.StreamResponse:
        """POST /signout."""
        response = web.HTTPSeeOther("/signin")
        self.codec.clear(response)
        raise response

    async def home(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /: a tenant user's today page; an operator's list of tenants."""
        if not page.user.is_operator:
            raise web.HTTPSeeOther(f"/t/{page.user.tenant_slug}/")
        return self.render("tenants.html", page=page)

    # --- pages --------------------------------------------------------------------------------

    async def today(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/: today's appointments, reminders due soon, delivery rates, failures."""
        assert page.tenant is not None
        async with self.hub.db.sessions() as db:
            today = await queries.today(db, page.tenant)
        return self.render("today.html", page=page, today=today, zone=page.tenant.timezone)

    async def contacts(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/contacts?q=: search by name, phone in any format, or email."""
        assert page.tenant is not None
        query = request.query.get("q", "")[:320]
        async with self.hub.db.sessions() as db:
            found = await queries.search_contacts(db, page.tenant, query) if query.strip() else None
            recent = [] if found else await queries.recent_contacts(db, page.tenant)
            proposals = [] if found else await queries.open_proposals(db, page.tenant)
        return self.render("contacts.html", page=page, q=query, found=found, recent=recent, proposals=proposals,
                           notice=request.query.get("done", ""), problem=request.query.get("problem", "")[:300])

    async def contact(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/contacts/<id>: identities, consent per channel, merges, and the timeline."""
        assert page.tenant is not None
        contact_id = _int(request.match_info["id"])
        if contact_id is None:
            return self.not_found(page)
        async with self.hub.db.sessions() as db:
            found = await queries.contact_page(db, page.tenant, contact_id)
        if found is None:
            return self.not_found(page)
        mediums: dict[str, list[str]] = {}
        for channel in self.hub.channels.values():
            if channel.medium not in mediums.setdefault(channel.address_kind, []):
                mediums[channel.address_kind].append(channel.medium)
        # Each plugin's own section about this person (Chatwoot's links, ...): there only when the plugin is.
        plugin_sections = await self.hub.contact_context(page.tenant.slug, contact_id)
        return self.render("contact.html", page=page, c=found, mediums=mediums, zone=page.tenant.timezone,
                           plugin_sections=plugin_sections,
                           notice=request.query.get("done", ""), problem=request.query.get("problem", "")[:300])

    async def merge_action(self, request: web.Request, page: Page) -> web.StreamResponse:
        """POST /t/<tenant>/proposals/<id>/accept|reject, /t/<tenant>/contacts/<id>/unmerge: the operator's merge decisions."""
        assert page.tenant is not None
        target = _int(request.match_info["id"])
        action = request.match_info["action"]
        back = _int(str((await request.post()).get("contact", "")))
        if target is None:
            return self.not_found(page)
        try:
            if action == "accept":
                record = await merge_decisions.accept(self.hub, page.tenant, target)
                back, done = record.kept_contact_id, "merged"
            elif action == "reject":
                await merge_decisions.reject(self.hub, page.tenant, target)
                done = "kept-apart"
            else:
                await merge_decisions.undo(self.hub, page.tenant, target)
                done = "unmerged"
        except MergeError as exc:
            raise web.HTTPSeeOther(f"/t/{page.tenant.slug}/contacts{f'/{back}' if back else ''}?" + urlencode({"problem": str(exc)}))
        self.log.info("console_merge_decision", action=action, target=target, user=page.user.id)
        raise web.HTTPSeeOther(f"/t/{page.tenant.slug}/contacts{f'/{back}' if back else ''}?done={done}")

    async def outbox(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/outbox?status=&kind=&channel=: notifications, newest first, with retry and cancel."""
        assert page.tenant is not None
        chosen = queries.OutboxFilter(
            request.query.get("status", "")[:20], request.query.get("kind", "")[:64], request.query.get("channel", "")[:64]
        )
        async with self.hub.db.sessions() as db:
            rows = await queries.outbox_rows(db, page.tenant, chosen)
            kinds = await queries.outbox_kinds(db, page.tenant)
        return self.render(
            "outbox.html", page=page, rows=rows, chosen=chosen, statuses=STATUSES, kinds=kinds,
            channels=sorted(self.hub.channels), zone=page.tenant.timezone, notice=request.query.get("done", ""),
            problem=request.query.get("problem", "")[:300],
        )

    async def notification(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/outbox/<id>: one notification, its history and every attempt."""
        assert page.tenant is not None
        notification_id = _int(request.match_info["id"])
        async with self.hub.db.sessions() as db:
            found = await queries.notification_detail(db, page.tenant, notification_id) if notification_id else None
        if found is None:
            return self.not_found(page)
        row, attempts = found
        return self.render("notification.html", page=page, n=row, attempts=attempts, zone=page.tenant.timezone)

    async def notification_action(self, request: web.Request, page: Page) -> web.StreamResponse:
        """POST /t/<tenant>/outbox/<id>/retry or /cancel."""
        assert page.tenant is not None
        notification_id = _int(request.match_info["id"])
        action = request.match_info["action"]
        replay = (await request.post()).get("back") == "webhooks"
        back = f"/t/{page.tenant.slug}/{'webhooks' if replay else 'outbox'}"
        try:
            if notification_id is None:
                raise LookupError(request.match_info["id"])
            if action == "retry":
                await retry_notification(self.hub, page.tenant, notification_id, by=page.user.email)
            else:
                await cancel_notification(self.hub, page.tenant, notification_id, by=page.user.email)
        except LookupError:
            return self.not_found(page)
        except ActionRefused as exc:
            raise web.HTTPSeeOther(f"{back}?" + urlencode({"problem": str(exc)}))
        self.log.info("console_notification_action", action=action, notification=notification_id, user=page.user.id)
        if replay:
            raise web.HTTPSeeOther(f"/t/{page.tenant.slug}/webhooks?done=replayed")
        raise web.HTTPSeeOther(f"{back}?done={'retried' if action == 'retry' else 'canceled'}")

    async def conversations(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/conversations: open conversations and who answers each (bot or human)."""
        assert page.tenant is not None
        if not has_handoff(self.hub):
            return self.not_found(page)
        from hub.console.conversations import open_conversations

        async with self.hub.db.sessions() as db:
            rows = await open_conversations(db, page.tenant)
        handlers = {row.id: await getattr(self.hub, "conversation_handler")(page.tenant.slug, row.id) for row, _ in rows}
        return self.render("conversations.html", page=page, rows=rows, handlers=handlers, zone=page.tenant.timezone,
                           notice=request.query.get("done", ""))

    async def conversation_action(self, request: web.Request, page: Page) -> web.StreamResponse:
        """POST /t/<tenant>/conversations/<id>/hand-off or /release, through the port's hand-off methods."""
        assert page.tenant is not None
        conversation_id = _int(request.match_info["id"])
        if not has_handoff(self.hub) or conversation_id is None:
            return self.not_found(page)
        action = request.match_info["action"]
        try:
            if action == "hand-off":
                await getattr(self.hub, "hand_off")(page.tenant.slug, conversation_id, reason="console",
                                                    summary=f"taken over in the console by {page.user.email}")
            else:
                await getattr(self.hub, "release")(page.tenant.slug, conversation_id, reason="console")
        except HubError:
            return self.not_found(page)
        raise web.HTTPSeeOther(f"/t/{page.tenant.slug}/conversations?done={'handed-off' if action == 'hand-off' else 'released'}")

    async def webhooks(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/webhooks: subscriptions (secrets never shown) and deliveries, dead letters replayable."""
        assert page.tenant is not None
        async with self.hub.db.sessions() as db:
            subscriptions, deliveries = await queries.webhook_deliveries(db, page.tenant)
        return self.render("webhooks.html", page=page, subscriptions=subscriptions, deliveries=deliveries, zone=page.tenant.timezone,
                           notice=request.query.get("done", ""), problem=request.query.get("problem", "")[:300])

    async def configure(self, request: web.Request, page: Page) -> web.StreamResponse:
        """POST /t/<tenant>/settings/<plugin>: set one key of the tenant's plugin settings (secrets stored encrypted, never shown)."""
        assert page.tenant is not None
        from hub.commands.tenants import parse_assignments
        from hub.tenant_settings import SettingsProblem, UnknownPlugin

        form = await request.post()
        plugin, key, value = request.match_info["plugin"], str(form.get("key", "")).strip(), str(form.get("value", ""))
        back = f"/t/{page.tenant.slug}/settings"
        store = self.hub.tenant_settings
        try:
            model = store.model_for(plugin)
            # No environment here: "@env:NAME" would read the server's variables.
            changes = parse_assignments(model, plugin, (f"{key}={value}",), {})
            await store.configure(page.tenant.slug, plugin, changes)
        except UnknownPlugin:
            return self.not_found(page)
        except SettingsProblem as exc:
            raise web.HTTPSeeOther(f"{back}?" + urlencode({"problem": str(exc)}))
        self.log.info("console_settings_changed", plugin=plugin, key=key, user=page.user.id)
        raise web.HTTPSeeOther(f"{back}?done=configured")

    async def settings(self, request: web.Request, page: Page) -> web.StreamResponse:
        """GET /t/<tenant>/settings: plugins (configured, sandbox, health), templates previewed, profile, reminders."""
        assert page.tenant is not None
        tenant = page.tenant
        _, health = await self.hub.health()
        views = await self.hub.tenant_settings.views(tenant.slug)
        now = utcnow()
        context = queries.sample_context(tenant, now)
        locales = sorted({tenant.locale, tenant.locale.split("-")[0], "en"})
        mediums = sorted({c.medium for c in self.hub.channels.values() if c.medium in MEDIUM_TEMPLATES})
        previews = []
        for kind in TEMPLATE_KINDS:
            for locale in locales:
                for medium in mediums:
                    try:
                        rendered = self.hub.templates.render(kind=kind, medium=medium, locale=locale, timezone=tenant.timezone,
                                                             context=context, tenant_dir=self.hub.tenant_template_dir(tenant))
                        previews.append((kind, locale, medium, rendered.subject or "", rendered.text, ""))
                    except Exception as exc:  # a broken template is shown as such, not a broken page
                        previews.append((kind, locale, medium, "", "", f"{type(exc).__name__}: {exc}"))
        return self.render("settings.html", page=page, health=health, views=views, previews=previews, tenant=tenant,
                           notice=request.query.get("done", ""), problem=request.query.get("problem", "")[:300])


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 19 else None


def _safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another host.
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else ""


def add_console(app: web.Application, hub: Hub) -> Console:
    """Mount the console's routes on the hub's app (at /, /signin and /t/<tenant>/...)."""
    console = Console(hub)
    guarded = console.guarded
    app.router.add_get("/", guarded(console.home, tenant_page=False), name="console")
    app.router.add_get("/signin", console.signin_form)
    app.router.add_post("/signin", console.signin)
    app.router.add_post("/signout", guarded(console.signout, tenant_page=False))
    app.router.add_get("/t/{tenant}/", guarded(console.today))
    app.router.add_get("/t/{tenant}/contacts", guarded(console.contacts))
    app.router.add_get("/t/{tenant}/contacts/{id}", guarded(console.contact))
    app.router.add_post("/t/{tenant}/proposals/{id}/{action:accept|reject}", guarded(console.merge_action))
    app.router.add_post("/t/{tenant}/contacts/{id}/{action:unmerge}", guarded(console.merge_action))
    app.router.add_get("/t/{tenant}/outbox", guarded(console.outbox))
    app.router.add_get("/t/{tenant}/outbox/{id}", guarded(console.notification))
    app.router.add_post("/t/{tenant}/outbox/{id}/{action:retry|cancel}", guarded(console.notification_action))
    app.router.add_get("/t/{tenant}/conversations", guarded(console.conversations))
    app.router.add_post("/t/{tenant}/conversations/{id}/{action:hand-off|release}", guarded(console.conversation_action))
    app.router.add_get("/t/{tenant}/webhooks", guarded(console.webhooks))
    app.router.add_get("/t/{tenant}/settings", guarded(console.settings))
    app.router.add_post("/t/{tenant}/settings/{plugin}", guarded(console.configure))
    app.router.add_static("/console-static/", Path(__file__).resolve().parent / "static", name="console-static")
    return console
