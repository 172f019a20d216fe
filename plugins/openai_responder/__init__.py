"""A responder backed by an OpenAI-compatible chat model, with booking tools bound to the client.

It uses the official `openai` SDK's `AsyncOpenAI` with a configurable
`base_url` (OpenAI, a proxy, or a local server speaking the same API), a
per-tenant model, system prompt (a Jinja template over the tenant's business
profile) and limits. It answers first (`tryfirst`); on a timeout, an API
error, an exhausted daily token budget or too many tool rounds it passes,
and the offline `rules_responder` answers instead (enable both).

```toml
[tenants.clinic.plugins.openai_responder]
api_key = {env = "CLINIC_OPENAI_KEY"}     # required: without it the plugin is off for the tenant
# base_url = "http://127.0.0.1:8080/v1"   # any OpenAI-compatible server
model = "gpt-4o-mini"
timeout_seconds = 10                        # the whole answer, retries included
max_steps = 4
daily_token_budget = 200000
# system_prompt = "..."                   # Jinja over tenant, business, today, language
```

The model sees the conversation's last messages with emails and phone
numbers redacted and the contact's context sections; its tools (tools.py)
act only for that client and need the client's yes before booking, moving
or cancelling. Every model call and tool call is recorded on the
conversation. See docs/responders.md.
"""

from __future__ import annotations

from hub import Conversation, HubPort, ReceivedMessage, Reply, hookimpl

from .agent import NAME, Clients, respond
from .settings import Settings

__all__ = ["NAME", "Settings"]


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl(tryfirst=True)
async def respond_to_message(hub: HubPort, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    settings: Settings | None = hub.settings_for(NAME, conversation.tenant)
    if settings is None or not settings.enabled:
        return None
    return await respond(hub, settings, conversation, message)


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    await Clients.of(hub).close()
