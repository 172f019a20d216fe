"""Numbers written as bare ASCII digits (what vendors and API clients send) take a short path in
`normalize_phone`; it must answer exactly as the full path does for the same number."""

from __future__ import annotations

import pytest

from hub.phones import InvalidAddress, normalize_phone

DIGITS: list[tuple[str, str | None]] = [
    ("600123456", "ES"), ("+34600123456", None), ("0034600123456", "ES"), ("34600123456", "ES"), ("+34600123456", "MX"),
    ("5512345678", "MX"), ("5215512345678", "MX"), ("+5215512345678", None), ("0445512345678", "MX"),
    ("5493415550123", "AR"), ("+5493415550123", None), ("01123456789", "AR"), ("3415550123", "AR"), ("+543415550123", "AR"),
    ("11934567890", "BR"), ("+551134567890", None), ("2025550123", "US"), ("12025550123", "US"), ("+12025550123", "ES"),
    ("18005550199", None), ("07700900123", "GB"), ("+447700900123", None), ("600123456", None), ("123", "ES"), ("+999123456", None),
    ("0", "ES"), ("00000000000", "ES"), ("+0", None), ("1234567890123456789", "ES"), ("600123456", "ZZ"),
]


def outcome(raw: str, region: str | None) -> str:
    try:
        return normalize_phone(raw, region)
    except InvalidAddress as exc:
        return f"refused: {exc.reason}"


@pytest.mark.parametrize(("raw", "region"), DIGITS)
def test_bare_digits_answer_as_the_full_path_does(raw: str, region: str | None) -> None:
    # A leading space is stripped by the full path, so this is the same number the long way round.
    assert outcome(raw, region) == outcome(f" {raw}", region)


@pytest.mark.parametrize("raw", ["", "+", "++34600123456", "+34 600 123 456", "６００１２３４５６", "+34600123456x12"])
def test_what_is_not_bare_digits_takes_the_full_path(raw: str) -> None:
    assert outcome(raw, "ES") == outcome(f" {raw}", "ES") if raw.strip() else outcome(raw, "ES") == "refused: empty"
