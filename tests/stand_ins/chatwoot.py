"""A Chatwoot application API (v1) stand-in on 127.0.0.1, and a maker of signed webhooks.

It keeps one account in memory (contacts, their conversations and
messages, custom attribute definitions) and answers the endpoints the
chatwoot plugin calls the way Chatwoot does: the `api_access_token` header
checked on every request (401 `{"error": "Invalid Access Token"}`), 404
`{"error": "Resource could not be found"}` for unknown ids, 429 with
`Retry-After` when a test asks for it (`throttle`), and 5xx on demand
(`fail_next`). Every request body and every JSON answer is validated
against the operation's schema in Chatwoot's swagger file
(`../shared/specs/chatwoot/swagger.json`, beside the project); what does
not match is kept in `violations`, which tests assert is empty. Where
Chatwoot's code answers differently from its own swagger (WIRE.md 3.3),
the stand-in answers as the code does and names the gap in `SPEC_GAPS`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from tests.pg import free_port

SWAGGER = Path(__file__).resolve().parents[3] / "shared" / "specs" / "chatwoot" / "swagger.json"
PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "chatwoot"
SPEC_GAPS = {
    ("post", "/api/v1/accounts/{account_id}/contacts"):
        "the swagger says extended_contact (payload: array); the controller renders {payload: {contact, contact_inbox}}",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Chatwoot-Signature` for a body: sha256= hex HMAC-SHA256 of "<timestamp>.<body>"."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed(payload: dict[str, Any] | bytes, secret: str | None, *, timestamp: int | None = None,
           delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Chatwoot posts (no signature headers when `secret` is None, as before 4.11)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Chatwoot-Delivery": delivery or secrets.token_hex(16)}
    if secret is not None:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers["X-Chatwoot-Timestamp"] = ts
        headers["X-Chatwoot-Signature"] = sign(secret, ts, body)
    return body, headers


class Spec:
    """Chatwoot's swagger: operations found by method and path, schemas made checkable by jsonschema."""

    def __init__(self, path: Path = SWAGGER) -> None:
        self.document = json.loads(path.read_text())
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", template.rstrip("/")) + "/?$"), template)
            for template in self.document["paths"]
        ]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """(path template, operation) for a request path, or None."""
        for pattern, template in self.routes:
            if pattern.match(path) and method.lower() in self.document["paths"][template]:
                return template, self.document["paths"][template][method.lower()]
        return None

    def schema(self, node: Any) -> Any:
        """A schema with $refs inlined and OpenAPI's `nullable` turned into JSON Schema."""
        if isinstance(node, dict):
            if "$ref" in node:
                target: Any = self.document
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part]
                return self.schema(target)
            out = {k: self.schema(v) for k, v in node.items() if k not in ("example", "nullable")}
            if node.get("nullable"):
                return {"anyOf": [out, {"type": "null"}]}
            return out
        if isinstance(node, list):
            return [self.schema(v) for v in node]
        return node

    def problems(self, schema: Any, value: Any) -> list[str]:
        """What in `value` does not match the schema (empty when it does)."""
        validator = jsonschema.Draft7Validator(self.schema(schema))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(value)]


@dataclass
class Seen:
    """One request the stand-in answered."""

    method: str
    path: str
    body: Any
    status: int = 0


