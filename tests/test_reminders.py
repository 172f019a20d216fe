"""Table-driven tests for hub.reminders: offsets, quiet hours, drops and real DST transitions.

Every expected instant below was worked out by hand; the comments show the local wall time.
Offsets in force: Europe/Madrid CET +01 / CEST +02 (2026-03-29 01:00Z spring, 2026-10-25 01:00Z
fall), America/New_York EST -05 / EDT -04 (2026-03-08 07:00Z spring, 2026-11-01 06:00Z fall),
America/Sao_Paulo -03, America/Mexico_City -06, America/Bogota -05, all year.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from hub.reminders import PlannedReminder, QuietHours, offset_label, parse_offset, plan_reminders

UTC = datetime.timezone.utc
DEFAULTS = ("24h", "2h", "30m")
MADRID = "Europe/Madrid"
NEW_YORK = "America/New_York"
SAO_PAULO = "America/Sao_Paulo"
MEXICO_CITY = "America/Mexico_City"
BOGOTA = "America/Bogota"
LONG_AGO = "2026-01-01 00:00"


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str, fold: int = 0) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold)


class Case(NamedTuple):
    zone: str
    start: str  # local wall time in zone
    expected: list[tuple[str, str, bool]]  # (label, send_at in UTC, moved)
    offsets: tuple[str, ...] = DEFAULTS
    quiet: str | None = None
    booked: str = LONG_AGO  # local wall time in zone
    now: str | None = None  # local wall time in zone; defaults to booked
    fold: int = 0  # of start, for a wall time that happens twice


def run(case: Case) -> list[tuple[str, datetime.datetime, bool]]:
    planned = plan_reminders(
        start_at=local(case.start, case.zone, case.fold),
        booked_at=local(case.booked, case.zone),
        now=local(case.now or case.booked, case.zone),
        offsets=[parse_offset(text) for text in case.offsets],
        timezone=case.zone,
        quiet_hours=QuietHours.parse(case.quiet) if case.quiet else None,
    )
    assert all(reminder.send_at.tzinfo is UTC for reminder in planned)
    assert all(reminder.label == offset_label(reminder.offset) for reminder in planned)
    return [(reminder.label, reminder.send_at, reminder.moved) for reminder in planned]


def expect(case: Case) -> list[tuple[str, datetime.datetime, bool]]:
    return [(label, utc(send_at), moved) for label, send_at, moved in case.expected]


# --- Default offsets, no quiet hours -----------------------------------------------------------

BASICS = [
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [
            ("24h", "2026-05-11 08:00", False),  # 10:00 CEST the day before
            ("2h", "2026-05-12 06:00", False),  # 08:00 CEST
            ("30m", "2026-05-12 07:30", False),  # 09:30 CEST
        ]),
        id="madrid-defaults",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [
            ("24h", "2026-05-11 08:00", False),
            ("2h", "2026-05-12 06:00", False),
            ("30m", "2026-05-12 07:30", False),
        ], offsets=("30m", "24h", "2h", "1d", "2h", "120m")),
        id="unordered-and-duplicate-offsets",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [
            ("48h", "2026-05-10 08:00", False),
            ("1h30m", "2026-05-12 06:30", False),  # 08:30 CEST
            ("45m", "2026-05-12 07:15", False),
        ], offsets=("2d", "90m", "45m")),
        id="other-offsets-take-canonical-labels",
    ),
]


# --- Quiet hours move reminders earlier, never later -------------------------------------------

QUIET = [
    pytest.param(
        Case(MADRID, "2026-05-12 08:30", [
            ("24h", "2026-05-11 06:30", False),  # 08:30 CEST: the window ended at 08:00
            ("2h", "2026-05-11 18:59", True),  # 06:30 -> 20:59 CEST the evening before
            ("30m", "2026-05-12 06:00", False),  # exactly 08:00: the end is not quiet
        ], quiet="21:00-08:00"),
        id="wrapping-window-morning-moves-to-previous-evening",
    ),
    pytest.param(
        # 00:15 on the 13th; the 2 h reminder falls at 22:15 on the 12th.
        Case(MADRID, "2026-05-13 00:15", [("2h", "2026-05-12 18:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="wrapping-window-evening-moves-to-same-evening",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 23:00", [("2h", "2026-05-12 18:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="exactly-at-window-start-is-quiet",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 22:59", [("2h", "2026-05-12 18:59", False)], offsets=("2h",), quiet="21:00-08:00"),
        id="one-minute-before-window-is-not-moved",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 16:00", [
            ("24h", "2026-05-11 14:00", False),  # 16:00 CEST
            ("2h", "2026-05-12 10:59", True),  # 14:00 -> 12:59 CEST
            ("30m", "2026-05-12 13:30", False),  # 15:30 CEST
        ], quiet="13:00-15:00"),
        id="daytime-siesta-window",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 17:00", [("2h", "2026-05-12 13:00", False)], offsets=("2h",), quiet="13:00-15:00"),
        id="siesta-end-is-not-quiet",
    ),
    pytest.param(
        # The window starts at midnight without wrapping; "the minute before" is the previous day.
        Case(MADRID, "2026-05-12 05:00", [("2h", "2026-05-11 21:59", True)], offsets=("2h",), quiet="00:00-07:00"),
        id="window-from-midnight",
    ),
    pytest.param(
        # 22:00-00:00 ends at midnight: 23:30 is quiet and moves to 21:59 CEST.
        Case(MADRID, "2026-05-13 01:30", [("2h", "2026-05-12 19:59", True)], offsets=("2h",), quiet="22:00-00:00"),
        id="window-to-midnight",
    ),
]


# --- Reminders left out ------------------------------------------------------------------------

DROPS = [
    pytest.param(
        # Booked at 21:30 (19:30Z): 24h (08:30 the day before) and the 2 h moved to 20:59 would
        # both go out before the booking existed. now is earlier so only booked_at decides.
        Case(MADRID, "2026-05-12 08:30", [("30m", "2026-05-12 06:00", False)],
             quiet="21:00-08:00", booked="2026-05-11 21:30", now="2026-05-01 12:00"),
        id="moved-before-booked-at",
    ),
    pytest.param(
        # Booked at 20:30: the move to 20:59 still lands after the booking.
        Case(MADRID, "2026-05-12 08:30", [
            ("2h", "2026-05-11 18:59", True),
            ("30m", "2026-05-12 06:00", False),
        ], quiet="21:00-08:00", booked="2026-05-11 20:30"),
        id="moved-but-after-booked-at",
    ),
    pytest.param(
        # send_at == booked_at is not "before" the booking.
        Case(MADRID, "2026-05-12 10:00", [
            ("2h", "2026-05-12 06:00", False),
            ("30m", "2026-05-12 07:30", False),
        ], booked="2026-05-12 08:00", now="2026-05-12 07:00"),
        id="at-booked-at-is-kept",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [
            ("2h", "2026-05-12 06:00", False),
            ("30m", "2026-05-12 07:30", False),
        ], booked="2026-05-12 07:00"),
        id="booked-3h-ahead-skips-24h",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [("30m", "2026-05-12 07:30", False)], booked="2026-05-12 08:00"),
        id="exactly-now-is-not-sent",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 10:00", [], booked="2026-05-12 09:40"),
        id="booked-20m-ahead-gets-nothing",
    ),
    pytest.param(
        # Rescheduled: booked long ago, but planning happens now, so past reminders are not sent.
        Case(MADRID, "2026-05-12 10:00", [("30m", "2026-05-12 07:30", False)], now="2026-05-12 08:15"),
        id="reschedule-skips-past-reminders",
    ),
    pytest.param(
        # 2h (06:15) and 30m (07:45) both move to 20:59 the evening before: only the 2 h one stays.
        Case(MADRID, "2026-05-12 08:15", [
            ("24h", "2026-05-11 06:15", False),
            ("2h", "2026-05-11 18:59", True),
        ], quiet="21:00-08:00"),
        id="collision-after-move-keeps-larger-offset",
    ),
    pytest.param(
        # 2h falls at 12:59, right before the siesta; 30m (14:29) moves onto that same minute.
        Case(MADRID, "2026-05-12 14:59", [("2h", "2026-05-12 10:59", False)],
             offsets=("2h", "30m"), quiet="13:00-15:00"),
        id="collision-with-unmoved-reminder",
    ),
    pytest.param(
        Case(MADRID, "2026-05-12 09:30", [
            ("3h", "2026-05-11 18:59", True),  # 06:30 -> 20:59
            ("1h", "2026-05-12 06:30", False),  # 08:30; 2h (07:30 -> 20:59) collided
        ], offsets=("3h", "2h", "1h"), quiet="21:00-08:00"),
        id="collision-middle-offset",
    ),
    pytest.param(
        # Booked at 20:00 the evening before: 24h is past, so the moved 2 h one is the first kept
        # and the 30 m one collides with it.
        Case(MADRID, "2026-05-12 08:15", [("2h", "2026-05-11 18:59", True)],
             quiet="21:00-08:00", booked="2026-05-11 20:00"),
        id="collision-with-first-kept-after-past-drop",
    ),
]


# --- Absolute arithmetic across real DST transitions and fixed-offset zones --------------------

ZONES = [
    pytest.param(
        # Clocks went 02:00 CET -> 03:00 CEST that night: 24 real hours before is 09:00 local.
        Case(MADRID, "2026-03-29 10:00", [
            ("24h", "2026-03-28 08:00", False),  # 09:00 CET
            ("2h", "2026-03-29 06:00", False),  # 08:00 CEST
            ("30m", "2026-03-29 07:30", False),
        ]),
        id="madrid-spring-forward-night-before",
    ),
    pytest.param(
        Case(MADRID, "2026-03-30 10:00", [
            ("24h", "2026-03-29 08:00", False),  # 10:00 CEST: no change in between
            ("2h", "2026-03-30 06:00", False),
            ("30m", "2026-03-30 07:30", False),
        ]),
        id="madrid-day-after-spring-forward",
    ),
    pytest.param(
        Case(MADRID, "2026-03-29 03:30", [
            ("2h", "2026-03-28 23:30", False),  # 00:30 CET, three wall-clock hours earlier
            ("30m", "2026-03-29 01:00", False),  # 03:00 CEST, the first minute after the jump
        ], offsets=("2h", "30m")),
        id="madrid-spring-forward-2h-spans-gap",
    ),
    pytest.param(
        # Clocks went 03:00 CEST -> 02:00 CET that night: 24 real hours before is 11:00 local.
        Case(MADRID, "2026-10-25 10:00", [
            ("24h", "2026-10-24 09:00", False),  # 11:00 CEST
            ("2h", "2026-10-25 07:00", False),  # 08:00 CET
            ("30m", "2026-10-25 08:30", False),
        ]),
        id="madrid-fall-back-night-before",
    ),
    pytest.param(
        Case(MADRID, "2026-10-25 03:30", [
            ("2h", "2026-10-25 00:30", False),  # 02:30 CEST, only one wall-clock hour earlier
            ("30m", "2026-10-25 02:00", False),  # 03:00 CET
        ], offsets=("2h", "30m")),
        id="madrid-fall-back-2h-spans-repeat",
    ),
    pytest.param(
        Case(MADRID, "2026-10-25 02:30", [
            ("2h", "2026-10-24 22:30", False),  # 00:30 CEST
            ("30m", "2026-10-25 00:00", False),  # 02:00 CEST, first pass
        ], offsets=("2h", "30m"), fold=0),
        id="madrid-fall-back-start-first-pass",
    ),
    pytest.param(
        Case(MADRID, "2026-10-25 02:30", [
            ("2h", "2026-10-24 23:30", False),  # 01:30 CEST
            ("30m", "2026-10-25 01:00", False),  # 02:00 CET, second pass
        ], offsets=("2h", "30m"), fold=1),
        id="madrid-fall-back-start-second-pass",
    ),
    pytest.param(
        # 02:00 EST -> 03:00 EDT that night: 24 real hours before is 09:00 local.
        Case(NEW_YORK, "2026-03-08 10:00", [
            ("24h", "2026-03-07 14:00", False),  # 09:00 EST
            ("2h", "2026-03-08 12:00", False),  # 08:00 EDT
            ("30m", "2026-03-08 13:30", False),
        ]),
        id="new-york-spring-forward",
    ),
    pytest.param(
        Case(NEW_YORK, "2026-03-08 03:30", [
            ("2h", "2026-03-08 05:30", False),  # 00:30 EST
            ("30m", "2026-03-08 07:00", False),  # 03:00 EDT
        ], offsets=("2h", "30m")),
        id="new-york-spring-forward-2h-spans-gap",
    ),
    pytest.param(
        # 02:00 EDT -> 01:00 EST that night: 24 real hours before is 11:00 local.
        Case(NEW_YORK, "2026-11-01 10:00", [
            ("24h", "2026-10-31 15:00", False),  # 11:00 EDT
            ("2h", "2026-11-01 13:00", False),  # 08:00 EST
            ("30m", "2026-11-01 14:30", False),
        ]),
        id="new-york-fall-back",
    ),
    pytest.param(
        Case(NEW_YORK, "2026-11-01 01:30", [
            ("2h", "2026-11-01 04:30", False),  # 00:30 EDT
            ("30m", "2026-11-01 06:00", False),  # 01:00 EST, second pass
        ], offsets=("2h", "30m"), fold=1),
        id="new-york-fall-back-start-second-pass",
    ),
    pytest.param(
        # First Sunday of November: Brazil's old DST start, gone since 2019.
        Case(SAO_PAULO, "2026-11-01 10:00", [
            ("24h", "2026-10-31 13:00", False),
            ("2h", "2026-11-01 11:00", False),
            ("30m", "2026-11-01 12:30", False),
        ]),
        id="sao-paulo-old-dst-start",
    ),
    pytest.param(
        # Third Sunday of February: Brazil's old DST end.
        Case(SAO_PAULO, "2026-02-15 10:00", [
            ("24h", "2026-02-14 13:00", False),
            ("2h", "2026-02-15 11:00", False),
            ("30m", "2026-02-15 12:30", False),
        ]),
        id="sao-paulo-old-dst-end",
    ),
    pytest.param(
        # First Sunday of April: Mexico's old DST start, abolished in 2022.
        Case(MEXICO_CITY, "2026-04-05 10:00", [
            ("24h", "2026-04-04 16:00", False),
            ("2h", "2026-04-05 14:00", False),
            ("30m", "2026-04-05 15:30", False),
        ]),
        id="mexico-city-old-dst-start",
    ),
    pytest.param(
        # Last Sunday of October: Mexico's old DST end (same night as Madrid's fall-back).
        Case(MEXICO_CITY, "2026-10-25 10:00", [
            ("24h", "2026-10-24 16:00", False),
            ("2h", "2026-10-25 14:00", False),
            ("30m", "2026-10-25 15:30", False),
        ]),
        id="mexico-city-old-dst-end",
    ),
    pytest.param(
        # Same day as New York's spring-forward; Bogota never changes.
        Case(BOGOTA, "2026-03-08 10:00", [
            ("24h", "2026-03-07 15:00", False),
            ("2h", "2026-03-08 13:00", False),
            ("30m", "2026-03-08 14:30", False),
        ]),
        id="bogota",
    ),
]


# --- Quiet-hours moves whose target lands on a DST transition day ------------------------------

QUIET_DST = [
    pytest.param(
        Case(MADRID, "2026-03-29 08:30", [
            ("24h", "2026-03-27 19:59", True),  # 07:30 CET on the 28th -> 20:59 CET on the 27th
            ("2h", "2026-03-28 19:59", True),  # 06:30 CEST -> 20:59 CET the evening before the jump
            ("30m", "2026-03-29 06:00", False),  # 08:00 CEST
        ], quiet="21:00-08:00"),
        id="madrid-spring-night-window",
    ),
    pytest.param(
        Case(MADRID, "2026-10-25 08:30", [
            ("24h", "2026-10-24 07:30", False),  # 09:30 CEST
            ("2h", "2026-10-24 18:59", True),  # 06:30 CET -> 20:59 CEST the evening before
            ("30m", "2026-10-25 07:00", False),  # 08:00 CET
        ], quiet="21:00-08:00"),
        id="madrid-fall-night-window",
    ),
    pytest.param(
        # Reminder 05:00 CEST; target 02:59 does not exist, so the minute before the jump: 01:59 CET.
        Case(MADRID, "2026-03-29 07:00", [("2h", "2026-03-29 00:59", True)], offsets=("2h",), quiet="03:00-08:00"),
        id="madrid-spring-target-in-gap",
    ),
    pytest.param(
        # The window's own start (02:30) is skipped: it began at the jump, so again 01:59 CET.
        Case(MADRID, "2026-03-29 07:00", [("2h", "2026-03-29 00:59", True)], offsets=("2h",), quiet="02:30-08:00"),
        id="madrid-spring-window-start-in-gap",
    ),
    pytest.param(
        # Reminder 05:00 CET; 02:59 happens twice and the window began at 03:00 CET, so the second
        # 02:59 (CET, 01:59Z), not the first (CEST, 00:59Z).
        Case(MADRID, "2026-10-25 05:00", [("2h", "2026-10-25 01:59", True)], offsets=("2h",), quiet="03:00-08:00"),
        id="madrid-fall-target-repeated-second-pass",
    ),
    pytest.param(
        # Reminder 02:45 CEST (first pass): the second 02:29 would be later, so the first, 00:29Z.
        Case(MADRID, "2026-10-25 03:45", [("2h", "2026-10-25 00:29", True)], offsets=("2h",), quiet="02:30-08:00"),
        id="madrid-fall-target-repeated-first-pass",
    ),
    pytest.param(
        # Reminder 02:45 CET (second pass): 02:29 CET (01:29Z) was not quiet, so it goes there.
        Case(MADRID, "2026-10-25 04:45", [("2h", "2026-10-25 01:29", True)], offsets=("2h",), quiet="02:30-08:00"),
        id="madrid-fall-reminder-in-second-pass",
    ),
    pytest.param(
        # 06:30 EDT -> 20:59 EST the evening before (01:59Z on the 8th).
        Case(NEW_YORK, "2026-03-08 08:30", [("2h", "2026-03-08 01:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="new-york-spring-night-window",
    ),
    pytest.param(
        # Reminder 04:00 EDT; target 02:29 is skipped, so 01:59 EST, one minute before the 07:00Z jump.
        Case(NEW_YORK, "2026-03-08 06:00", [("2h", "2026-03-08 06:59", True)], offsets=("2h",), quiet="02:30-07:00"),
        id="new-york-spring-target-in-gap",
    ),
    pytest.param(
        # Reminder 03:00 EST; 01:29 happens twice, the second (EST, 06:29Z) is before the window.
        Case(NEW_YORK, "2026-11-01 05:00", [("2h", "2026-11-01 06:29", True)], offsets=("2h",), quiet="01:30-07:00"),
        id="new-york-fall-target-repeated",
    ),
    pytest.param(
        # 06:30 -03 -> 20:59 -03 the evening before, which is already the next day in UTC.
        Case(SAO_PAULO, "2026-11-01 08:30", [("2h", "2026-10-31 23:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="sao-paulo-night-window",
    ),
    pytest.param(
        Case(MEXICO_CITY, "2026-04-05 08:30", [("2h", "2026-04-05 02:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="mexico-city-night-window",
    ),
    pytest.param(
        Case(BOGOTA, "2026-03-08 08:30", [("2h", "2026-03-08 01:59", True)], offsets=("2h",), quiet="21:00-08:00"),
        id="bogota-night-window",
    ),
]


@pytest.mark.parametrize("case", BASICS + QUIET + DROPS + ZONES + QUIET_DST)
def test_plan_reminders(case: Case) -> None:
    assert run(case) == expect(case)


def test_quiet_hours_on_a_skipped_day_move_again() -> None:
    # Samoa skipped 2011-12-30: 23:59 -10 on the 29th was followed by 00:00 +14 on the 31st (10:00Z).
    # The 2 h reminder (06:30 +14 on the 31st) is in a window that "began" at 21:00 on the missing
    # day; the minute before the jump (23:59 on the 29th) is still quiet, so it moves once more,
    # to 20:59 -10 on the 29th.
    case = Case("Pacific/Apia", "2011-12-31 08:30", [("2h", "2011-12-30 06:59", True)],
                offsets=("2h",), quiet="21:00-08:00", booked="2011-11-01 00:00")
    assert run(case) == expect(case)


def test_start_at_in_any_zone_gives_the_same_plan() -> None:
    offsets = [parse_offset(text) for text in DEFAULTS]
    quiet = QuietHours.parse("21:00-08:00")
    booked = utc("2026-03-01 00:00")
    plans = [
        plan_reminders(
            start_at=start, booked_at=booked, now=booked, offsets=offsets, timezone=MADRID, quiet_hours=quiet
        )
        for start in (
            local("2026-03-29 08:30", MADRID),
            utc("2026-03-29 06:30"),
            local("2026-03-29 01:30", BOGOTA),
        )
    ]
    assert plans[0] == plans[1] == plans[2]
    assert [reminder.send_at for reminder in plans[0]] == [
        utc("2026-03-27 19:59"),
        utc("2026-03-28 19:59"),
        utc("2026-03-29 06:00"),
    ]


SWEEP_WINDOWS = ("21:00-08:00", "13:00-15:00", "00:00-07:00", "22:00-00:00", "22:00-02:30", "02:30-08:00",
                 "03:00-08:00", "01:30-07:00")
SWEEP_DAYS = [
    (MADRID, datetime.date(2026, 3, 29)),
    (MADRID, datetime.date(2026, 10, 25)),
    (NEW_YORK, datetime.date(2026, 3, 8)),
    (NEW_YORK, datetime.date(2026, 11, 1)),
    (SAO_PAULO, datetime.date(2026, 11, 1)),
]


@pytest.mark.parametrize("window", SWEEP_WINDOWS)
@pytest.mark.parametrize(("zone", "day"), SWEEP_DAYS)
def test_quiet_hours_only_ever_move_earlier_to_just_before_the_window(
    zone: str, day: datetime.date, window: str
) -> None:
    tz = ZoneInfo(zone)
    quiet = QuietHours.parse(window)
    offset = datetime.timedelta(hours=2)
    first = datetime.datetime.combine(day - datetime.timedelta(days=1), datetime.time(), tz).astimezone(UTC)
    moved_count = 0
    for step in range(0, 3 * 24 * 60, 10):
        due = first + datetime.timedelta(minutes=step)
        (reminder,) = plan_reminders(
            start_at=due + offset, booked_at=utc("2026-01-01 00:00"), now=utc("2026-01-01 00:00"),
            offsets=[offset], timezone=zone, quiet_hours=quiet,
        )
        assert reminder.send_at <= due
        assert reminder.moved == (reminder.send_at != due)
        assert reminder.moved == quiet.contains(due.astimezone(tz).time())
        assert not quiet.contains(reminder.send_at.astimezone(tz).time())
        if reminder.moved:
            moved_count += 1
            # The next minute is inside the window: it really is the last minute before it.
            assert quiet.contains((reminder.send_at + datetime.timedelta(minutes=1)).astimezone(tz).time())
            assert due - reminder.send_at < datetime.timedelta(days=1)
    assert moved_count > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"start_at": datetime.datetime(2026, 5, 12, 10, 0)}, "start_at must be an aware datetime"),
        ({"booked_at": datetime.datetime(2026, 5, 1, 10, 0)}, "booked_at must be an aware datetime"),
        ({"now": datetime.datetime(2026, 5, 1, 10, 0)}, "now must be an aware datetime"),
        ({"timezone": "Europe/Madird"}, "unknown timezone 'Europe/Madird'"),
        ({"timezone": "../etc/passwd"}, "unknown timezone"),
        ({"offsets": [datetime.timedelta(0)]}, "must be positive"),
        ({"offsets": [datetime.timedelta(hours=-2)]}, "must be positive"),
        ({"offsets": [datetime.timedelta(seconds=90)]}, "whole number of minutes"),
    ],
)
def test_plan_reminders_rejects_bad_input(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "start_at": utc("2026-05-12 08:00"),
        "booked_at": utc("2026-05-01 08:00"),
        "now": utc("2026-05-01 08:00"),
        "offsets": [datetime.timedelta(hours=2)],
        "timezone": MADRID,
    }
    arguments.update(changes)
    with pytest.raises(ValueError, match=message):
        plan_reminders(**arguments)  # type: ignore[arg-type]


def test_planned_reminder_is_immutable() -> None:
    (reminder,) = plan_reminders(
        start_at=utc("2026-05-12 08:00"), booked_at=utc("2026-05-01 08:00"), now=utc("2026-05-01 08:00"),
        offsets=[datetime.timedelta(hours=2)], timezone=MADRID,
    )
    assert reminder == PlannedReminder(
        offset=datetime.timedelta(hours=2), label="2h", send_at=utc("2026-05-12 06:00"), moved=False
    )
    with pytest.raises(AttributeError):
        reminder.send_at = utc("2026-05-12 07:00")  # type: ignore[misc]


# --- parse_offset and offset_label -------------------------------------------------------------

H = datetime.timedelta(hours=1)
M = datetime.timedelta(minutes=1)

OFFSETS = [
    ("24h", 24 * H, "24h"),
    ("2h", 2 * H, "2h"),
    ("30m", 30 * M, "30m"),
    ("1d", 24 * H, "24h"),  # days are plain 24-hour blocks
    ("2d", 48 * H, "48h"),
    ("90m", 90 * M, "1h30m"),
    ("1h30m", 90 * M, "1h30m"),
    ("1d2h", 26 * H, "26h"),
    ("1d0h30m", 24 * H + 30 * M, "24h30m"),
    ("0h45m", 45 * M, "45m"),
    ("120m", 2 * H, "2h"),
    ("1m", M, "1m"),
    (" 24H ", 24 * H, "24h"),
    ("007h", 7 * H, "7h"),
]


@pytest.mark.parametrize(("text", "offset", "label"), OFFSETS)
def test_parse_offset_and_label(text: str, offset: datetime.timedelta, label: str) -> None:
    assert parse_offset(text) == offset
    assert offset_label(offset) == label
    assert parse_offset(label) == offset
    assert offset_label(parse_offset(label)) == label


def test_every_minute_offset_round_trips() -> None:
    for minutes in range(1, 3 * 24 * 60 + 1):
        offset = minutes * M
        label = offset_label(offset)
        assert parse_offset(label) == offset, label
        assert "d" not in label


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("-2h", "is negative"),
        ("-30m", "is negative"),
        ("0h", "is zero"),
        ("0m", "is zero"),
        ("0d0h0m", "is zero"),
        ("10s", "unknown unit 's'"),
        ("2w", "unknown unit 'w'"),
        ("24hours", "unknown unit 'hours'"),
        ("30", "no unit after 30"),
        ("1h30", "no unit after 30"),
        ("30m1h", "in the order d, h, m"),
        ("1h1h", "in the order d, h, m"),
        ("2.5h", "not valid"),
        ("+2h", "not valid"),
        ("h", "not valid"),
        ("2 h", "not valid"),
        ("1h 30m", "not valid"),
        ("٢h", "not valid"),  # Arabic-Indic digit
        ("99999999999d", "too large"),
    ],
)
def test_parse_offset_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_offset(text)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (datetime.timedelta(0), "must be positive"),
        (-2 * H, "must be positive"),
        (datetime.timedelta(seconds=30), "whole number of minutes"),
        (H + datetime.timedelta(microseconds=1), "whole number of minutes"),
    ],
)
def test_offset_label_errors(offset: datetime.timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        offset_label(offset)


# --- QuietHours --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("21:00-08:00", datetime.time(21, 0), datetime.time(8, 0)),
        ("13:00-15:00", datetime.time(13, 0), datetime.time(15, 0)),
        (" 22:30 - 7:15 ", datetime.time(22, 30), datetime.time(7, 15)),
        ("00:00-23:59", datetime.time(0, 0), datetime.time(23, 59)),
    ],
)
def test_quiet_hours_parse(text: str, start: datetime.time, end: datetime.time) -> None:
    assert QuietHours.parse(text) == QuietHours(start=start, end=end)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "HH:MM-HH:MM"),
        ("21:00", "HH:MM-HH:MM"),
        ("21:00-08:00-09:00", "HH:MM-HH:MM"),
        ("21:00–08:00", "HH:MM-HH:MM"),  # en dash
        ("21-08", "'21' is not a HH:MM time"),
        ("9pm-8am", "'9pm' is not a HH:MM time"),
        ("21:00-08:00pm", "'08:00pm' is not a HH:MM time"),
        ("21:00-", "'' is not a HH:MM time"),
        ("24:00-08:00", "'24:00' is not a time of day"),
        ("21:60-08:00", "'21:60' is not a time of day"),
        ("21:00-21:00", "both 21:00"),
    ],
)
def test_quiet_hours_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuietHours.parse(text)


def test_quiet_hours_refuses_empty_or_zoned_windows() -> None:
    with pytest.raises(ValueError, match="both 08:00"):
        QuietHours(start=datetime.time(8, 0), end=datetime.time(8, 0))
    with pytest.raises(ValueError, match="must not carry a time zone"):
        QuietHours(start=datetime.time(21, 0, tzinfo=UTC), end=datetime.time(8, 0))


@pytest.mark.parametrize(
    ("window", "clock", "quiet"),
    [
        ("21:00-08:00", "20:59", False),
        ("21:00-08:00", "21:00", True),
        ("21:00-08:00", "23:59", True),
        ("21:00-08:00", "00:00", True),
        ("21:00-08:00", "07:59", True),
        ("21:00-08:00", "08:00", False),
        ("21:00-08:00", "12:00", False),
        ("13:00-15:00", "12:59", False),
        ("13:00-15:00", "13:00", True),
        ("13:00-15:00", "14:59", True),
        ("13:00-15:00", "15:00", False),
        ("13:00-15:00", "03:00", False),
        ("00:00-07:00", "00:00", True),
        ("00:00-07:00", "23:59", False),
        ("22:00-00:00", "22:00", True),
        ("22:00-00:00", "23:59", True),
        ("22:00-00:00", "00:00", False),
    ],
)
def test_quiet_hours_contains(window: str, clock: str, quiet: bool) -> None:
    assert QuietHours.parse(window).contains(datetime.time.fromisoformat(clock)) is quiet
