"""An offline responder: answers clients in Spanish and English by rules, with no API key.

It classifies each message into one of ten intents (`book`, `reschedule`,
`cancel`, `confirm`, `availability`, `info`, `human`, `opt_out`,
`greeting`, `other`) with the date and time expressions it names, and
acts: confirms the appointment a reminder was about, asks before cancelling
(through Calendly's tool for Calendly bookings, else the hub), offers free
times and books the one the client picks (asking for an email when
Calendly needs one), answers prices, address and hours from the tenant's
business profile, hands off to a person, and applies an opt-out (the hub
confirms it once). It runs last (`trylast`): an OpenAI responder, when set
up, answers first and falls back to this one.

```toml
[tenants.clinic.plugins.rules_responder]
enabled = true                      # off by default: a tenant turns it on
slots_offered = 3
search_days = 7
misunderstandings_before_handoff = 2
[tenants.clinic.plugins.rules_responder.replies.es]
confirmed = "¡Gracias! Te esperamos el {{ start | datetime }}."
```

`hub responders classify` reads messages on stdin and prints
`<intent>\t<date>\t<time>` per line. See docs/responders.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import Conversation, HubPort, ReceivedMessage, Reply, hookimpl

from .dialogue import NAME, respond
from .settings import Settings

if TYPE_CHECKING:
    import click

__all__ = ["NAME", "Settings"]


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl(trylast=True)
async def respond_to_message(hub: HubPort, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    settings: Settings | None = hub.settings_for(NAME, conversation.tenant)
    if settings is None or not settings.enabled:
        return None
    return await respond(hub, settings, conversation, message)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import responders  # the CLI loads only when a command line is built

    cli.add_command(responders)
