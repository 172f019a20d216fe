"""Several worker processes on PostgreSQL: shared work, a kill -9 mid-run, and LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.core import Hub
from hub.models import Notification
from hub.outbox import NotificationRequest
from tests.conftest import config_document, make_config, write_toml
from tests.sink import Sink

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

WORKER_SETTINGS = {"dispatch_lease_seconds": 3, "dispatch_poll_seconds": 0.2, "dispatch_batch_size": 50,
                   "dispatch_concurrency": 16, "retry_base_seconds": 0.05}


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "--config", str(config), "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )


async def fill(database_url: str, count: int) -> None:
    hub = Hub.build(make_config(database_url))
    async with hub.running():
        async with hub.unit_of_work() as uow:
            for i in range(count):
                await hub.queue_notification(uow, tenant="clinic", request=NotificationRequest(
                    kind="message", address=f"+346001{i:05d}", data={"text": f"n{i}"}, channel_order=("whatsapp",)))


async def statuses(database_url: str) -> Counter[str]:
    hub = Hub.build(make_config(database_url))
    try:
        async with hub.db.sessions() as session:
            rows = await session.execute(select(Notification.status, func.count()).group_by(Notification.status))
            return Counter({status: n for status, n in rows})
    finally:
        await hub.db.close()


async def wait_until(predicate: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_kill_9_mid_run_loses_nothing(database_url: str, tmp_path: Path) -> None:
    total = 2000
    async with Sink(delay=0.02) as sink:  # slow enough (<= 800/s at 16 in flight) that the kill lands mid-run
        config = write_toml(tmp_path / "config.toml", config_document(database_url, hub=WORKER_SETTINGS, plugins={"http_sink": {"url": sink.url}}))
        await fill(database_url, total)
        first = start_worker(config, tmp_path / "worker1.log")
        try:
            async def some_sent() -> bool:
                assert first.poll() is None, (tmp_path / "worker1.log").read_text()
                return len(sink.received) >= total // 4

            await wait_until(some_sent, 120)
            first.send_signal(signal.SIGKILL)
            first.wait()
            in_flight = (await statuses(database_url))["sending"]
            received_at_kill = len(sink.received)
        finally:
            stop(first)
        assert received_at_kill < total, "the first worker finished before it could be killed"
        second = start_worker(config, tmp_path / "worker2.log")
        try:
            async def all_done() -> bool:
                assert second.poll() is None, (tmp_path / "worker2.log").read_text()
                return (await statuses(database_url))["sent"] == total

            await wait_until(all_done, 180)
        finally:
            stop(second)
    counts = Counter(message["notification_id"] for message in sink.received)
    assert len(counts) == total  # every notification reached the sink
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= in_flight
    assert await statuses(database_url) == Counter({"sent": total})


async def test_several_workers_share_the_work_once(database_url: str, tmp_path: Path) -> None:
    total = 600
    async with Sink(delay=0.002) as sink:
        config = write_toml(tmp_path / "config.toml", config_document(database_url, hub=WORKER_SETTINGS, plugins={"http_sink": {"url": sink.url}}))
        workers = [start_worker(config, tmp_path / f"w{i}.log") for i in range(3)]
        try:
            await asyncio.sleep(1.5)  # let them all start and block on the empty outbox
            await fill(database_url, total)

            async def all_done() -> bool:
                return (await statuses(database_url))["sent"] == total

            await wait_until(all_done, 120)
        finally:
            for worker in workers:
                stop(worker)
    counts = Counter(message["notification_id"] for message in sink.received)
    assert len(counts) == total and max(counts.values()) == 1  # no lease was lost: nothing sent twice
    assert len({message["pid"] for message in sink.received}) >= 2  # more than one process did work


async def test_listen_notify_wakes_an_idle_worker(database_url: str, tmp_path: Path) -> None:
    slow_poll = {**WORKER_SETTINGS, "dispatch_poll_seconds": 300}
    async with Sink() as sink:
        config = write_toml(tmp_path / "config.toml", config_document(database_url, hub=slow_poll, plugins={"http_sink": {"url": sink.url}}))
        log = tmp_path / "worker.log"
        worker = start_worker(config, log)
        try:
            async def ready() -> bool:
                assert worker.poll() is None, log.read_text()
                return "running" in log.read_text()

            await wait_until(ready, 30)
            await asyncio.sleep(1)  # the worker found nothing due and now sleeps for up to 300 s
            await fill(database_url, 1)

            async def delivered() -> bool:
                return len(sink.received) == 1

            # Far less than the poll interval: only the NOTIFY can have woken it.
            await wait_until(delivered, 30)
        finally:
            stop(worker)
