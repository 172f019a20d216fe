"""A tiny HTTP sink for the benchmarks, run in its own process.

    python bench/sink.py [--port 0] [--max-seconds 1800]

Listens on 127.0.0.1 only, answers every `POST /messages` with JSON
`{"id": n}`, and prints its URL as the first line on stdout once it is
listening. `GET /stats` returns how many POSTs arrived and how many distinct
`notification_id`s they carried (so a benchmark can see duplicates);
`POST /reset` zeroes the counters. It exits on SIGTERM/SIGINT, when its stdin
closes (the parent went away), or after --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web


class Counters:
    def __init__(self) -> None:
        self.received = 0
        self.ids: set[object] = set()


async def main(port: int, max_seconds: float) -> None:
    counters = Counters()

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        counters.received += 1
        notification_id = body.get("notification_id") if isinstance(body, dict) else None
        if notification_id is not None:
            counters.ids.add(notification_id)
        return web.json_response({"id": counters.received})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"received": counters.received, "distinct": len(counters.ids)})

    async def reset(_request: web.Request) -> web.Response:
        counters.received = 0
        counters.ids.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/messages", post)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"http://127.0.0.1:{bound}/messages", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def stdin_closed() -> None:
        if not sys.stdin.buffer.read(65536):
            stop.set()

    try:
        loop.add_reader(sys.stdin.fileno(), stdin_closed)
    except (OSError, ValueError, NotImplementedError):
        pass  # no usable stdin: rely on signals and --max-seconds
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.max_seconds))
