"""`hub responders classify`: the rules responder's classifier on stdin, one line out per line in."""

from __future__ import annotations

import sys

import click

from .classifier import classify


@click.group()
def responders() -> None:
    """The responders' tools."""


@responders.command()
def classify_command() -> None:
    """Read one message per line on stdin; print `<intent>\\t<date expression>\\t<time expression>` for each."""
    out = sys.stdout
    for line in sys.stdin:
        found = classify(line.rstrip("\r\n"))
        out.write(f"{found.intent}\t{_field(found.date)}\t{_field(found.time)}\n")
    out.flush()


classify_command.name = "classify"


def _field(text: str) -> str:
    # A tab or newline inside an expression would break the line format.
    return " ".join(text.split())
