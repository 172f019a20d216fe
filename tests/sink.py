"""A local HTTP sink that records what channels POST to it, and can be told to fail."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web


class Sink:
    """An aiohttp server on 127.0.0.1: `received` holds every accepted JSON body."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 500, always_status: int | None = None, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.always_status = always_status
        self.delay = delay
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.always_status is not None:
            self.refused += 1
            return web.json_response({"error": "refused"}, status=self.always_status)
        if self.fail_first > 0:
            self.fail_first -= 1
            self.refused += 1
            return web.json_response({"error": "down"}, status=self.fail_status)
        self.received.append(body)
        return web.json_response({"id": f"sink-{next(self._ids)}"})

    async def __aenter__(self) -> Sink:
        app = web.Application()
        app.router.add_post("/messages", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/messages"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
