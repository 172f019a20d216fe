"""Test-only channel plugin: POSTs each message as JSON to a URL (a local sink in tests and benchmarks).

Configured only when `[plugins.http_sink] url` is set, so other tests never see it.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from hub import Delivery, Health, HubPort, OutboundMessage, PermanentError, ProviderSettings, TransientError, hookimpl

NAME = "http_sink"


class Settings(ProviderSettings):
    url: str
    sandbox: bool = False
    medium: str = "whatsapp"


class SinkChannel:
    name = "sink-whatsapp"
    address_kind = "phone"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sandbox = settings.sandbox
        self.medium = settings.medium
        self.session: aiohttp.ClientSession | None = None

    async def send(self, message: OutboundMessage) -> Delivery:
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        payload = {
            "to": message.to, "body": message.body, "notification_id": message.notification_id, "kind": message.kind,
            "pid": os.getpid(),  # lets tests see which worker process sent it
        }
        try:
            async with self.session.post(self.settings.url, json=payload, timeout=aiohttp.ClientTimeout(total=10)) as response:
                if response.status == 429 or response.status >= 500:
                    raise TransientError(f"sink answered {response.status}", code=str(response.status))
                if response.status >= 400:
                    raise PermanentError(f"sink refused with {response.status}", code=str(response.status))
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"sink unreachable: {type(exc).__name__}") from None
        return Delivery(provider_id=str(body.get("id")), status="sent")

    async def check(self) -> Health:
        return Health(True, self.settings.url, required=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_channels(hub: HubPort) -> list[SinkChannel]:
    settings = hub.settings_for(NAME)
    if settings is None:
        return []
    # Kept in the plugin's runtime so on_shutdown can close its session.
    return [hub.runtime(NAME, lambda _hub: SinkChannel(settings))]


@hookimpl
async def on_shutdown(hub: HubPort) -> None:
    if hub.settings_for(NAME) is not None:
        await hub.runtime(NAME, lambda _hub: SinkChannel(hub.settings_for(NAME))).close()
