"""What responders and tool providers hand back to the core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tool:
    """A function a responder may call: a name, JSON-schema parameters and an async callable."""

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A responder's answer to an inbound message; `handoff` asks a human to take over."""

    body: str
    handoff: bool = False
    responder: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextSection:
    """One titled block of what an agent should know about a contact."""

    title: str
    lines: list[str]
