"""Test-only plugin whose hooks fail, to prove one plugin cannot take the others down."""

from __future__ import annotations

from typing import Any

from hub import ContextSection, HubPort, hookimpl


@hookimpl
async def on_message_received(hub: HubPort, message: Any) -> None:
    raise RuntimeError("flaky plugin always fails here")


@hookimpl(tryfirst=True)
def contact_context(hub: HubPort, contact: Any) -> ContextSection:
    raise ValueError("flaky context")
