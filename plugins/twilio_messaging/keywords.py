"""Opt-out, opt-in and help keywords: which inbound messages are commands, not conversation.

A keyword counts only as the whole message: "STOP", " stop. ", "¡Baja!" are
opt-outs; "stop sending me the reminders, I moved" is a person talking. Case,
accents, surrounding spaces, punctuation and emoji are ignored.

CANCEL is an opt-out only on SMS, where carriers and Twilio itself treat it
as one (Twilio blocks further SMS to that number). On WhatsApp "cancel" and
"cancelar" are what a patient writes about an appointment, so they go to the
responders. YES, which Twilio also reads as opt-in on SMS, is left out: it is
how people confirm an appointment.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

Action = Literal["stop", "start", "help"]

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "end", "quit", "baja", "alto"})
SMS_ONLY_STOP_WORDS = frozenset({"cancel"})
START_WORDS = frozenset({"start", "unstop", "alta"})
HELP_WORDS = frozenset({"help", "ayuda"})


def single_word(body: str) -> str | None:
    """The message as one lower-case word without accents or punctuation, or None if it is more than one word."""
    decomposed = unicodedata.normalize("NFKD", body.casefold())
    letters = "".join(ch if ch.isalnum() else " " if ch.isspace() else "" for ch in decomposed if not unicodedata.combining(ch))
    words = letters.split()
    return words[0] if len(words) == 1 else None


def classify(body: str, medium: str) -> Action | None:
    """Whether a message is an opt-out ("stop"), an opt-in ("start"), a request for help ("help"), or none."""
    word = single_word(body)
    if word is None:
        return None
    if word in STOP_WORDS or (medium == "sms" and word in SMS_ONLY_STOP_WORDS):
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None
