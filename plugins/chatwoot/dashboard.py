"""The Dashboard App: a page Chatwoot shows beside every conversation, with the client's context from the hub.

Chatwoot loads `GET /webhooks/chatwoot/app?tenant=T&key=K` in an iframe and
posts it `{"event": "appContext", "data": {conversation, contact,
currentAgent}}` as a JSON string; the page asks again by posting
`chatwoot-dashboard-app:fetch-info` to its parent. The page ignores
messages from any origin but the tenant's `base_url`, then trades the app
key and the Chatwoot contact id for a token scoped to that one hub contact
(signed, expiring after 15 minutes), and reads and acts only through it:
no listing of contacts, no tenant API key in the browser.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from hub import ContactView, HubError, NotificationRequest, UnknownContact

from .runtime import IDENTITY, TOKEN_SECONDS, BadToken, ChatwootPlugin
from .sync import CONSENT_MEDIUMS

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Hub</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#1f2d3d;background:#fff}}
h1{{font-size:16px;margin:0 0 8px}} h2{{font-size:13px;text-transform:uppercase;color:#6b7c93;margin:16px 0 6px}}
ul{{list-style:none;margin:0;padding:0}} li{{padding:6px 0;border-bottom:1px solid #eef2f7}}
li span+span{{margin-left:6px}}
.tag{{display:inline-block;border-radius:8px;padding:0 6px;font-size:12px;background:#eef2f7}}
.failed,.opted{{background:#fde2e1}} .sent,.sandboxed,.delivered,.read,.yes,.scheduled{{background:#dff5e3}} .canceled,.no_show,.expired{{background:#eceff3}} .pending{{background:#fff4d6}}
button{{font-size:12px;margin-left:6px;cursor:pointer}} .in{{color:#1f6feb}} .out{{color:#6b7c93}} #status{{color:#6b7c93}}
</style></head>
<body data-origin="{origin}" data-tenant="{tenant}" data-labels="{labels}">
<p id="status">{waiting}</p>
<main id="app" hidden>
  <h1 id="name"></h1>
  <h2>{consent}</h2><ul id="consent"></ul>
  <h2>{upcoming}</h2><ul id="upcoming"></ul>
  <h2>{past}</h2><ul id="past"></ul>
  <h2>{reminders}</h2><ul id="reminders"></ul>
  <h2>{timeline}</h2><ul id="timeline"></ul>
</main>
<script>
(function () {{
  "use strict";
  var allowed = document.body.dataset.origin;
  var tenant = document.body.dataset.tenant;
  var key = new URLSearchParams(window.location.search).get("key") || "";
  var base = window.location.pathname.replace(/\\/$/, "");
  var token = null;
  var ignored = 0;
  var labels = JSON.parse(document.body.dataset.labels);

  function item(list, parts) {{
    var li = document.createElement("li");
    parts.forEach(function (part) {{
      var node;
      if (part.button) {{
        node = document.createElement("button");
        node.textContent = part.button;
        node.dataset.action = part.action;
        node.addEventListener("click", part.onclick);
      }} else {{
        node = document.createElement("span");
        node.textContent = part.text;
        if (part.cls) {{ node.className = part.cls; }}
      }}
      li.appendChild(node);
    }});
    document.getElementById(list).appendChild(li);
    return li;
  }}

  function clear(id) {{ document.getElementById(id).replaceChildren(); }}

  function say(text) {{ document.getElementById("status").textContent = text; }}

  function call(method, path, body) {{
    var headers = {{"Content-Type": "application/json"}};
    if (token) {{ headers["Authorization"] = "Bearer " + token; }}
    return fetch(base + path + "?tenant=" + encodeURIComponent(tenant), {{
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined
    }}).then(function (response) {{
      return response.json().then(function (data) {{
        if (!response.ok) {{ throw new Error(data.detail || data.error || response.status); }}
        return data;
      }});
    }});
  }}

  function render(view) {{
    document.getElementById("name").textContent = view.name || "—";
    ["consent", "upcoming", "past", "reminders", "timeline"].forEach(clear);
    Object.keys(view.consent).forEach(function (medium) {{
      var value = view.consent[medium];
      item("consent", [{{text: medium}}, {{text: value, cls: "tag " + (value === "opted out" ? "opted" : value === "yes" ? "yes" : "")}}]);
    }});
    view.upcoming.forEach(function (a) {{ item("upcoming", [{{text: a.when}}, {{text: a.service || ""}}, {{text: a.status, cls: "tag " + a.status}}]); }});
    view.past.forEach(function (a) {{ item("past", [{{text: a.when}}, {{text: a.service || ""}}, {{text: a.status, cls: "tag " + a.status}}]); }});
    view.reminders.forEach(function (n) {{
      var parts = [{{text: n.kind + " · " + n.when}}, {{text: n.status, cls: "tag " + n.status}}, {{text: n.attempts + " " + labels.attempts}}];
      if (n.status === "pending") {{
        parts.push({{button: labels.cancel, action: "cancel", onclick: function () {{ act("cancel", n.id); }}}});
      }} else {{
        parts.push({{button: labels.resend, action: "resend", onclick: function () {{ act("resend", n.id); }}}});
      }}
      item("reminders", parts).dataset.id = n.id;
    }});
    view.timeline.forEach(function (m) {{
      item("timeline", [{{text: (m.direction === "in" ? "← " : "→ ") + m.medium + " · " + m.when + ": ", cls: m.direction}}, {{text: m.body}}]);
    }});
    document.getElementById("app").hidden = false;
    say("");
  }}

  function refresh() {{ return call("GET", "/context").then(render); }}

  function act(action, id) {{
    call("POST", "/notifications/" + id + "/" + action, {{}}).then(function (result) {{
      // The refreshed panel clears the status line: say what happened once it is drawn.
      return refresh().then(function () {{ say(result.message); }});
    }}).catch(function (error) {{ say(String(error.message || error)); }});
  }}

  function load(contactId) {{
    say(labels.loading);
    call("POST", "/token", {{key: key, contact_id: contactId}}).then(function (answer) {{
      token = answer.token;
      return refresh();
    }}).catch(function (error) {{
      document.getElementById("app").hidden = true;
      say(String(error.message || error));
    }});
  }}

  window.addEventListener("message", function (event) {{
    if (event.origin !== allowed) {{
      ignored += 1;
      document.body.dataset.ignored = String(ignored);
      return;
    }}
    if (typeof event.data !== "string") {{ return; }}
    var message;
    try {{ message = JSON.parse(event.data); }} catch (e) {{ return; }}
    if (!message || message.event !== "appContext" || !message.data || !message.data.contact) {{ return; }}
    load(message.data.contact.id);
  }});

  window.parent.postMessage("chatwoot-dashboard-app:fetch-info", "*");
}})();
</script>
</body></html>
"""


