"""Answering inbound messages: `respond_to_message`, outside the inbox lanes and transactions.

The inbox worker records a message and, once that commits, tells the
`ResponderRunner` which conversation has something new. The runner answers a
conversation's messages one at a time, in the order they arrived, with no
database transaction open while a responder thinks (an LLM call may take
seconds; intake and the other conversations go on meanwhile).

Durable and ordered across processes: each conversation keeps a cursor,
`answered_through`, the last inbound message the responders have dealt with.
Whoever answers a conversation holds its lock (a PostgreSQL advisory lock on
one connection per process, so several `hub serve` / `hub worker`
processes never answer one conversation at once; on SQLite there is one
process) and answers every message past the cursor in id order, moving the
cursor in the same transaction that queues the reply. A process that dies
leaves the cursor behind; the periodic sweep picks the conversation up
again. A message older than `REPLY_EXPIRY` is passed over unanswered.

While a human handles the conversation (hub/handoff.py) no responder is
called: the cursor moves past the message and nothing is sent. A
`Reply(handoff=True)` is queued and hands the conversation off in the same
transaction (`data["handoff_reason"]` and `data["handoff_summary"]` say why
and what for the person taking over).

Answers are written with a group commit: every conversation's task hands
its answer (the reply to queue, or none, and the cursor's new place) to one
writer and waits until it is committed; answers that arrive while one batch
is being written share the next transaction, with one statement moving
every cursor. A batch that fails is written again one answer at a time, so
one bad reply fails only its own conversation's task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import and_, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.events import Conversation as ConversationView
from hub.events import ReceivedMessage
from hub.handoff import BOT, HUMAN, load_conversation, mark_human
from hub.models import Contact, Conversation, Message, utcnow
from hub.notifications import NotificationRequest
from hub.responders import Reply
from hub.waiting import idle

if TYPE_CHECKING:
    from hub.core import Hub

REPLY_EXPIRY = dt.timedelta(hours=1)
"""A reply later than this answers a question nobody is waiting on any more."""
SWEEP_SECONDS = 5.0
"""How often the runner looks for conversations left unanswered (a lock held elsewhere, a crash)."""
CONCURRENCY = 128
"""Conversations answered at once per process. Answers wait on the network (a model takes about a second), not
the CPU: 50 new conversations a second with a 1 s model keep 50 answers in flight (bench/responders.py)."""
LOCK_NAMESPACE = 0x6875  # "hu": keeps the hub's advisory locks apart from other users of the database
WRITE_BATCH = 200
"""Most answers one group commit writes."""
_MOVE_CURSORS = (
    update(Conversation.__table__)
    .where(Conversation.__table__.c.id == bindparam("b_id"))
    .values(answered_through=bindparam("b_through"))
)


READ_BATCH = 400
"""Most conversations whose next messages one statement reads (SQLite takes at most 999 parameters)."""
# Built once: constructing the statement cost more CPU than running it. Per conversation asked for, its next two
# unanswered inbound messages (the second only says whether there is more, which spares the read that would find
# nothing after the last one), with the conversation (its handler may have changed since the last message) and the
# contact's name. Plain columns, not ORM rows: building the rows was most of the read's CPU.
_UNANSWERED = (
    select(
        Message.id.label("message_id"), Message.conversation_id, Message.channel, Message.address, Message.body,
        Message.media, Message.created_at,
        func.row_number().over(partition_by=Message.conversation_id, order_by=Message.id).label("n"),
    )
    .join(Conversation, Conversation.id == Message.conversation_id)
    .where(
        Conversation.id.in_(bindparam("b_conversations", expanding=True)),
        Message.direction == "in",
        Message.id > func.coalesce(Conversation.answered_through, 0),
    )
    .subquery()
)
_NEXT_MESSAGES = (
    select(
        _UNANSWERED, Conversation.tenant_id, Conversation.contact_id, Conversation.medium,
        Conversation.channel.label("conversation_channel"), Conversation.last_inbound_at, Conversation.handler, Contact.name,
    )
    .join(Conversation, Conversation.id == _UNANSWERED.c.conversation_id)
    .outerjoin(Contact, Contact.id == Conversation.contact_id)
    .where(_UNANSWERED.c.n <= 2)
    .order_by(_UNANSWERED.c.conversation_id, _UNANSWERED.c.message_id)
)
# One statement takes (or gives back) the locks every task asked for meanwhile: a round trip per batch, not per task.
_TRY_LOCKS = text(
    "SELECT t.o, pg_try_advisory_lock(:ns, t.k) FROM unnest(CAST(:keys AS integer[])) WITH ORDINALITY AS t(k, o)"
)
_UNLOCKS = text("SELECT pg_advisory_unlock(:ns, t.k) FROM unnest(CAST(:keys AS integer[])) AS t(k)")
BUSY_RETRY_SECONDS = 0.5
"""How soon a conversation another process was answering is looked at again (its new message may be past its answer)."""


@dataclasses.dataclass
class _Answer:
    """One message dealt with: the reply to queue (or None), waiting for its group commit."""

    thread: ConversationView
    view: ReceivedMessage
    reply: Any
    done: asyncio.Future[None]


class ResponderRunner:
    """Answers conversations with new inbound messages; `run` is its worker loop."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: set[int] = set()
        self._active: set[int] = set()
        self._wake = asyncio.Event()
        self._lock_connection: AsyncConnection | None = None
        self._lock_guard = asyncio.Lock()
        self._lock_requests: list[tuple[int, asyncio.Future[bool]]] = []
        self._unlock_requests: list[tuple[int, asyncio.Future[bool]]] = []
        self._locker: asyncio.Task[None] | None = None
        self._read_requests: list[tuple[int, asyncio.Future[list[Any]]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._answers: list[_Answer] = []
        self._writer: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("hub.responding")

    def schedule(self, conversation_id: int) -> None:
        """Have the conversation's new messages answered soon (called once a message is committed)."""
        self._pending.add(conversation_id)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Answer scheduled conversations until `stop` is set; sweep for leftovers now and then."""
        slots = asyncio.Semaphore(CONCURRENCY)
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        try:
            while not stop.is_set():
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + SWEEP_SECONDS
                    try:
                        for conversation_id in await self._unanswered():
                            self._pending.add(conversation_id)
                    except Exception as exc:  # a database hiccup must not stop the runner
                        self._log.error("responder_sweep_failed", error=f"{type(exc).__name__}: {exc}")
                for conversation_id in list(self._pending - self._active):
                    self._pending.discard(conversation_id)
                    self._active.add(conversation_id)
                    task = asyncio.create_task(self._answer_guarded(conversation_id, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await idle(self._wake, stop, next_sweep - loop.time())
        finally:
            # Replies in progress finish (their cursor moves with the reply); nothing new starts.
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def answer_pending(self) -> None:
        """Answer every conversation scheduled so far, here and now (for commands and tests)."""
        while self._pending:
            conversation_id = self._pending.pop()
            await self._answer_guarded(conversation_id, asyncio.Semaphore(1))

    async def _answer_guarded(self, conversation_id: int, slots: asyncio.Semaphore) -> None:
        self._active.add(conversation_id)
        try:
            async with slots:
                if await self._lock(conversation_id):
                    try:
                        await self._answer(conversation_id)
                    finally:
                        await self._unlock(conversation_id)
                else:
                    # Another process is answering it. Its runner stops once it finds no more than what it
                    # read, so a message it did not see is looked at again here soon (and by the sweep).
                    self._log.debug("responder_conversation_busy", conversation_id=conversation_id)
                    asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self.schedule, conversation_id)
        except Exception as exc:
            self._log.error("responder_failed", conversation_id=conversation_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._active.discard(conversation_id)
            if conversation_id in self._pending:
                self._wake.set()  # a message arrived while it was being answered

    # --- one conversation ---------------------------------------------------------

    async def _answer(self, conversation_id: int) -> None:
        while True:
            loaded = await self._next_message(conversation_id)
            if loaded is None:
                return
            thread, view, too_old, more = loaded
            reply: Any = None
            if thread.handler == HUMAN:
                # A person has it: the bot stays silent (unless the hold timed out and it was released now).
                thread = dataclasses.replace(thread, handler=await self.hub.conversation_handler(thread.tenant, thread.id))
            if not too_old and thread.handler == BOT:
                reply = await self._ask(thread, view)
            await self._record(thread, view, reply)
            if not more:
                # A message committed since was scheduled by whoever recorded it: this task runs again.
                return

    async def _record(self, thread: ConversationView, view: ReceivedMessage, reply: Any) -> None:
        """Queue the reply and move the cursor past the message; returns once that is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers.append(_Answer(thread, view, reply, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_answers(), name="hub-responder-group-commit")
        await future

    async def _write_answers(self) -> None:
        while self._answers:
            batch, self._answers = self._answers[:WRITE_BATCH], self._answers[WRITE_BATCH:]
            try:
                await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    batch[0].done.set_exception(exc)
                    continue
                for answer in batch:  # one bad reply must not fail the others: each again, alone
                    try:
                        await self._write([answer])
                    except Exception as alone:
                        answer.done.set_exception(alone)
                    else:
                        answer.done.set_result(None)
                continue
            for answer in batch:
                answer.done.set_result(None)

    async def _write(self, batch: list[_Answer]) -> None:
        async with self.hub.unit_of_work() as uow:
            for answer in batch:
                thread, view, reply = answer.thread, answer.view, answer.reply
                if isinstance(reply, Reply) and reply.body.strip():
                    await self.hub.queue_notification(uow, tenant=thread.tenant, request=reply_request(thread, reply))
                if isinstance(reply, Reply) and reply.handoff:
                    tenant = await self.hub.tenants.get(thread.tenant)
                    row = await load_conversation(uow.session, tenant, thread.id)
                    await mark_human(
                        self.hub, uow, tenant, row,
                        reason=str(reply.data.get("handoff_reason") or f"{reply.responder or 'a responder'} handed off"),
                        summary=str(reply.data.get("handoff_summary") or view.body),
                    )
            # The cursor moves with the reply: a crash before this commit answers the message again.
            await uow.session.execute(
                _MOVE_CURSORS, [{"b_id": answer.thread.id, "b_through": answer.view.message_id} for answer in batch]
            )

    async def _ask(self, thread: ConversationView, view: ReceivedMessage) -> Any:
        tenant = await self.hub.tenants.get(thread.tenant)
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(
                self.hub.call("respond_to_message", hub=self.hub, conversation=thread, message=view),
                timeout=tenant.responder_timeout,
            )
        except TimeoutError:
            self.hub.metrics.observe_responder(time.perf_counter() - started, "timeout")
            self._log.warning("responder_timeout", tenant=tenant.slug, conversation_id=thread.id, seconds=tenant.responder_timeout)
            return None
        self.hub.metrics.observe_responder(time.perf_counter() - started, "reply" if reply is not None else "none")
        return reply

    async def _next_message(self, conversation_id: int) -> tuple[ConversationView, ReceivedMessage, bool, bool] | None:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._read_requests.append((conversation_id, future))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_next_messages(), name="hub-responder-reads")
        found = await future
        if not found:
            return None
        row = found[0]
        tenant = await self.hub.tenants.by_id(row.tenant_id)
        thread = ConversationView(
            row.conversation_id, tenant.slug, row.contact_id, row.medium, row.conversation_channel, row.last_inbound_at, row.handler
        )
        view = ReceivedMessage(
            tenant=tenant.slug, contact_id=row.contact_id, conversation_id=row.conversation_id, message_id=row.message_id,
            medium=row.medium, channel=row.channel, address=row.address or "", body=row.body,
            media=list(row.media or []), profile_name=row.name,
        )
        return thread, view, row.created_at < utcnow() - REPLY_EXPIRY, len(found) > 1

    async def _read_next_messages(self) -> None:
        # Every conversation whose task asked while the last read ran is read in the next: one statement for many.
        while self._read_requests:
            batch, self._read_requests = self._read_requests[:READ_BATCH], self._read_requests[READ_BATCH:]
            try:
                async with self.hub.db.engine.connect() as connection:
                    await connection.execution_options(isolation_level="AUTOCOMMIT")  # reads only: no BEGIN/ROLLBACK
                    rows = (await connection.execute(
                        _NEXT_MESSAGES, {"b_conversations": sorted({cid for cid, _ in batch})}
                    )).all()
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            found: dict[int, list[Any]] = {}
            for row in rows:
                found.setdefault(row.conversation_id, []).append(row)
            for conversation_id, future in batch:
                if not future.done():
                    future.set_result(found.get(conversation_id, []))

    async def _unanswered(self) -> list[int]:
        """Conversations with a recent inbound message past their cursor."""
        async with self.hub.db.sessions() as session:
            rows = await session.scalars(
                select(Conversation.id)
                .join(Message, Message.conversation_id == Conversation.id)
                .where(
                    and_(
                        Message.direction == "in",
                        Message.id > func.coalesce(Conversation.answered_through, 0),
                        Message.created_at >= utcnow() - REPLY_EXPIRY,
                    )
                )
                .distinct()
                .limit(1000)
            )
            return list(rows)

    # --- the per-conversation lock ----------------------------------------------

    async def _lock(self, conversation_id: int) -> bool:
        if self.hub.db.is_sqlite:
            return True  # one process; `_active` already keeps one task per conversation
        return await self._lock_call(self._lock_requests, conversation_id)

    async def _unlock(self, conversation_id: int) -> None:
        if self.hub.db.is_sqlite:
            return
        await self._lock_call(self._unlock_requests, conversation_id)

    async def _lock_call(self, queue: list[tuple[int, asyncio.Future[bool]]], conversation_id: int) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue.append((_lock_key(conversation_id), future))
        if self._locker is None or self._locker.done():
            self._locker = asyncio.create_task(self._run_lock_calls(), name="hub-responder-locks")
        return await future

    async def _run_lock_calls(self) -> None:
        # Every lock and unlock asked for while the last batch ran goes in the next: two statements at most.
        while self._lock_requests or self._unlock_requests:
            unlocks, self._unlock_requests = self._unlock_requests, []
            locks, self._lock_requests = self._lock_requests, []
            async with self._lock_guard:
                try:
                    if self._lock_connection is None or self._lock_connection.closed:
                        self._lock_connection = await self.hub.db.engine.connect()
                        # Advisory locks live with the session, not a transaction: none stays open.
                        await self._lock_connection.execution_options(isolation_level="AUTOCOMMIT")
                    if unlocks:  # given back first: a task may be taking its conversation's lock again
                        await self._lock_connection.execute(_UNLOCKS, {"ns": LOCK_NAMESPACE, "keys": [k for k, _ in unlocks]})
                    got: dict[int, bool] = {}
                    if locks:
                        rows = await self._lock_connection.execute(
                            _TRY_LOCKS, {"ns": LOCK_NAMESPACE, "keys": [k for k, _ in locks]}
                        )
                        got = {int(o): bool(g) for o, g in rows}
                except Exception as exc:
                    await self._close_lock_connection()  # closing the session releases its locks
                    for _, future in (*unlocks, *locks):
                        if not future.done():
                            future.set_exception(exc)
                    continue
            for _, future in unlocks:
                if not future.done():
                    future.set_result(True)
            for n, (key, future) in enumerate(locks, start=1):
                if not future.done():
                    future.set_result(got.get(n, False))
                elif got.get(n):  # its task was cancelled meanwhile: the lock it will never give back goes now
                    orphan: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                    orphan.add_done_callback(lambda done: done.cancelled() or done.exception())  # nobody awaits it
                    self._unlock_requests.append((key, orphan))

    async def close(self) -> None:
        """Give back the connection that holds the conversation locks (releasing any it holds)."""
        await self._close_lock_connection()

    async def _close_lock_connection(self) -> None:
        if self._lock_connection is not None:
            connection, self._lock_connection = self._lock_connection, None
            try:
                await connection.close()
            except Exception as exc:
                self._log.warning("responder_lock_close_failed", error=f"{type(exc).__name__}: {exc}")


def _lock_key(conversation_id: int) -> int:
    # The two-int form of the lock takes 32-bit keys; two conversations sharing one only wait for each other.
    return conversation_id % 2_147_483_647


def reply_request(thread: ConversationView, reply: Reply) -> NotificationRequest:
    """A responder's reply as an outbox request on the conversation's channel."""
    return NotificationRequest(
        kind="reply", template="message", contact_id=thread.contact_id, channel_order=(thread.channel,),
        data={"text": reply.body, "responder": reply.responder, "handoff": reply.handoff, **reply.data},
        expires_at=utcnow() + REPLY_EXPIRY,
    )