@dataclass
class ChatwootStandIn:
    """The fake account and its HTTP server; `start()` returns the base URL to configure."""

    account_id: int = 1
    inbox_id: int = 3
    token: str = field(default_factory=lambda: f"cw-{secrets.token_hex(12)}")

    def __post_init__(self) -> None:
        self.spec = Spec()
        self.contacts: dict[int, dict[str, Any]] = {}
        self.conversations: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.definitions: list[dict[str, Any]] = []
        self.merges: list[tuple[int, int]] = []
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self._throttle = 0
        self._throttle_method: str | None = None
        self._fail = 0
        self._ids = iter(range(100, 10**9))
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- test controls ----------------------------------------------------------

    def throttle(self, times: int = 1, *, method: str | None = None) -> None:
        """Answer the next `times` requests (of one HTTP method, if given) with 429 and `Retry-After: 1`."""
        self._throttle += times
        self._throttle_method = method

    def fail_next(self, times: int = 1) -> None:
        """Answer the next `times` requests with 503."""
        self._fail += times

    def add_contact(self, name: str, *, phone: str | None = None, email: str | None = None) -> dict[str, Any]:
        """A contact as Chatwoot stores it (phone as the agent typed it)."""
        contact_id = next(self._ids)
        contact = {
            "id": contact_id, "name": name, "email": email, "phone_number": phone, "identifier": None, "thumbnail": "",
            "blocked": False, "additional_attributes": {}, "custom_attributes": {}, "availability_status": "offline",
            "created_at": int(time.time()), "last_activity_at": int(time.time()),
        }
        self.contacts[contact_id] = contact
        return contact

    def add_conversation(self, contact_id: int, *, inbox_id: int | None = None, last_activity_at: int | None = None) -> int:
        """A conversation of a contact; returns its display id."""
        display_id = len(self.conversations) + 1
        now = int(time.time())
        self.conversations[display_id] = {
            "id": display_id, "account_id": self.account_id, "inbox_id": inbox_id or self.inbox_id, "status": "open",
            "contact_id": contact_id, "uuid": secrets.token_hex(8), "messages": [], "labels": [], "muted": False,
            "can_reply": True, "custom_attributes": {}, "additional_attributes": {}, "unread_count": 0,
            "created_at": now, "timestamp": now, "last_activity_at": last_activity_at or now,
        }
        self.messages[display_id] = []
        return display_id

    def notes(self, conversation_id: int) -> list[str]:
        """The private notes posted in a conversation."""
        return [m["content"] for m in self.messages.get(conversation_id, []) if m["private"]]

    # --- webhook payloads (shapes from Chatwoot's webhook_data builders, WIRE.md 3.2) ---

    def contact_data(self, contact_id: int) -> dict[str, Any]:
        c = self.contacts[contact_id]
        return {"account": {"id": self.account_id, "name": "Clinic"}, **{k: c[k] for k in (
            "additional_attributes", "custom_attributes", "email", "id", "identifier", "name", "phone_number", "thumbnail",
            "blocked")}, "avatar": ""}

    def conversation_data(self, display_id: int) -> dict[str, Any]:
        conversation = self.conversations[display_id]
        sender = {**self.contact_data(conversation["contact_id"]), "type": "contact"}
        sender.pop("account")
        sender.pop("avatar")
        return {
            "additional_attributes": {}, "can_reply": True, "channel": "Channel::Whatsapp", "id": display_id,
            "inbox_id": conversation["inbox_id"], "messages": [], "labels": [],
            "meta": {"sender": sender, "assignee": None, "assignee_type": None, "team": None, "hmac_verified": False},
            "status": conversation["status"], "custom_attributes": {}, "snoozed_until": None, "unread_count": 1,
            "first_reply_created_at": None, "priority": None, "waiting_since": 0, "agent_last_seen_at": 0,
            "contact_last_seen_at": 0, "last_activity_at": conversation["last_activity_at"],
            "timestamp": conversation["timestamp"], "created_at": conversation["created_at"], "updated_at": time.time(),
        }

    def incoming_message(self, display_id: int, content: str) -> dict[str, Any]:
        """A `message_created` webhook for a client's message (as it is recorded here too)."""
        message_id = next(self._ids)
        conversation = self.conversations[display_id]
        self.messages[display_id].append({"id": message_id, "content": content, "private": False, "message_type": 0})
        return {
            "account": {"id": self.account_id, "name": "Clinic"}, "additional_attributes": {}, "content_attributes": {},
            "content_type": "text", "content": content, "conversation": self.conversation_data(display_id),
            "created_at": "2026-11-29T10:00:00.000Z", "id": message_id, "inbox": {"id": conversation["inbox_id"], "name": "WhatsApp"},
            "message_type": "incoming", "private": False, "sender": self.contact_data(conversation["contact_id"]),
            "source_id": f"wamid.{message_id}", "event": "message_created",
        }

    def agent_message(self, display_id: int, content: str, *, private: bool = False) -> dict[str, Any]:
        """A `message_created` webhook for an agent's reply or private note."""
        payload = self.incoming_message(display_id, content)
        payload.update(message_type="outgoing", private=private, sender={"id": 2, "name": "Agent Ana", "email": "ana@clinic.example", "type": "user"})
        return payload

    def echo_of(self, display_id: int, message_id: int) -> dict[str, Any]:
        """The `message_created` webhook Chatwoot sends for a message posted through the API with a user's token."""
        posted = next(m for m in self.messages[display_id] if m["id"] == message_id)
        conversation = self.conversations[display_id]
        return {
            "account": {"id": self.account_id, "name": "Clinic"}, "additional_attributes": {}, "content_attributes": {},
            "content_type": "text", "content": posted["content"], "conversation": self.conversation_data(display_id),
            "created_at": "2026-11-29T10:00:01.000Z", "id": message_id, "inbox": {"id": conversation["inbox_id"], "name": "WhatsApp"},
            "message_type": "outgoing", "private": posted["private"],
            "sender": {"id": 1, "name": "Hub integration", "email": "hub@clinic.example", "type": "user"},
            "source_id": None, "event": "message_created",
        }

    def contact_event(self, contact_id: int, event: str = "contact_updated") -> dict[str, Any]:
        """A `contact_created` / `contact_updated` webhook."""
        return {**self.contact_data(contact_id), "event": event}

    # --- the server -------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; returns the base URL (the plugin's `base_url`)."""
        app = web.Application(middlewares=[self._checked])
        prefix = f"/api/v1/accounts/{{account_id}}"
        app.router.add_get(f"{prefix}/contacts", self.list_contacts)
        app.router.add_post(f"{prefix}/contacts", self.create_contact)
        app.router.add_put(f"{prefix}/contacts/{{id}}", self.update_contact)
        app.router.add_get(f"{prefix}/contacts/{{id}}/conversations", self.contact_conversations)
        app.router.add_post(f"{prefix}/contacts/{{id}}/contact_inboxes", self.create_contact_inbox)
        app.router.add_post(f"{prefix}/actions/contact_merge", self.merge)
        app.router.add_post(f"{prefix}/conversations", self.create_conversation)
        app.router.add_post(f"{prefix}/conversations/{{cid}}/messages", self.post_message)
        app.router.add_post(f"{prefix}/conversations/{{cid}}/toggle_status", self.toggle_status)
        app.router.add_post(f"{prefix}/conversations/{{cid}}/assignments", self.assign)
        app.router.add_get(f"{prefix}/custom_attribute_definitions", self.list_definitions)
        app.router.add_post(f"{prefix}/custom_attribute_definitions", self.create_definition)
        app.router.add_get("/dashboard/{cid}", self.dashboard_host)
        app.router.add_get("/popup", self.popup_host)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        if not request.path.startswith("/api/"):
            return await handler(request)  # the pages that play Chatwoot's web app are not API calls
        seen = Seen(request.method, request.path, body)
        self.requests.append(seen)
        found = self.spec.operation(request.method, request.path)
        if found is None:
            self.violations.append(f"{request.method} {request.path}: no such operation in the swagger")
        else:
            _, operation = found
            schema = (((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
            if schema is not None:
                for problem in self.spec.problems(schema, body):
                    self.violations.append(f"{request.method} {request.path} request: {problem}")
        if request.headers.get("api_access_token") != self.token:
            response: web.StreamResponse = web.json_response({"error": "Invalid Access Token"}, status=401)
        elif request.match_info.get("account_id") != str(self.account_id):
            response = web.json_response({"error": "Resource could not be found"}, status=404)
        elif self._throttle and self._throttle_method in (None, request.method):
            self._throttle -= 1
            response = web.Response(text="Retry later\n", status=429, headers={"Retry-After": "1"})
        elif self._fail:
            self._fail -= 1
            response = web.json_response({"error": "Service Unavailable"}, status=503)
        else:
            try:
                response = await handler(request)
            except KeyError:
                response = web.json_response({"error": "Resource could not be found"}, status=404)
        seen.status = response.status
        if found is not None and isinstance(response, web.Response) and response.content_type == "application/json" and response.body:
            template, operation = found
            answers = operation.get("responses") or {}
            documented = answers.get(str(response.status)) or (
                next((answers[c] for c in answers if c.startswith("2")), None) if response.status < 300 else None
            )
            schema = (((documented or {}).get("content") or {}).get("application/json") or {}).get("schema")
            if schema is not None and (request.method.lower(), template) not in SPEC_GAPS:
                for problem in self.spec.problems(schema, json.loads(response.body)):  # type: ignore[arg-type]
                    self.violations.append(f"{request.method} {request.path} {response.status} answer: {problem}")
        return response

    # --- Chatwoot's web app, as far as a Dashboard App sees it ---------------------------

    async def dashboard_host(self, request: web.Request) -> web.Response:
        """A conversation screen with the Dashboard App in an iframe, talking to it as Chatwoot's Frame.vue does.

        It posts `{"event": "appContext", "data": {conversation, contact, currentAgent}}` as a JSON string when the
        frame loads (unless `?mode=fetch-only`) and again each time the frame posts
        `chatwoot-dashboard-app:fetch-info`; `window.fetchInfo` counts those requests.
        """
        display_id = int(request.match_info["cid"])
        conversation = self.conversation_data(display_id)
        contact = {k: v for k, v in self.contact_data(self.conversations[display_id]["contact_id"]).items() if k != "account"}
        context = {"conversation": conversation, "contact": contact, "currentAgent": {"id": 2, "name": "Agent Ana", "email": "ana@clinic.example"}}
        page = HOST_PAGE.replace("__APP__", json.dumps(request.query["app"])).replace("__CONTEXT__", json.dumps(context)).replace(
            "__ON_LOAD__", "false" if request.query.get("mode") == "fetch-only" else "true")
        return web.Response(text=page, content_type="text/html")

    async def popup_host(self, request: web.Request) -> web.Response:
        """A page of another origin that opens the app in a window and feeds it a forged context."""
        forged = {"conversation": {"id": 1}, "contact": {"id": int(request.query["contact"])}, "currentAgent": {"id": 9}}
        page = POPUP_PAGE.replace("__APP__", json.dumps(request.query["app"])).replace("__CONTEXT__", json.dumps(forged))
        return web.Response(text=page, content_type="text/html")

    @staticmethod
    def public(contact: dict[str, Any]) -> dict[str, Any]:
        """A contact as answered: unset fields left out (the swagger types them as plain strings, not nullable)."""
        return {k: v for k, v in contact.items() if v is not None}

    def _contact(self, request: web.Request) -> dict[str, Any]:
        return self.contacts[int(request.match_info["id"])]

    def _conversation(self, request: web.Request) -> dict[str, Any]:
        return self.conversations[int(request.match_info["cid"])]

    async def list_contacts(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        ordered = sorted(self.contacts.values(), key=lambda c: c["id"])
        chunk = [self.public(c) for c in ordered[(page - 1) * 15: page * 15]]
        meta = {"count": len(ordered), "current_page": request.query.get("page", "1")}
        return web.json_response({"meta": meta, "payload": chunk})

    async def create_contact(self, request: web.Request) -> web.Response:
        body = await request.json()
        phone = body.get("phone_number")
        if phone and not re.fullmatch(r"\+[1-9]\d{1,14}", phone):
            return web.json_response({"message": "Phone number should be in e164 format", "attributes": ["phone_number"]}, status=422)
        for contact in self.contacts.values():
            if phone and contact["phone_number"] == phone or body.get("email") and contact["email"] == body.get("email"):
                return web.json_response({"message": "Phone number has already been taken", "attributes": ["phone_number"]}, status=422)
        contact = self.add_contact(body.get("name") or "", phone=phone, email=body.get("email"))
        contact["custom_attributes"] = dict(body.get("custom_attributes") or {})
        return web.json_response({"payload": {"contact": self.public(contact), "contact_inbox": {"inbox": {"id": body["inbox_id"]}, "source_id": secrets.token_hex(8)}}})

    async def update_contact(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        body = await request.json()
        # Chatwoot merges custom and additional attributes into what the contact has.
        contact["custom_attributes"] = {**contact["custom_attributes"], **(body.get("custom_attributes") or {})}
        for key in ("name", "email", "phone_number"):
            if key in body:
                contact[key] = body[key]
        return web.json_response({"id": contact["id"], "payload": [self.public(contact)]})

    async def contact_conversations(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        rows = [
            # `timestamp` is left out: the swagger types it as a string where Chatwoot sends a number.
            {**{k: v for k, v in c.items() if k not in ("contact_id", "timestamp")}, "meta": {"sender": {"id": contact["id"], "name": contact["name"]}, "channel": "Channel::Whatsapp", "hmac_verified": False}}
            for c in self.conversations.values() if c["contact_id"] == contact["id"]
        ]
        return web.json_response({"payload": rows})

    async def create_contact_inbox(self, request: web.Request) -> web.Response:
        contact = self._contact(request)
        body = await request.json()
        source = body.get("source_id") or (contact["phone_number"] or "").lstrip("+") or secrets.token_hex(8)
        return web.json_response({"source_id": source, "inbox": {"id": body["inbox_id"], "name": "WhatsApp", "channel_type": "Channel::Whatsapp"}})

    async def merge(self, request: web.Request) -> web.Response:
        body = await request.json()
        base, mergee = int(body["base_contact_id"]), int(body["mergee_contact_id"])
        if base == mergee or base not in self.contacts or mergee not in self.contacts:
            return web.json_response({"error": "Resource could not be found"}, status=404)
        for conversation in self.conversations.values():
            if conversation["contact_id"] == mergee:
                conversation["contact_id"] = base
        del self.contacts[mergee]
        self.merges.append((base, mergee))
        return web.json_response(self.public(self.contacts[base]))

    async def create_conversation(self, request: web.Request) -> web.Response:
        body = await request.json()
        if int(body["contact_id"]) not in self.contacts:
            raise KeyError(body["contact_id"])
        display_id = self.add_conversation(int(body["contact_id"]), inbox_id=int(body["inbox_id"]))
        return web.json_response({"id": display_id, "account_id": self.account_id, "inbox_id": int(body["inbox_id"])})

    async def post_message(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request)
        body = await request.json()
        message = {
            "id": next(self._ids), "content": body["content"], "account_id": self.account_id, "inbox_id": conversation["inbox_id"],
            "conversation_id": conversation["id"], "message_type": 1, "created_at": int(time.time()),
            "private": bool(body.get("private")), "status": "sent", "content_type": "text", "content_attributes": {},
            "sender_type": "agent", "sender_id": 1, "template_params": body.get("template_params"),
        }
        self.messages[conversation["id"]].append(message)
        conversation["last_activity_at"] = int(time.time())
        return web.json_response({k: v for k, v in message.items() if k != "template_params"})

    async def toggle_status(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request)
        conversation["status"] = (await request.json())["status"]
        return web.json_response({"meta": {}, "payload": {"success": True, "current_status": conversation["status"], "conversation_id": conversation["id"]}})

    async def assign(self, request: web.Request) -> web.Response:
        conversation = self._conversation(request)
        body = await request.json()
        conversation["assignee_id"] = body.get("assignee_id")
        conversation["team_id"] = body.get("team_id")
        return web.json_response({"id": body.get("assignee_id") or 0, "name": "Agent", "email": "agent@clinic.example"})

    async def list_definitions(self, request: web.Request) -> web.Response:
        model = request.query.get("attribute_model")
        if model not in ("0", "1"):
            return web.json_response({"error": "attribute_model is required"}, status=422)
        kinds = {"0": "conversation_attribute", "1": "contact_attribute"}
        return web.json_response([d for d in self.definitions if d["attribute_model"] == kinds[model]])

    async def create_definition(self, request: web.Request) -> web.Response:
        body = await request.json()
        if any(d["attribute_key"] == body["attribute_key"] for d in self.definitions):
            return web.json_response({"message": "Attribute key has already been taken"}, status=422)
        types = ["text", "number", "currency", "percent", "link", "date", "list", "checkbox"]
        definition = {
            "id": len(self.definitions) + 1, "attribute_display_name": body["attribute_display_name"],
            "attribute_display_type": types[int(body["attribute_display_type"])], "attribute_key": body["attribute_key"],
            "attribute_model": "contact_attribute" if body.get("attribute_model") == 1 else "conversation_attribute",
            "attribute_description": body.get("attribute_description", ""), "attribute_values": json.dumps(body.get("attribute_values") or []),
            "regex_pattern": "", "regex_cue": "", "default_value": "", "created_at": "2026-11-29T10:00:00Z", "updated_at": "2026-11-29T10:00:00Z",
        }
        self.definitions.append(definition)
        return web.json_response(definition)


HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Chatwoot</title></head>
<body style="margin:0;display:flex"><div style="width:300px;background:#f6f8fa">conversation</div>
<iframe id="app" style="width:440px;height:900px;border:0"></iframe>
<script>
var frame = document.getElementById("app");
var context = __CONTEXT__;
window.fetchInfo = 0;
function send() { frame.contentWindow.postMessage(JSON.stringify({event: "appContext", data: context}), "*"); }
if (__ON_LOAD__) { frame.addEventListener("load", send); }
window.addEventListener("message", function (event) {
  if (event.source === frame.contentWindow && event.data === "chatwoot-dashboard-app:fetch-info") { window.fetchInfo += 1; send(); }
});
frame.src = __APP__;
</script></body></html>
"""

POPUP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>not Chatwoot</title></head><body>
<script>
var context = __CONTEXT__;
window.app = window.open(__APP__, "app");
window.forge = function () { window.app.postMessage(JSON.stringify({event: "appContext", data: context}), "*"); };
window.addEventListener("message", function (event) { if (event.data === "chatwoot-dashboard-app:fetch-info") { window.forge(); } });
</script></body></html>
"""


def copy_payload(name: str) -> dict[str, Any]:
    """A stored webhook body from tests/payloads/chatwoot/."""
    return copy.deepcopy(json.loads((PAYLOADS / name).read_text()))
