"""The console's sections, and when each appears: a section whose part of the hub is missing is not shown.

Sections that need a part not every hub has (the responders' hand-off) check
for it on the hub, so merging that part makes the section appear with no
change here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Section:
    """A tab of the console: its path under /t/<tenant>/ and whether this hub has it."""

    name: str
    path: str
    available: Callable[[Any], bool]


def _always(_hub: Any) -> bool:
    return True


def has_handoff(hub: Any) -> bool:
    """The responders' hand-off is there (port methods `hand_off`, `release`, `conversation_handler`)."""
    return all(callable(getattr(hub, name, None)) for name in ("hand_off", "release", "conversation_handler"))


SECTIONS: tuple[Section, ...] = (
    Section("Today", "", _always),
    Section("Contacts", "contacts", _always),
    Section("Conversations", "conversations", has_handoff),
    Section("Outbox", "outbox", _always),
    Section("Webhooks", "webhooks", _always),
    Section("Settings", "settings", _always),
)


def sections_for(hub: Any) -> list[Section]:
    """The sections this hub shows."""
    return [section for section in SECTIONS if section.available(hub)]
