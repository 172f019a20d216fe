"""One answer by the model: the prompt, the tool rounds, the records, and when to give way to the rules responder.

The model sees the system prompt (the tenant's template over its business
profile), the contact's context sections, and the conversation's last
messages with emails and phone numbers redacted. It may call the
contact-bound tools (tools.py) for at most `max_steps` rounds. Every model
call and tool call is recorded on the conversation (tokens, latency,
outcome). On a timeout, an API error, an exhausted daily token budget or
too many rounds, the answer is None: the next responder (the offline rules)
answers instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import structlog

from hub import Conversation, HubError, HubPort, ReceivedMessage, Reply, Tool

from .prompt import redact
from .settings import Settings
from .tools import Session, contact_tools

if TYPE_CHECKING:
    from openai import AsyncOpenAI

# The SDK (about half a second and 20 MB to import) loads on the first answer, not with the plugin:
# every `hub` command and a hub without OpenAI configured load this module too.

NAME = "openai_responder"
EMAIL_IN_TEXT = r"[^\s@<>,;:()\[\]]+@[^\s@<>,;:()\[\]]+\.[A-Za-z]{2,}"


class Clients:
    """The plugin's per-hub SDK clients, one per (base URL, key): connection pools are reused across answers."""

    def __init__(self, hub: HubPort) -> None:
        self.hub = hub
        self._clients: dict[tuple[str, str], AsyncOpenAI] = {}

    @classmethod
    def of(cls, hub: HubPort) -> Clients:
        """The one instance for this hub."""
        return hub.runtime(NAME, cls)

    def client(self, settings: Settings) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        key = (settings.base_url, settings.api_key.get_secret_value())
        if key not in self._clients:
            self._clients[key] = AsyncOpenAI(api_key=key[1], base_url=key[0], max_retries=settings.max_retries,
                                             timeout=settings.timeout_seconds)
        return self._clients[key]

    async def close(self) -> None:
        """Close every client's connections (from `on_shutdown`)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


async def respond(hub: HubPort, settings: Settings, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    """The model's reply to one message, or None to let the rules responder answer."""
    import openai

    log = structlog.get_logger("plugins.openai_responder")
    tenant_slug = conversation.tenant
    if settings.daily_token_budget is not None and await hub.tokens_used_today(tenant_slug) >= settings.daily_token_budget:
        await hub.record_call(tenant_slug, conversation.id, kind="model_call", name=settings.model, outcome="budget_exhausted")
        log.info("openai_budget_exhausted", tenant=tenant_slug)
        return None
    tenant = await hub.tenant(tenant_slug)
    contact = await hub.contact_details(tenant_slug, conversation.contact_id)
    zone = ZoneInfo(contact.timezone or tenant.timezone)
    business = await hub.business_profile(tenant_slug)
    given = re.search(EMAIL_IN_TEXT, message.body)
    if given is not None:
        # The model never sees the address: it is kept on the contact for the booking tools.
        try:
            if await hub.set_contact_email(tenant_slug, contact.id, given.group(0)):
                contact = await hub.contact_details(tenant_slug, contact.id)
        except ValueError:
            pass
    state = await hub.conversation_state(NAME, tenant_slug, conversation.id)
    session = Session(
        hub=hub, tenant=tenant_slug, zone=zone, contact=contact, message=message, business=business,
        pending=dict(state.get("pending") or {}), tools={t.name: t for t in await hub.tools_for(tenant_slug)},
    )
    tools = {tool.name: tool for tool in contact_tools(session)}
    messages = await _messages(hub, settings, conversation, message, tenant, business, zone, contact.locale or tenant.locale)
    client = Clients.of(hub).client(settings)
    reply: Reply | None = None
    # One deadline for the whole answer (every round, every retry), so the rules responder still has time.
    deadline = time.monotonic() + settings.timeout_seconds
    for _ in range(settings.max_steps):
        started = time.monotonic()
        try:
            remaining = deadline - started
            if remaining <= 0:
                raise TimeoutError
            completion = await asyncio.wait_for(client.chat.completions.create(
                # Plain dicts in the wire format; the SDK's TypedDicts add nothing here.
                model=settings.model, messages=cast(Any, messages), tools=cast(Any, [_function(t) for t in tools.values()]),
                tool_choice="auto", temperature=settings.temperature, max_completion_tokens=settings.max_completion_tokens,
                timeout=remaining,
            ), timeout=remaining)
        except (openai.APIError, TimeoutError) as exc:
            outcome = "timeout" if isinstance(exc, (openai.APITimeoutError, TimeoutError)) else "error"
            status = getattr(exc, "status_code", None)
            await hub.record_call(tenant_slug, conversation.id, kind="model_call", name=settings.model, outcome=outcome,
                                  latency_ms=_ms(started), detail={"status": status, "error": type(exc).__name__})
            log.warning("openai_failed", tenant=tenant_slug, outcome=outcome, status=status, error=type(exc).__name__)
            break
        usage = completion.usage
        await hub.record_call(
            tenant_slug, conversation.id, kind="model_call", name=settings.model, outcome="ok",
            tokens=usage.total_tokens if usage else 0, latency_ms=_ms(started),
            detail={"prompt_tokens": usage.prompt_tokens if usage else 0, "finish_reason": completion.choices[0].finish_reason},
        )
        said = completion.choices[0].message
        if not said.tool_calls:
            text = (said.content or "").strip()
            if text:
                reply = _reply(session, text)
            break
        messages.append({
            "role": "assistant", "content": said.content,
            "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                           for c in said.tool_calls if c.type == "function"],
        })
        for call in said.tool_calls:
            if call.type != "function":
                continue
            result = await _run_tool(hub, tenant_slug, conversation.id, tools, call.function.name, call.function.arguments)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result, ensure_ascii=False, default=str)})
    else:
        await hub.record_call(tenant_slug, conversation.id, kind="model_call", name=settings.model, outcome="too_many_steps")
    await hub.set_conversation_state(NAME, tenant_slug, conversation.id, {"pending": session.pending} if session.pending else {})
    if reply is None and (session.handoff is not None or session.opted_out):
        reply = _reply(session, "")
    return reply


