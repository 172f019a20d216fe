"""One unit of work: a use case's transaction and the effects that run once it commits.

Every use case (an inbox event processed, an appointment upserted, a
notification queued, a contact imported) runs inside one `UnitOfWork`. What
must happen only after its data is committed (waking the dispatcher, firing
`on_contact_linked` or `on_appointment_changed`) is registered with
`after_commit`; it runs, awaited and in order, once the transaction has
committed, and never if it rolled back. There is no other after-commit
mechanism in the hub.

An effect that fails is logged with its name and does not stop the others:
effects are notifications about committed facts, never part of the facts.
Anything that must not be lost (an opt-out, a message to send) is written in
the transaction itself (an outbox or inbox row), not left to an effect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Effect = Callable[[], Awaitable[None] | None]


@dataclass
class UnitOfWork:
    """The session of one use case and the effects registered for after its commit."""

    session: AsyncSession
    effects: list[tuple[str, Effect]] = field(default_factory=list)
    _keys: set[str] = field(default_factory=set)

    def after_commit(self, name: str, effect: Effect, *, once_key: str | None = None) -> None:
        """Run `effect` once the transaction commits; `once_key` drops repeats (wake the dispatcher once)."""
        if once_key is not None:
            if once_key in self._keys:
                return
            self._keys.add(once_key)
        self.effects.append((name, effect))

    async def run_effects(self) -> None:
        """Await every registered effect in order; a failure is logged with the effect's name."""
        log = structlog.get_logger("hub.unit_of_work")
        effects, self.effects = self.effects, []
        for name, effect in effects:
            try:
                result = effect()
                if result is not None:
                    await result
            except Exception as exc:
                log.error("after_commit_effect_failed", effect=name, error=f"{type(exc).__name__}: {exc}")


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[UnitOfWork]:
    """Begin a transaction; commit it when the block ends, then run the effects (none on rollback)."""
    async with sessions.begin() as session:
        uow = UnitOfWork(session)
        yield uow
    await uow.run_effects()
