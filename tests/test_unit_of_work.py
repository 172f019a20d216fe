"""One unit of work: effects run after commit, in order, never after a rollback, and a failing one is named."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hub.core import Hub
from hub.models import Tenant


async def test_effects_run_in_order_after_commit_and_a_failure_is_named(hub: Hub) -> None:
    seen: list[str] = []

    async def count_tenants() -> None:
        async with hub.db.sessions() as session:  # a new session: sees only committed rows
            seen.append(f"tenants={await session.scalar(select(func.count()).select_from(Tenant))}")

    def broken() -> None:
        raise RuntimeError("effect bug")

    with capture_logs() as logs:
        async with hub.unit_of_work() as uow:
            uow.session.add(Tenant(slug="third", name="Third", default_region="ES", timezone="UTC", locale="es", settings={}))
            uow.after_commit("count tenants", count_tenants)
            uow.after_commit("broken effect", broken)
            uow.after_commit("wake", lambda: seen.append("woken"), once_key="wake")
            uow.after_commit("wake again", lambda: seen.append("woken twice"), once_key="wake")
            assert seen == []  # nothing runs before the commit
    assert seen == ["tenants=3", "woken"]
    failures = [entry for entry in logs if entry["event"] == "after_commit_effect_failed"]
    assert [(f["effect"], f["error"]) for f in failures] == [("broken effect", "RuntimeError: effect bug")]


async def test_no_effect_runs_when_the_use_case_fails(hub: Hub) -> None:
    seen: list[str] = []
    with pytest.raises(ValueError):
        async with hub.unit_of_work() as uow:
            uow.after_commit("must not run", lambda: seen.append("ran"))
            raise ValueError("the use case failed")
    assert seen == []
