"""How the hub's worker loops sleep: until woken, until told to stop, or until a timeout, whichever is first."""

from __future__ import annotations

import asyncio


async def idle(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    """Clear `wake`, then wait for it, for `stop`, or for `timeout` seconds; the waiters never outlive the call."""
    wake.clear()
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
