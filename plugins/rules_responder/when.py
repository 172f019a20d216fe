"""Date and time expressions in a message, as written, and what they mean on the calendar.

`find` returns the expressions with their spans in the original text
("el sábado", "pasado mañana", "a las 6 y media", "this Friday", "4:15pm").
`resolve_date` and `resolve_time` turn one into a day (relative to today in
the business's time zone) or a time of day, or None when they cannot.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .text import fold

DAYS_ES = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
DAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre")
MONTHS_EN = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december")
_DAY = "|".join(DAYS_ES + DAYS_EN)
_MONTH = "|".join(MONTHS_ES + MONTHS_EN + ("setiembre", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"))
_NUM_WORDS_ES = {"una": 1, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
                 "nueve": 9, "diez": 10, "once": 11, "doce": 12}
_NUM_WORDS_EN = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12}
_HOUR = r"(?:\d{1,2}|" + "|".join(list(_NUM_WORDS_ES) + list(_NUM_WORDS_EN)) + r")"

DATE_PATTERNS = [
    re.compile(r"\bpasado\s+manana\b"),
    re.compile(r"\b(?:the\s+)?day\s+after\s+(?:tomorrow|tmrw)\b"),
    re.compile(r"\b(?:hoy|today|tonight|esta\s+noche|esta\s+tarde)\b"),
    re.compile(r"\b(?:manana|tomorrow|tmrw|tmr|tomorow|tommorow|2moro)\b"),
    re.compile(r"\b(?:(?:el|este|esta|el\s+proximo|este\s+proximo|el\s+otro|this|next|this\s+coming|coming|on)\s+)?"
               r"(?:dia\s+)?(?:" + _DAY + r")(?:\s+(?:que\s+viene|proximo|de\s+la\s+semana\s+que\s+viene))?"
               r"(?:\s+(?:\d{1,2})(?![:.]\d|\s*(?:am|pm|a\.m|p\.m|h\b|hs\b))(?:\s+de\s+(?:" + _MONTH + r"))?)?\b"),
    re.compile(r"\b(?:la\s+)?(?:semana\s+que\s+viene|proxima\s+semana|next\s+week|this\s+week|esta\s+semana)\b"),
    re.compile(r"\b(?:el\s+|este\s+|this\s+|the\s+|next\s+)?(?:finde|fin\s+de\s+semana|weekend)\b"),
    re.compile(r"\b(?:el\s+)?(?:dia\s+)?\d{1,2}\s+de\s+(?:" + _MONTH + r")\b"),
    re.compile(r"\b(?:" + _MONTH + r")\s+\d{1,2}(?:st|nd|rd|th)?\b"),
    re.compile(r"\b(?:the\s+)?\d{1,2}(?:st|nd|rd|th)(?:\s+of\s+(?:" + _MONTH + r"))?\b"),
    re.compile(r"\b(?:el\s+)?(?:dia\s+)\d{1,2}\b"),
    re.compile(r"\bel\s+\d{1,2}\b(?!\s*(?::|h\b|hs\b|am\b|pm\b|y\s+media))"),
    re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b"),
]

_PERIOD = (r"(?:de\s+la\s+(?:manana|tarde|noche)|en\s+la\s+(?:manana|tarde|noche)|por\s+la\s+(?:manana|tarde|noche)"
           r"|del\s+mediodia|a\.?\s?m\.?|p\.?\s?m\.?|am|pm|hs|hrs|h|horas)")
_FRACTION = r"(?:\s+y\s+(?:media|cuarto|\d{1,2})|\s+menos\s+(?:cuarto|\d{1,2})|\s+(?:and\s+a\s+half|thirty|fifteen|forty\s*five))"
TIME_PATTERNS = [
    # "a las 6 y media", "a la 1", "sobre las 10", "at 5", "@ 9", "tipo 6"
    re.compile(r"(?:\b(?:a\s+las?|sobre\s+las?|hacia\s+las?|tipo|como\s+a\s+las?|despues\s+de\s+las?|antes\s+de\s+las?|desde\s+las?"
               r"|at|around|after|before|by)\s+|@\s*)" + _HOUR + r"(?:[:.]\d{2})?" + _FRACTION + r"?(?:\s*" + _PERIOD + r")?\b"),
    # "4:15pm", "10:30", "18.30h"
    re.compile(r"\b\d{1,2}[:.]\d{2}(?:\s*" + _PERIOD + r")?(?![\d/])"),
    # "6pm", "10 am", "18h", "18hs"
    re.compile(r"\b\d{1,2}\s*(?:a\.?\s?m\.?|p\.?\s?m\.?|am|pm|hs|hrs|h)(?![a-z])"),
    re.compile(r"\b\d{1,2}(?:\s+y\s+media)?\s+(?:de\s+la\s+(?:manana|tarde|noche)|del\s+mediodia)\b"),
    re.compile(r"\b(?:al\s+|a\s+|el\s+)?mediodia\b|\b(?:at\s+)?(?:noon|midday|lunchtime)\b"),
    re.compile(r"\b(?:por|en|a|de)\s+la\s+(?:manana|tarde|noche)\b"),
    re.compile(r"\b(?:in\s+the\s+|this\s+|tomorrow\s+)?(?:morning|afternoon|evening)\b"),
    re.compile(r"\b(?:a\s+)?primera\s+hora\b|\bfirst\s+thing\b|\bultima\s+hora\b"),
]
"""Matched on the folded text (lower case, no accents), so "mañana" is "manana" here."""


@dataclass(frozen=True)
class Found:
    """An expression: its text as the client wrote it and where it is."""

    text: str
    start: int
    end: int


def _scan(original: str, folded: str, patterns: list[re.Pattern[str]]) -> list[Found]:
    spans: list[tuple[int, int]] = []
    for pattern in patterns:
        for match in pattern.finditer(folded):
            start, end = match.span()
            if end - start and not any(s <= start < e or s < end <= e or (start <= s and e <= end) for s, e in spans):
                spans.append((start, end))
    spans.sort()
    found = []
    for s, e in spans:
        # English "at 5pm" is given as "5pm"; Spanish keeps "a las 5", as people quote it.
        lead = re.match(r"(?:at\s+|on\s+|@\s*)", folded[s:e])
        if lead:
            s += lead.end()
        found.append(Found(original[s:e].strip(), s, e))
    return found


def find(text: str) -> tuple[list[Found], list[Found]]:
    """(date expressions, time expressions) in the message, in order, as written."""
    folded = fold(text)
    times = _scan(text, folded, TIME_PATTERNS)
    # "mañana" after "de la"/"por la" is a time of day ("a las 10 de la mañana"), not tomorrow.
    taken = [(t.start, t.end) for t in times]
    dates = [d for d in _scan(text, folded, DATE_PATTERNS) if not any(s <= d.start < e for s, e in taken)]
    return dates, times


# --- meaning ------------------------------------------------------------------------


def resolve_date(expression: str, today: dt.date) -> dt.date | None:
    """The day an expression names (the next such day for a weekday), or None."""
    text = fold(expression)
    if re.search(r"pasado\s+manana|day\s+after", text):
        return today + dt.timedelta(days=2)
    if re.search(r"\b(hoy|today|tonight|esta\s+noche|esta\s+tarde)\b", text):
        return today
    if re.search(r"\b(manana|tomorrow|tmrw|tmr|tomorow|tommorow|2moro)\b", text):
        return today + dt.timedelta(days=1)
    for names in (DAYS_ES, DAYS_EN):
        for index, name in enumerate(names):
            if re.search(rf"\b{name}\b", text):
                ahead = (index - today.weekday()) % 7 or 7
                if re.search(r"\b(proximo|que\s+viene|next)\b", text) and ahead < 7 and "this" not in text:
                    # "el próximo lunes" said on a Saturday is two days away; said on a Tuesday, next week's.
                    ahead = ahead if ahead > 2 else ahead + 7
                return today + dt.timedelta(days=ahead)
    if re.search(r"finde|fin\s+de\s+semana|weekend", text):
        return today + dt.timedelta(days=(5 - today.weekday()) % 7)
    if re.search(r"semana\s+que\s+viene|proxima\s+semana|next\s+week", text):
        return today + dt.timedelta(days=7 - today.weekday())
    month = _month(text)
    number = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", text)
    slash = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", text)
    if slash:
        day, month_number = int(slash.group(1)), int(slash.group(2))
        return _future(today, month_number, day)
    if number:
        day = int(number.group(1))
        if month:
            return _future(today, month, day)
        candidate = _future(today, today.month, day, year=today.year)
        if candidate is None or candidate < today:
            following = today.replace(day=1) + dt.timedelta(days=32)
            candidate = _future(today, following.month, day, year=following.year)
        return candidate
    return None


def _month(text: str) -> int | None:
    for names in (MONTHS_ES, MONTHS_EN):
        for index, name in enumerate(names):
            if re.search(rf"\b{name[:3]}", text) and re.search(rf"\b{name}\b|\b{name[:3]}\b|\b{name[:4]}\b", text):
                return index + 1
    if re.search(r"\bsetiembre\b", text):
        return 9
    return None


def _future(today: dt.date, month: int, day: int, *, year: int | None = None) -> dt.date | None:
    try:
        candidate = dt.date(year or today.year, month, day)
    except ValueError:
        return None
    if candidate < today and year is None:
        try:
            candidate = dt.date(today.year + 1, month, day)
        except ValueError:
            return None
    return candidate


@dataclass(frozen=True)
class TimeOfDay:
    """A time the client named: an exact minute, or a part of the day (from, to)."""

    hour: int
    minute: int = 0
    until_hour: int | None = None
    """Set for a part of the day: "por la mañana" is 8 to 13."""


_PARTS = (
    (r"manana|morning|primera\s+hora|first\s+thing", TimeOfDay(8, 0, 13)),
    (r"mediodia|noon|midday|lunchtime", TimeOfDay(12, 0, 15)),
    (r"tarde|afternoon", TimeOfDay(15, 0, 20)),
    (r"noche|evening|ultima\s+hora", TimeOfDay(18, 0, 22)),
)


def resolve_time(expression: str) -> TimeOfDay | None:
    """The time of day an expression names ("a las 6 y media" is 18:30: business hours, not dawn)."""
    text = fold(expression)
    match = re.search(r"(\d{1,2})(?:[:.](\d{2}))?", text)
    hour: int | None = None
    minute = 0
    if match:
        hour = int(match.group(1))
        minute = int(match.group(2) or 0)
    else:
        for word, value in {**_NUM_WORDS_ES, **_NUM_WORDS_EN}.items():
            if re.search(rf"\b{word}\b", text):
                hour = value
                break
    if hour is None:
        for pattern, part in _PARTS:
            if re.search(pattern, text):
                return part
        return None
    if re.search(r"y\s+media|and\s+a\s+half|thirty", text):
        minute = 30
    elif re.search(r"y\s+cuarto|fifteen", text):
        minute = 15
    elif re.search(r"menos\s+cuarto", text):
        hour, minute = hour - 1, 45
    elif found := re.search(r"y\s+(\d{1,2})\b", text):
        minute = int(found.group(1))
    afternoon = re.search(r"p\.?\s?m|tarde|noche", text)
    morning = re.search(r"a\.?\s?m|manana", text)
    if afternoon and hour < 12:
        hour += 12
    elif not morning and 1 <= hour <= 7:
        hour += 12  # "a las 6" at a clinic or salon means six in the evening
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return TimeOfDay(hour, minute)
