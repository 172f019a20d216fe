"""Booking writes from concurrent requests, committed together (a group commit).

A calendar sync sends many `PUT /api/v1/appointments/{id}` at once. Each on
its own costs a transaction of about a dozen statements; gathered, the ones
that arrive while a batch is being written share the next transaction and
the set-based path of `Hub.apply_appointments` (one identity lookup, one
INSERT of the new bookings, one of their notifications). A request is
answered only once the batch that holds it has committed, with its own
change, exactly as if it had been written alone.

If a shared batch fails (one item's invalid address, a race lost to another
process), every item of it is written again on its own, so one bad request
gets its own error and the others are not held back by it. On SQLite, which
has one writer, the batch endpoint's transactions queue on the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hub.appointment_input import AppointmentInput
from hub.appointments import AppointmentChange
from hub.tenants import TenantInfo

if TYPE_CHECKING:
    from hub.core import Hub

GROUP_LIMIT = 250
"""Most bookings one shared transaction writes (the batch endpoint's chunk size too): a failed
transaction loses at most these, and SQLite's other writers wait less."""

Waiting = tuple[TenantInfo, AppointmentInput, "asyncio.Future[AppointmentChange]"]


class BookingWriter:
    """Writes one process's booking requests in shared transactions, in arrival order."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # SQLite has one writer at a time: booking writes queue here, in order, instead of in
        # SQLite's busy handler, whose sleeps and retries gave the long tail (p99 of seconds).
        self._exclusive: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if hub.db.is_sqlite else contextlib.nullcontext()
        )
        self._waiting: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, tenant: TenantInfo, item: AppointmentInput) -> AppointmentChange:
        """Upsert one appointment as `Hub.apply_appointment` does; returns once it is committed."""
        future: asyncio.Future[AppointmentChange] = asyncio.get_running_loop().create_future()
        self._waiting.append((tenant, item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="hub-booking-group-commit")
        return await future

    async def apply_batch(self, tenant: TenantInfo, items: Sequence[AppointmentInput]) -> list[AppointmentChange]:
        """Upsert a batch (the batch endpoint's) in transactions of at most GROUP_LIMIT bookings."""
        changes: list[AppointmentChange] = []
        for start in range(0, len(items), GROUP_LIMIT):
            async with self._exclusive, self.hub.unit_of_work() as uow:
                changes += await self.hub.apply_appointments(uow, tenant, items[start:start + GROUP_LIMIT])
        return changes

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:GROUP_LIMIT], self._waiting[GROUP_LIMIT:]
            groups: dict[int, list[Waiting]] = {}
            for waiting in batch:
                groups.setdefault(waiting[0].id, []).append(waiting)
            for group in groups.values():
                await self._write(group)

    async def _write(self, group: list[Waiting]) -> None:
        tenant = group[0][0]
        try:
            async with self._exclusive, self.hub.unit_of_work() as uow:
                changes = await self.hub.apply_appointments(uow, tenant, [item for _, item, _ in group])
        except Exception:
            for waiting in group:
                await self._write_alone(waiting)
            return
        for (_, _, future), change in zip(group, changes, strict=True):
            if not future.done():  # the client may have gone; the booking stays written
                future.set_result(change)

    async def _write_alone(self, waiting: Waiting) -> None:
        tenant, item, future = waiting
        try:
            async with self._exclusive, self.hub.unit_of_work() as uow:
                change = await self.hub.apply_appointment(uow, tenant, item)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(change)
