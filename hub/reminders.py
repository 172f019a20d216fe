"""Plan when an appointment's reminders go out: offsets, quiet hours and time-zone arithmetic."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = (
    "PlannedReminder",
    "QuietHours",
    "offset_label",
    "parse_offset",
    "plan_reminders",
)

_ZERO = datetime.timedelta(0)
_MINUTE = datetime.timedelta(minutes=1)
_MICROSECOND = datetime.timedelta(microseconds=1)
_UTC = datetime.timezone.utc

# Units in the only order they may appear ("1d2h30m", never "30m1h"), so each duration has
# few spellings and a typo such as "1h1h" is refused instead of silently summed.
_UNIT_ORDER = "dhm"
_UNIT_SIZES: tuple[datetime.timedelta, ...] = (
    datetime.timedelta(days=1),
    datetime.timedelta(hours=1),
    datetime.timedelta(minutes=1),
)
_OFFSET_SHAPE = re.compile(r"(?:[0-9]+[a-z]*)+")
_OFFSET_PART = re.compile(r"([0-9]+)([a-z]*)")
_OFFSET_EXAMPLES = "e.g. '24h', '2h', '30m' or '1h30m'"

_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def parse_offset(text: str) -> datetime.timedelta:
    """Parse how long before an appointment a reminder goes out ("24h", "30m", "1h30m"; "1d" is 24 hours)."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError(f"reminder offset is empty ({_OFFSET_EXAMPLES})")
    if cleaned.startswith("-"):
        raise ValueError(
            f"reminder offset {text!r} is negative; offsets count back from the appointment ({_OFFSET_EXAMPLES})"
        )
    if not _OFFSET_SHAPE.fullmatch(cleaned):
        raise ValueError(
            f"reminder offset {text!r} is not valid; use whole numbers with the units d, h or m ({_OFFSET_EXAMPLES})"
        )
    total = _ZERO
    last_unit = -1
    for number, unit in _OFFSET_PART.findall(cleaned):
        if not unit:
            raise ValueError(f"reminder offset {text!r} has no unit after {number} (use d, h or m)")
        if unit not in _UNIT_ORDER:
            raise ValueError(f"reminder offset {text!r} has unknown unit {unit!r} (use d, h or m)")
        position = _UNIT_ORDER.index(unit)
        if position <= last_unit:
            raise ValueError(f"reminder offset {text!r} must use each unit once, in the order d, h, m")
        last_unit = position
        try:
            total += int(number) * _UNIT_SIZES[position]
        except OverflowError:
            raise ValueError(f"reminder offset {text!r} is too large") from None
    if total == _ZERO:
        raise ValueError(f"reminder offset {text!r} is zero; a reminder must go out before the appointment")
    return total


def offset_label(offset: datetime.timedelta) -> str:
    """The canonical short label of an offset ("24h", "2h", "30m", "1h30m"); round-trips with parse_offset."""
    if offset <= _ZERO:
        raise ValueError(f"reminder offset must be positive, got {offset}")
    minutes, rest = divmod(offset, _MINUTE)
    if rest:
        raise ValueError(f"reminder offset must be a whole number of minutes, got {offset}")
    # Never "Nd": labels go into idempotency keys, so one duration must have exactly one label,
    # and "1d" and "24h" parse to the same offset.
    hours, minutes = divmod(minutes, 60)
    if not minutes:
        return f"{hours}h"
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes}m"