LABELS: dict[str, dict[str, str]] = {
    "es": {
        "waiting": "Esperando a Chatwoot…", "loading": "Cargando…", "consent": "Consentimiento", "upcoming": "Próximas citas",
        "past": "Citas pasadas", "reminders": "Recordatorios", "timeline": "Historial", "attempts": "intento(s)",
        "cancel": "Cancelar", "resend": "Reenviar", "canceled": "Recordatorio cancelado.", "queued": "Recordatorio en cola de nuevo.",
    },
    "en": {
        "waiting": "Waiting for Chatwoot…", "loading": "Loading…", "consent": "Consent", "upcoming": "Upcoming appointments",
        "past": "Past appointments", "reminders": "Reminders", "timeline": "Timeline", "attempts": "attempt(s)",
        "cancel": "Cancel", "resend": "Resend", "canceled": "Reminder canceled.", "queued": "Reminder queued again.",
    },
}


def labels_for(locale: str) -> dict[str, str]:
    """The page's words in the tenant's language (its base language; English when the hub has none for it)."""
    return LABELS.get(locale.split("-")[0].lower(), LABELS["en"])


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, as a browser writes `event.origin`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def app_routes(plugin: ChatwootPlugin) -> list[web.RouteDef]:
    """The Dashboard App's page and its token-scoped JSON endpoints."""
    hub = plugin.hub

    def tenant_of(request: web.Request) -> str:
        tenant = request.query.get("tenant") or ""
        if not tenant or plugin.settings(tenant) is None:
            raise web.HTTPNotFound(text="no tenant with Chatwoot settings named in ?tenant=")
        return tenant

    async def key_matches(tenant: str, key: Any) -> bool:
        expected = (await plugin.dashboard_keys(tenant))["app_key"]
        return isinstance(key, str) and key.isascii() and hmac.compare_digest(expected, key)

    async def contact_of(request: web.Request) -> tuple[str, int]:
        tenant = tenant_of(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise web.HTTPUnauthorized(text="a Bearer token from /app/token is required")
        try:
            return tenant, await plugin.check_token(tenant, token.strip())
        except BadToken as exc:
            raise web.HTTPUnauthorized(text=str(exc)) from None

    async def page(request: web.Request) -> web.Response:
        tenant = tenant_of(request)
        if not await key_matches(tenant, request.query.get("key")):
            raise web.HTTPForbidden(text="wrong or missing key")
        settings = plugin.require_settings(tenant)
        profile = await hub.tenant(tenant)
        origin = origin_of(settings.base_url)
        words = labels_for(profile.locale)
        body = PAGE.format(
            origin=html.escape(origin), tenant=html.escape(tenant), lang=html.escape(profile.locale),
            labels=html.escape(json.dumps(words)), **{k: html.escape(v) for k, v in words.items()},
        )
        return web.Response(text=body, content_type="text/html", headers={
            "Content-Security-Policy": f"frame-ancestors {origin}", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
        })

    async def token(request: web.Request) -> web.Response:
        tenant = tenant_of(request)
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="malformed JSON") from None
        if not isinstance(data, dict) or not await key_matches(tenant, data.get("key")):
            raise web.HTTPForbidden(text="wrong or missing key")
        chatwoot_id = data.get("contact_id")
        if not isinstance(chatwoot_id, int) or isinstance(chatwoot_id, bool):
            raise web.HTTPBadRequest(text="contact_id: the Chatwoot contact id (an integer) is required")
        contact_id = await hub.find_contact_id(tenant, IDENTITY, str(chatwoot_id))
        if contact_id is None:
            raise web.HTTPNotFound(text="this Chatwoot contact is not linked to a client in the hub yet")
        return web.json_response({"token": await plugin.issue_token(tenant, contact_id), "expires_in": TOKEN_SECONDS})

    async def context(request: web.Request) -> web.Response:
        tenant, contact_id = await contact_of(request)
        view = await hub.contact_view(tenant, contact_id)
        return web.json_response(await view_json(tenant, view))

    async def view_json(tenant: str, view: ContactView) -> dict[str, Any]:
        profile = await hub.tenant(tenant)
        zone = view.timezone or profile.timezone
        locale = view.locale or profile.locale

        def when(moment: dt.datetime | None) -> str:
            if moment is None:
                return ""
            return hub.render_inline("{{ t | datetime }}", locale=locale, timezone=zone, context={"t": moment.isoformat()})

        now = dt.datetime.now(dt.UTC)
        consent = {}
        for medium, kind in CONSENT_MEDIUMS:
            identities = [i for i in view.identities if i.kind == kind]
            consent[medium] = (
                "no address" if not identities else "opted out" if all(medium in i.opted_out for i in identities) else "yes"
            )

        def appointment(a: Any) -> dict[str, Any]:
            return {"id": a.id, "when": when(a.start_at), "start": a.start_at.isoformat(), "service": a.service, "status": a.status}

        return {
            "id": view.id, "name": view.name, "consent": consent, "no_shows": view.no_shows,
            "upcoming": [appointment(a) for a in view.upcoming(now)],
            "past": [appointment(a) for a in view.past(now)],
            "reminders": [
                {"id": n.id, "kind": n.kind, "status": n.status, "when": when(n.sent_at or n.due_at), "attempts": n.attempts,
                 "channel": n.channel, "error": n.last_error}
                for n in view.notifications
            ],
            "timeline": [
                {"direction": m.direction, "medium": m.medium, "body": m.body, "status": m.status, "when": when(m.at)}
                for m in view.timeline
            ],
        }

    async def act(request: web.Request) -> web.Response:
        tenant, contact_id = await contact_of(request)
        try:
            notification_id = int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound(text="no such notification") from None
        view = await hub.contact_view(tenant, contact_id)
        notification = next((n for n in view.notifications if n.id == notification_id), None)
        if notification is None:
            # Another contact's notification looks exactly like one that does not exist.
            raise web.HTTPNotFound(text="no such notification for this client")
        action = request.match_info["action"]
        words = labels_for((await hub.tenant(tenant)).locale)
        try:
            if action == "cancel":
                if not await hub.cancel_notification(tenant, notification_id, reason="canceled by an agent in Chatwoot"):
                    raise web.HTTPConflict(text=f"the reminder is {notification.status}, not pending: nothing to cancel")
                return web.json_response({"message": words["canceled"]})
            new_id = await hub.notify(tenant=tenant, request=NotificationRequest(
                kind=notification.kind, contact_id=view.id, template=notification.template, data=dict(notification.data),
                appointment_id=notification.appointment_id,
            ))
        except (UnknownContact, HubError) as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None
        return web.json_response({"message": words["queued"], "notification": new_id})

    return [
        web.get("/app", page, name="app"),
        web.post("/app/token", token, name="app-token"),
        web.get("/app/context", context, name="app-context"),
        web.post(r"/app/notifications/{id}/{action:resend|cancel}", act, name="app-notification"),
    ]
