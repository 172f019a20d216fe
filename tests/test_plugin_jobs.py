"""Plugin jobs through the port: durable, coalesced while pending, deduped with `once`, retried with backoff, taken over after a crash."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import Job, PermanentError, TransientError
from hub.core import Hub
from hub.models import PluginJob


class Crash(BaseException):
    """A process dying mid-job: nothing after it runs, the lease is left behind."""


class Recorder:
    """A job handler that records what it ran and does what the test tells it to."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any], int]] = []
        self.failures: list[BaseException] = []
        self.during: Any = None

    async def __call__(self, job: Job) -> None:
        self.ran.append((job.key, job.payload, job.attempt))
        if self.during is not None:
            during, self.during = self.during, None
            await during()
        if self.failures:
            raise self.failures.pop(0)


async def rows(hub: Hub) -> list[PluginJob]:
    async with hub.db.sessions() as session:
        return list((await session.scalars(select(PluginJob).order_by(PluginJob.id))).all())


async def make_due(hub: Hub) -> None:
    async with hub.db.sessions.begin() as session:
        await session.execute(update(PluginJob).values(due_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


@pytest.fixture
def handler(hub: Hub) -> Recorder:
    recorder = Recorder()
    hub.handle_jobs("demo", "push", recorder)
    return recorder


async def test_a_burst_becomes_one_run_with_the_last_payload(hub: Hub, handler: Recorder) -> None:
    for n in range(3):
        assert await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"n": n}, delay_seconds=60) is True
    assert await hub.plugin_jobs.run_due() == 0  # not before the window ends
    [row] = await rows(hub)
    assert row.payload == {"n": 2} and row.generation == 2
    await make_due(hub)
    assert await hub.plugin_jobs.run_due() == 1
    assert handler.ran == [("contact:1", {"n": 2}, 1)]
    assert await hub.plugin_jobs.run_due() == 0


async def test_once_makes_the_key_a_dedupe_key_and_a_done_key_is_armed_again_otherwise(hub: Hub, handler: Recorder) -> None:
    assert await hub.enqueue_job("demo", "clinic", "push", "delivery:abc", {"v": 1}, once=True) is True
    assert await hub.enqueue_job("demo", "clinic", "push", "delivery:abc", {"v": 2}, once=True) is False
    await hub.plugin_jobs.run_due()
    assert await hub.enqueue_job("demo", "clinic", "push", "delivery:abc", {"v": 3}, once=True) is False
    assert await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"v": 4}) is True
    await hub.plugin_jobs.run_due()
    assert await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"v": 5}) is True
    await hub.plugin_jobs.run_due()
    assert [payload for _, payload, _ in handler.ran] == [{"v": 1}, {"v": 4}, {"v": 5}]


async def test_an_update_that_arrives_while_the_job_runs_gets_its_own_run(hub: Hub, handler: Recorder) -> None:
    async def meanwhile() -> None:
        await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"v": "newer"})

    handler.during = meanwhile
    await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"v": "first"})
    await hub.plugin_jobs.run_due()
    await hub.plugin_jobs.run_due()
    assert [payload["v"] for _, payload, _ in handler.ran] == ["first", "newer"]
    [row] = await rows(hub)
    assert row.done_at is not None


async def test_transient_errors_back_off_past_retry_after_and_permanent_ones_set_the_job_aside(hub: Hub, handler: Recorder) -> None:
    handler.failures = [TransientError("429 from the vendor", retry_after=120)]
    await hub.enqueue_job("demo", "clinic", "push", "contact:1", {})
    before = dt.datetime.now(dt.UTC)
    await hub.plugin_jobs.run_due()
    [row] = await rows(hub)
    assert row.done_at is None and row.failed_at is None and row.last_error == "TransientError: 429 from the vendor"
    assert row.due_at >= before + dt.timedelta(seconds=119)
    assert await hub.plugin_jobs.run_due() == 0

    handler.failures = [PermanentError("contact deleted")]
    await make_due(hub)
    await hub.plugin_jobs.run_due()
    [row] = await rows(hub)
    assert row.failed_at is not None and row.last_error == "PermanentError: contact deleted"
    await make_due(hub)
    assert await hub.plugin_jobs.run_due() == 0
    assert [job.key for job in await hub.plugin_jobs.pending("demo", "clinic")] == ["contact:1"]  # kept for an operator
    assert [attempt for _, _, attempt in handler.ran] == [1, 2]
    # A new update for the key starts it over, with a fresh count of attempts and no old error.
    await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"again": True})
    [row] = await rows(hub)
    assert (row.failed_at, row.last_error, row.attempts) == (None, None, 0)
    await hub.plugin_jobs.run_due()
    assert handler.ran[-1] == ("contact:1", {"again": True}, 1)


async def test_a_job_left_by_a_crashed_process_is_taken_over_when_its_lease_ends(hub: Hub, handler: Recorder) -> None:
    handler.failures = [Crash()]
    await hub.enqueue_job("demo", "clinic", "push", "contact:1", {"v": 1})
    with pytest.raises(Crash):
        await hub.plugin_jobs.run_due()
    assert await hub.plugin_jobs.run_due() == 0  # still leased by the dead process
    async with hub.db.sessions.begin() as session:
        await session.execute(update(PluginJob).values(lease_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert await hub.plugin_jobs.run_due() == 1
    assert [attempt for _, _, attempt in handler.ran] == [1, 2]
    [row] = await rows(hub)
    assert row.done_at is not None


async def test_keys_are_per_tenant_and_bad_keys_are_refused(hub: Hub, handler: Recorder) -> None:
    assert await hub.enqueue_job("demo", "clinic", "push", "contact:1", {}, once=True) is True
    assert await hub.enqueue_job("demo", "salon", "push", "contact:1", {}, once=True) is True
    await hub.plugin_jobs.run_due()
    assert sorted(key for key, _, _ in handler.ran) == ["contact:1", "contact:1"]
    with pytest.raises(ValueError, match="job key"):
        await hub.enqueue_job("demo", "clinic", "push", "", {})
    with pytest.raises(ValueError, match="job key"):
        await hub.enqueue_job("demo", "clinic", "push", "k" * 301, {})


async def test_done_jobs_are_pruned_after_a_while_and_pending_ones_never(hub: Hub, handler: Recorder) -> None:
    await hub.enqueue_job("demo", "clinic", "push", "old", {}, once=True)
    await hub.enqueue_job("demo", "clinic", "push", "recent", {}, once=True)
    await hub.plugin_jobs.run_due()
    await hub.enqueue_job("demo", "clinic", "push", "pending", {}, delay_seconds=3600)
    async with hub.db.sessions.begin() as session:
        await session.execute(update(PluginJob).where(PluginJob.key == "old").values(done_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=31)))
    assert await hub.plugin_jobs.prune() == 1
    assert sorted(row.key for row in await rows(hub)) == ["pending", "recent"]
    # The pruned key is free again; the recent one still dedupes.
    assert await hub.enqueue_job("demo", "clinic", "push", "old", {}, once=True) is True
    assert await hub.enqueue_job("demo", "clinic", "push", "recent", {}, once=True) is False