@dataclass(frozen=True)
class QuietHours:
    """A daily local window, [start, end), in which no reminder goes out; wraps past midnight when start > end."""

    start: datetime.time
    end: datetime.time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times and must not carry a time zone")
        if self.start == self.end:
            # An empty window and an all-day one would both be written this way; refuse to guess.
            raise ValueError(f"quiet hours start and end are both {self.start:%H:%M}; the window would be empty")

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Parse "HH:MM-HH:MM" local wall-clock times, e.g. "21:00-08:00" or "13:00-15:00"."""
        parts = text.split("-")
        if len(parts) != 2:
            raise ValueError(f"quiet hours {text!r} are not valid; write them as 'HH:MM-HH:MM', e.g. '21:00-08:00'")
        start, end = (_parse_clock(part, text) for part in parts)
        return cls(start=start, end=end)

    def contains(self, local: datetime.time) -> bool:
        """Whether a local wall-clock time is inside the window: start inclusive, end exclusive."""
        wall = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


def _parse_clock(part: str, whole: str) -> datetime.time:
    match = _CLOCK.fullmatch(part.strip())
    if match is None:
        raise ValueError(
            f"quiet hours {whole!r} are not valid: {part.strip()!r} is not a HH:MM time; "
            "write them as 'HH:MM-HH:MM', e.g. '21:00-08:00'"
        )
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise ValueError(f"quiet hours {whole!r} are not valid: {part.strip()!r} is not a time of day (00:00-23:59)")
    return datetime.time(hour, minute)


@dataclass(frozen=True)
class PlannedReminder:
    """One reminder of an appointment and the moment it goes out."""

    offset: datetime.timedelta
    label: str
    send_at: datetime.datetime
    """Aware, in UTC."""
    moved: bool
    """True when quiet hours moved it earlier than start_at - offset."""


def plan_reminders(
    *,
    start_at: datetime.datetime,
    booked_at: datetime.datetime,
    now: datetime.datetime,
    offsets: Sequence[datetime.timedelta],
    timezone: str,
    quiet_hours: QuietHours | None = None,
) -> list[PlannedReminder]:
    """When each reminder should go out, ordered by send_at; reminders that cannot be sent sensibly are left out."""
    # Everything is compared in UTC: aware datetimes sharing one ZoneInfo compare (and subtract)
    # by wall clock, which is wrong during the repeated hour of a fall-back night.
    start_utc = _to_utc("start_at", start_at)
    booked_utc = _to_utc("booked_at", booked_at)
    now_utc = _to_utc("now", now)
    zone = _zone(timezone)
    # A non-positive offset is a configuration error, not a reminder to drop; refusing it here also
    # means every planned reminder is before start_at by construction.
    for offset in offsets:
        if offset <= _ZERO:
            raise ValueError(f"reminder offsets must be positive, got {offset}")

    planned: list[PlannedReminder] = []
    # Largest offset first, so a reminder is only ever compared with the earlier ones kept before it.
    for offset in sorted(set(offsets), reverse=True):
        label = offset_label(offset)
        # Absolute time: "24h before" is 24 real hours before, so a clock change the night before
        # moves the 24 h reminder's local wall time by an hour (09:00 instead of 10:00 after a
        # spring-forward), which is exactly what "24 hours before" means.
        send_at = start_utc - offset
        moved = False
        if quiet_hours is not None:
            # One move is always enough in practice; the loop only matters if a DST gap swallows the
            # last free minute before a near-24-hour window. The min() never changes a correct move
            # (that lands at least a minute earlier) but guarantees the loop ends.
            while quiet_hours.contains(send_at.astimezone(zone).time()):
                send_at = min(_before_window(send_at, quiet_hours, zone), send_at - _MINUTE)
                moved = True
        if send_at < booked_utc:
            continue  # the booking did not exist yet
        if send_at <= now_utc:
            continue  # already past: planning happens at booking or reschedule time, never catches up
        if planned and send_at <= planned[-1].send_at:
            # Quiet hours can push a smaller offset onto (never before) a larger one's time; the
            # customer would get two reminders at once, so the earlier-planned, larger one wins.
            continue
        planned.append(PlannedReminder(offset=offset, label=label, send_at=send_at, moved=moved))
    return planned


def _to_utc(name: str, value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(_UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as Europe/Madrid)") from None


def _before_window(send_at: datetime.datetime, quiet: QuietHours, zone: ZoneInfo) -> datetime.datetime:
    """The last minute before the window occurrence containing send_at began, in UTC."""
    wall = send_at.astimezone(zone).replace(tzinfo=None)
    day = wall.date()
    if quiet.start > quiet.end and wall.time() < quiet.end:
        day -= datetime.timedelta(days=1)  # in the morning part of a window that began the evening before
    # Wall-clock arithmetic on purpose: the target is "start on that date, minus a minute" as read on
    # the local clock, whatever the offset that date has.
    target = datetime.datetime.combine(day, quiet.start) - _MINUTE
    return _resolve_wall(target, zone, before=send_at)


def _resolve_wall(wall: datetime.datetime, zone: ZoneInfo, *, before: datetime.datetime) -> datetime.datetime:
    """The UTC instant at which zone's clocks read `wall`, choosing for repeated and skipped times."""
    guesses = {wall.replace(tzinfo=zone, fold=fold).astimezone(_UTC) for fold in (0, 1)}
    real = [guess for guess in guesses if guess.astimezone(zone).replace(tzinfo=None) == wall]
    if real:
        # In a fall-back night the wall time happens twice; the later reading still before the
        # reminder is the last moment before the window began (with window 03:00-08:00 that is
        # 02:59 on the second pass of the clock, not an hour earlier). The first reading is always
        # before the reminder, whose wall time is later, so the list is never empty.
        return max(guess for guess in real if guess < before)
    # A skipped wall time (spring-forward gap): the clocks jump straight from before the gap into
    # the window, so the last moment before the window is one minute before the jump. The two
    # guesses straddle the jump; bisect to the exact instant the offset changes.
    low, high = min(guesses), max(guesses)
    low_offset = low.astimezone(zone).utcoffset()
    while high - low > _MICROSECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == low_offset:
            low = middle
        else:
            high = middle
    return high - _MINUTE
