"""The rules responder's classifier against labelled messages (tests/data/*.tsv), and `hub responders classify`.

intents.tsv is the development set: every row must come out exactly (intent,
date expression, time expression). intents_heldout.tsv was written before
the rules were tuned and is not tuned on: its accuracy is printed and must
stay above a floor, and on neither set may a message be silenced (a false
opt-out) or lose its appointment (a false cancellation): the costly mistakes.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugins.rules_responder.classifier import INTENTS, Context, classify
from plugins.rules_responder.when import TimeOfDay, resolve_date, resolve_time
from tests.conftest import ROOT, CliResult

DATA = Path(__file__).resolve().parent / "data"
HELDOUT_FLOOR = 0.85


@dataclass(frozen=True)
class Example:
    context: str
    intent: str
    date: str
    time: str
    message: str

    def classify(self) -> tuple[str, str, str]:
        found = classify(self.message, Context(last_outbound_kind=None if self.context == "-" else self.context))
        return found.intent, found.date, found.time


def examples(name: str) -> list[Example]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        context, intent, date, time, message = line.split("\t")
        assert intent in INTENTS, f"{name}: unknown intent {intent!r}"
        rows.append(Example(context, intent, date, time, message))
    return rows


DEVELOPMENT = examples("intents.tsv")
HELDOUT = examples("intents_heldout.tsv")


@pytest.mark.parametrize("example", DEVELOPMENT, ids=[e.message[:40] for e in DEVELOPMENT])
def test_labelled_message(example: Example) -> None:
    assert example.classify() == (example.intent, example.date, example.time)


def test_every_intent_and_the_hard_cases_are_covered() -> None:
    assert {e.intent for e in DEVELOPMENT} == set(INTENTS)
    messages = {e.message for e in DEVELOPMENT}
    for hard in ("cancelar", "me dieron de baja en la obra social", "my flight got cancelled, I'll be 10 min late",
                 "can't make Monday, is Wednesday open?", "can't make it", "👍", "STOP", "BAJA por favor"):
        assert hard in messages


def test_heldout_accuracy_and_no_costly_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    right = [e for e in HELDOUT if e.classify() == (e.intent, e.date, e.time)]
    intents_right = [e for e in HELDOUT if e.classify()[0] == e.intent]
    with capsys.disabled():
        print(f"\nrules classifier, held-out set: {len(intents_right)}/{len(HELDOUT)} intents, "
              f"{len(right)}/{len(HELDOUT)} with both expressions ({len(DEVELOPMENT)} development examples all exact)")
    assert len(intents_right) / len(HELDOUT) >= HELDOUT_FLOOR
    for example in DEVELOPMENT + HELDOUT:
        got = example.classify()[0]
        assert not (got == "opt_out" and example.intent != "opt_out"), f"false opt-out: {example.message!r}"
        assert not (got == "cancel" and example.intent not in ("cancel", "reschedule")), f"false cancellation: {example.message!r}"


@pytest.mark.parametrize("context, message, intent", [
    ("reminder", "ok", "confirm"),
    (None, "ok", "confirm"),
    ("reply", "ok", "greeting"),  # an acknowledgement of our own answer confirms nothing
    ("reminder", "👍🏻", "confirm"),
    ("reminder", "CONFIRMO!!!", "confirm"),
    ("reminder", "q tal, cancelar xfa", "cancel"),
])
def test_context_decides_what_a_bare_yes_means(context: str | None, message: str, intent: str) -> None:
    assert classify(message, Context(last_outbound_kind=context)).intent == intent


TODAY = dt.date(2026, 11, 25)  # a Wednesday


@pytest.mark.parametrize("expression, day", [
    ("hoy", TODAY), ("mañana", dt.date(2026, 11, 26)), ("pasado mañana", dt.date(2026, 11, 27)), ("tmrw", dt.date(2026, 11, 26)),
    ("el sábado", dt.date(2026, 11, 28)), ("this Friday", dt.date(2026, 11, 27)), ("el miércoles", dt.date(2026, 12, 2)),
    ("el lunes que viene", dt.date(2026, 11, 30)), ("next Tuesday", dt.date(2026, 12, 1)), ("el 3", dt.date(2026, 12, 3)),
    ("el 28", dt.date(2026, 11, 28)), ("15 de enero", dt.date(2027, 1, 15)), ("March 3rd", dt.date(2027, 3, 3)), ("4/12", dt.date(2026, 12, 4)),
    ("31 de febrero", None),
])
def test_date_expressions_resolve_from_today(expression: str, day: dt.date | None) -> None:
    assert resolve_date(expression, TODAY) == day


@pytest.mark.parametrize("expression, meant", [
    ("a las 6 y media", TimeOfDay(18, 30)), ("a las 10 de la mañana", TimeOfDay(10, 0)), ("4:15pm", TimeOfDay(16, 15)),
    ("18h", TimeOfDay(18, 0)), ("a las 5 menos cuarto", TimeOfDay(16, 45)), ("10am", TimeOfDay(10, 0)),
    ("por la tarde", TimeOfDay(15, 0, 20)), ("morning", TimeOfDay(8, 0, 13)), ("a las 25", None),
])
def test_time_expressions(expression: str, meant: TimeOfDay | None) -> None:
    assert resolve_time(expression) == meant


def test_hub_responders_classify_prints_only_the_lines(tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = Path(shutil.copy(ROOT / "config.toml", tmp_path / "config.toml"))
    lines = ["Hola, quiero pedir hora para el sábado a las 6 y media", "STOP", "can't make Monday, is Wednesday open?", "",
             "me dieron de baja en la obra social", "👍", "this Friday 4:15pm?"]
    result = run_cli("responders", "classify", config=config, input="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == [
        "book\tel sábado\ta las 6 y media", "opt_out\t\t", "reschedule\tWednesday\t", "other\t\t", "other\t\t", "confirm\t\t",
        "book\tthis Friday\t4:15pm", "",
    ]