def _reply(session: Session, text: str) -> Reply:
    if session.opted_out:
        return Reply("", responder=NAME)  # the hub sends the one confirmation once the opt-out is applied
    if session.handoff is None:
        return Reply(text, responder=NAME)
    reason, summary = session.handoff
    return Reply(text, handoff=True, responder=NAME, data={"handoff_reason": reason, "handoff_summary": summary or session.message.body})


async def _messages(
    hub: HubPort, settings: Settings, conversation: Conversation, message: ReceivedMessage, tenant: Any, business: Any,
    zone: ZoneInfo, locale: str,
) -> list[dict[str, Any]]:
    language = {"es": "Spanish", "en": "English"}.get(locale.split("-")[0], "the client's language")
    system = hub.render_inline(
        settings.system_prompt, locale=locale, timezone=zone.key, name=f"{NAME}:system_prompt",
        context={"tenant": tenant, "business": business, "today": dt.datetime.now(zone).strftime("%A %Y-%m-%d"), "language": language},
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    try:
        sections = await hub.contact_context(conversation.tenant, conversation.contact_id)
    except HubError:
        sections = []
    if sections:
        lines = "\n".join(f"{s.title}: " + "; ".join(s.lines) for s in sections)
        messages.append({"role": "system", "content": redact(f"What the team knows about this client:\n{lines}")})
    for past in await hub.recent_messages(conversation.tenant, conversation.id, limit=settings.history_messages):
        if past.id > message.message_id:
            continue
        role = "user" if past.direction == "in" else "assistant"
        messages.append({"role": role, "content": redact(past.body) or "(empty)"})
    if messages[-1].get("role") != "user":
        messages.append({"role": "user", "content": redact(message.body) or "(empty)"})
    return messages


def _function(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}


async def _run_tool(hub: HubPort, tenant: str, conversation_id: int, tools: dict[str, Tool], name: str, raw: str) -> Any:
    """Run one tool call of the model; what went wrong is told to the model, never raised."""
    started = time.monotonic()
    tool = tools.get(name)
    outcome = "ok"
    if tool is None:
        result: Any = {"error": f"no tool named {name!r}"}
        outcome = "unknown_tool"
    else:
        try:
            arguments = json.loads(raw or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            arguments, result, outcome = None, {"error": f"invalid arguments: {exc}"}, "bad_arguments"
        if arguments is not None:
            try:
                result = await tool.func(**arguments)
            except TypeError as exc:
                result, outcome = {"error": f"wrong arguments: {exc}"}, "bad_arguments"
            except (HubError, ValueError) as exc:
                result, outcome = {"error": str(exc)}, "error"
    await hub.record_call(tenant, conversation_id, kind="tool_call", name=name, outcome=outcome, latency_ms=_ms(started),
                          detail={"responder": NAME})
    return result


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
