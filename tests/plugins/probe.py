"""Test-only responder that takes its time: proves responders run outside intake, in order, within a timeout.

A message `probe <seconds> <text>` is answered after sleeping that long;
each answer writes a `start` and an `end` line (message id, conversation,
monotonic time, which hub process answered) to the `record_file` setting.
Anything else passes to the next responder.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from hub import Conversation, HubPort, PluginSettings, ReceivedMessage, Reply, hookimpl

NAME = "probe"


class Settings(PluginSettings):
    record_file: str = ""
    label: str = ""
    """Tells apart two hubs that share one database in a test."""


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


def _record(settings: Settings, **data: object) -> None:
    if settings.record_file:
        with open(settings.record_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**data, "at": time.monotonic(), "pid": os.getpid(), "label": settings.label}) + "\n")


@hookimpl(tryfirst=True)
async def respond_to_message(hub: HubPort, conversation: Conversation, message: ReceivedMessage) -> Reply | None:
    words = message.body.split(maxsplit=2)
    if len(words) < 2 or words[0] != "probe":
        return None
    settings: Settings = hub.settings_for(NAME)
    _record(settings, event="start", message_id=message.message_id, conversation_id=conversation.id)
    try:
        await asyncio.sleep(float(words[1]))
    finally:
        _record(settings, event="end", message_id=message.message_id, conversation_id=conversation.id)
    return Reply(f"answered {message.body}", responder=NAME)
