"""The inbox processor for `DeferredEvent`s: webhooks a plugin completes in the worker (issue 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.events import DeferredEvent, InboxEvent
from hub.inbox import Processor
from hub.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from hub.core import Hub


class NotCompleted(RuntimeError):
    """No plugin completed a deferred event (its vendor call failed): the inbox retries it."""


def deferred_processors(hub: Hub) -> dict[str, Processor]:
    """`plugin.deferred` -> ask the plugins' `complete_event`, then process what it returns in the same unit of work."""

    async def complete(uow: UnitOfWork, event: InboxEvent) -> None:
        assert isinstance(event, DeferredEvent)
        completed = await hub.call("complete_event", hub=hub, event=event)
        if completed is None:
            # A failing implementation is logged (by plugin) and counts as no answer: retried later.
            raise NotCompleted(f"plugin {event.plugin!r} could not complete {event.name!r} yet")
        for inner in completed:
            await hub.inbox.processors[inner.kind](uow, inner)

    return {DeferredEvent.kind: complete}
