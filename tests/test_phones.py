"""Table-driven tests for hub.phones: every vendor form of one person's number must give one key."""

from __future__ import annotations

import pickle
import re

import phonenumbers
import pytest

from hub.phones import (
    REASONS,
    InvalidAddress,
    _phone_key,
    normalize_address,
    normalize_email,
    normalize_phone,
)

# (raw, region, expected key). Rows are grouped by person: within a group every row must give
# the same key, which is the whole point of the module.
VALID_PHONES: list[tuple[str, str | None, str]] = [
    # --- Spain: no trunk prefix, 9-digit numbers, exit code 00 -------------------------------
    ("+34600123456", None, "+34600123456"),
    ("+34 600 12 34 56", None, "+34600123456"),
    ("600 12 34 56", "ES", "+34600123456"),
    ("600-123-456", "es", "+34600123456"),
    ("600.123.456", " ES ", "+34600123456"),
    ("600/123/456", "ES", "+34600123456"),
    ("(+34) 600 123 456", None, "+34600123456"),
    ("0034 600 123 456", "ES", "+34600123456"),
    ("0034600123456", None, "+34600123456"),
    ("34600123456", None, "+34600123456"),
    ("34600123456", "ES", "+34600123456"),
    ("whatsapp:+34600123456", None, "+34600123456"),
    ("WhatsApp:+34600123456", None, "+34600123456"),
    ("tel:+34-600-123-456", None, "+34600123456"),
    ("sms:+34600123456", None, "+34600123456"),
    ("  +34 600 123 456\n", None, "+34600123456"),
    # Extensions never belong to the key.
    ("+34 600 123 456 ext. 12", None, "+34600123456"),
    ("+34 600 123 456 ext 12", None, "+34600123456"),
    ("+34 600 123 456 extension 7", None, "+34600123456"),
    ("+34600123456 x12", None, "+34600123456"),
    ("+34600123456x12", None, "+34600123456"),
    ("+34600123456#12", None, "+34600123456"),
    ("tel:+34600123456;ext=12", None, "+34600123456"),
    ("600 123 456, ext. 3", "ES", "+34600123456"),
    # Other scripts' digits, full-width plus, non-ASCII spaces and dashes.
    ("＋３４６００１２３４５６", None, "+34600123456"),
    ("＋３４ ６００ １２３ ４５６", None, "+34600123456"),
    ("٦٠٠١٢٣٤٥٦", "ES", "+34600123456"),  # Arabic-Indic
    ("۶۰۰۱۲۳۴۵۶", "ES", "+34600123456"),  # Extended Arabic-Indic (Persian)
    ("+३४ ६०० १२३ ४५६", None, "+34600123456"),  # Devanagari
    ("+34 ６00 1２3 ४५६", None, "+34600123456"),  # mixed scripts in one number
    ("+34\u00a0600\u00a0123\u00a0456", None, "+34600123456"),  # no-break spaces
    ("+34\u2013600\u2013123\u2013456", None, "+34600123456"),  # en dashes
    ("（６００）１２３－４５６", "ES", "+34600123456"),  # full-width parentheses and hyphen
    # Madrid landline.
    ("+34 91 123 45 67", None, "+34911234567"),
    ("91 123 45 67", "ES", "+34911234567"),
    # --- Mexico: WhatsApp's +52 1 mobile form and the old 044/045/01 prefixes collapse --------
    ("+525512345678", None, "+525512345678"),
    ("+5215512345678", None, "+525512345678"),
    ("whatsapp:+5215512345678", None, "+525512345678"),
    ("5215512345678", None, "+525512345678"),
    ("5215512345678", "MX", "+525512345678"),
    ("525512345678", None, "+525512345678"),
    ("525512345678", "MX", "+525512345678"),
    ("55 1234 5678", "MX", "+525512345678"),
    ("55-1234-5678", "mx", "+525512345678"),
    ("+52 1 55 1234 5678", None, "+525512345678"),
    ("+52 (55) 1234-5678", None, "+525512345678"),
    ("044 55 1234 5678", "MX", "+525512345678"),
    ("045 55 1234 5678", "MX", "+525512345678"),
    ("01 55 1234 5678", "MX", "+525512345678"),
    ("00 52 1 55 1234 5678", "MX", "+525512345678"),
    ("011 52 1 55 1234 5678", "US", "+525512345678"),
    ("5215512345678", "ES", "+525512345678"),  # Spanish parse fails, falls back to international
    # Guadalajara.
    ("+52 1 33 1234 5678", None, "+523312345678"),
    ("33 1234 5678", "MX", "+523312345678"),
    # --- Argentina: the 9 is stored when the input marks a mobile (+54 9, or 15), else as written
    ("+5491112345678", None, "+5491112345678"),
    ("whatsapp:+5491112345678", None, "+5491112345678"),
    ("5491112345678", None, "+5491112345678"),
    ("5491112345678", "AR", "+5491112345678"),
    ("+54 9 11 1234-5678", None, "+5491112345678"),
    ("011 15 1234-5678", "AR", "+5491112345678"),  # national mobile: trunk 0, area 11, 15
    ("11 15 1234-5678", "AR", "+5491112345678"),  # same without the trunk 0
    ("+54 11 15 1234 5678", None, "+5491112345678"),  # 15 left in an international number
    ("+54 11 1234-5678", None, "+541112345678"),  # no 9: stored as written (one match key, below)
    ("541112345678", None, "+541112345678"),
    ("011 1234-5678", "AR", "+541112345678"),  # Buenos Aires with trunk 0, not NANP's 011
    ("0351 15 412-3456", "AR", "+5493514123456"),  # Córdoba, 3-digit area code
    ("+54 351 412 3456", None, "+543514123456"),
    ("+54 9 351 412 3456", None, "+5493514123456"),
    ("0223 15 456-7890", "AR", "+5492234567890"),  # Mar del Plata
    ("+54 223 456 7890", None, "+542234567890"),
    ("0800 123 4567", "AR", "+548001234567"),  # toll-free: not geographic, no mobile twin
    ("011 34 600 123 456", "AR", "+34600123456"),  # invalid as Buenos Aires, so 011 = exit code
    ("00 34 600 123 456", "AR", "+34600123456"),
    # --- Brazil: older WhatsApp ids lack the mobile ninth digit -------------------------------
    ("+5511987654321", None, "+5511987654321"),
    ("5511987654321", None, "+5511987654321"),
    ("5511987654321", "BR", "+5511987654321"),
    ("+551187654321", None, "+5511987654321"),
    ("551187654321", None, "+5511987654321"),
    ("551187654321", "BR", "+5511987654321"),
    ("whatsapp:+551187654321", None, "+5511987654321"),
    ("(11) 98765-4321", "BR", "+5511987654321"),
    ("(11) 8765-4321", "BR", "+5511987654321"),
    ("0 21 11 98765 4321", "BR", "+5511987654321"),  # trunk 0 + carrier code 21
    ("011 98765 4321", "BR", "+5511987654321"),  # trunk 0, not NANP's 011
    ("+55 21 8765 4321", None, "+5521987654321"),  # Rio, same quirk
    ("+55 11 6345 6789", None, "+5511963456789"),  # 6 is the lowest mobile first digit
    # 8-digit landlines (first digit 2-5) are left alone.
    ("+55 11 3456 7890", None, "+551134567890"),
    ("(11) 3456-7890", "BR", "+551134567890"),
    ("+55 11 2345 6789", None, "+551123456789"),
    ("+55 11 5345 6789", None, "+551153456789"),
    # --- United States (NANP, exit code 011) --------------------------------------------------
    ("+1 202 555 0123", None, "+12025550123"),
    ("+1 (202) 555-0123", None, "+12025550123"),
    ("(202) 555-0123", "US", "+12025550123"),
    ("202.555.0123", "US", "+12025550123"),
    ("1-202-555-0123", "US", "+12025550123"),
    ("12025550123", None, "+12025550123"),
    ("12025550123", "US", "+12025550123"),
    ("+1 (202) 555-0123 x45", None, "+12025550123"),
    ("202-555-0123 ext. 45", "US", "+12025550123"),
    ("011 34 600 123 456", "US", "+34600123456"),
    ("00 34 600 123 456", "US", "+34600123456"),  # not the US exit code, but unambiguous
    ("34600123456", "US", "+34600123456"),  # invalid in the US, so read as a WhatsApp id
    # --- Colombia -----------------------------------------------------------------------------
    ("+57 300 123 4567", None, "+573001234567"),
    ("300 123 4567", "CO", "+573001234567"),
    ("573001234567", None, "+573001234567"),
    ("573001234567", "CO", "+573001234567"),
    ("009 57 300 123 4567", "CO", "+573001234567"),  # carrier exit code 009
    # phonenumbers reads "005" as a carrier exit code and gets an invalid +7 (Russia) number,
    # so the plain 00 reading wins.
    ("0057 300 123 4567", "CO", "+573001234567"),
    ("(601) 234 5678", "CO", "+576012345678"),  # Bogotá landline, 2021 plan
    ("+57 601 234 5678", None, "+576012345678"),
    # --- United Kingdom: trunk 0 --------------------------------------------------------------
    ("+44 7911 123456", None, "+447911123456"),
    ("07911 123456", "GB", "+447911123456"),
    ("07911 123 456", "gb", "+447911123456"),
    ("+44 (0) 7911 123456", None, "+447911123456"),
    ("0044 7911 123456", "GB", "+447911123456"),
    ("447911123456", None, "+447911123456"),
    ("447911123456", "GB", "+447911123456"),
    ("00 44 7911 123456", "MX", "+447911123456"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("+44 20 7946 0958", None, "+442079460958"),
    ("011 44 20 7946 0958", "US", "+442079460958"),
]

# (raw, region, reason)
INVALID_PHONES: list[tuple[str, str | None, str]] = [
    # empty
    ("", None, "empty"),
    ("   ", "ES", "empty"),
    ("\t\n", None, "empty"),
    ("whatsapp:", None, "empty"),
    ("tel: ", "ES", "empty"),
    ("", "XX", "empty"),
    # not a number: letters, stray symbols, no digits at all
    ("hello", "ES", "not a number"),
    ("hello", None, "not a number"),
    ("+", None, "not a number"),
    ("()- ", "ES", "not a number"),
    ("x12", "ES", "not a number"),  # an extension and nothing else
    ("call 600123456", "ES", "not a number"),  # no digging numbers out of free text
    ("600123456 please", "ES", "not a number"),
    ("34+600123456", None, "not a number"),
    ("*600123456", "ES", "not a number"),
    ("600123456#", "ES", "not a number"),
    ("tel:600123456;phone-context=+34", "ES", "not a number"),
    ("mailto:600123456", "ES", "not a number"),
    ("²600123456", "ES", "not a number"),  # superscript two is not a decimal digit
    # too short
    ("12", "ES", "too short"),
    ("1", "ES", "too short"),
    ("12", None, "too short"),
    ("+12", None, "too short"),
    ("+34 600 12345", None, "too short"),
    ("600 123 45", "ES", "too short"),
    ("+52 55 1234 567", None, "too short"),
    ("+52 1 55 1234", None, "too short"),
    ("555 0123", "US", "too short"),  # local-only: the area code is missing
    ("+5411", None, "too short"),
    ("011 1234-5678", None, "too short"),  # without region AR, 011 is NANP's exit code
    # too long
    ("+34 600 1234567", None, "too long"),
    ("+52 55 1234 56789", None, "too long"),
    ("+52 1 55 1234 56789", None, "too long"),
    ("+1 202 555 01234", None, "too long"),
    ("+346001234567890123456", None, "too long"),
    ("1234567890123456", None, "too long"),  # 16 digits: longer than any E.164 number
    ("34 600 123 456", "MX", "too long"),  # formatted, so not re-read as international
    ("044 55 1234 5678", "ES", "too long"),  # 044 is Mexican only
    # unknown region
    ("600123456", "XX", "unknown region"),
    ("600123456", "zz", "unknown region"),
    ("600123456", "UK", "unknown region"),  # the ISO code is GB
    ("600123456", "ESP", "unknown region"),
    ("600123456", "", "unknown region"),
    ("+34600123456", "XX", "unknown region"),  # a bad region is a caller bug even if unused
    ("600 123 456", None, "unknown region"),
    ("(11) 98765-4321", None, "unknown region"),
    ("020 7946 0958", None, "unknown region"),
    ("044 55 1234 5678", None, "unknown region"),
    ("600123456", None, "unknown region"),  # as +60... it is no Malaysian number either
    ("0600123456", None, "unknown region"),
    ("+999 123 456 789", None, "unknown region"),
    ("+0 600 123 456", None, "unknown region"),
    # invalid number: a possible length, but not an allocated range
    ("+34 000 000 000", None, "invalid number"),
    ("000 000 000", "ES", "invalid number"),
    ("+34 500 000 000", None, "invalid number"),
    ("+1 202 055 0123", None, "invalid number"),  # NANP exchanges never start with 0
    ("+57 100 123 4567", None, "invalid number"),
    ("+57 300 123 456", None, "invalid number"),
    ("+55 11 1234 5678", None, "invalid number"),  # 8 digits starting 1: neither form
    ("+55 10 98765 4321", None, "invalid number"),  # no area code 10
    ("+55 11 08765 4321", None, "invalid number"),
    ("15 1234-5678", "AR", "invalid number"),  # local mobile without its area code
    ("+54 9 11 1234 567", None, "invalid number"),
    ("+54 9 11 99 1234 5678", None, "too long"),  # 13 digits with no 15 to drop
]


@pytest.mark.parametrize(("raw", "region", "expected"), VALID_PHONES)
def test_normalize_phone(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(("raw", "region", "reason"), INVALID_PHONES)
def test_normalize_phone_rejects(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_phone(raw, region)
    assert caught.value.reason == reason
    # The caller's own text comes back, not the digits the cached core saw.
    assert caught.value.raw == raw


@pytest.mark.parametrize("expected", sorted({row[2] for row in VALID_PHONES}))
def test_keys_are_valid_e164_and_fixed_points(expected: str) -> None:
    assert re.fullmatch(r"\+[1-9]\d{6,14}", expected)
    assert phonenumbers.is_valid_number(phonenumbers.parse(expected, None))
    # Feeding a key back in (as a stored contact would be) must not move it.
    assert normalize_phone(expected) == expected
    assert normalize_phone(expected.removeprefix("+")) == expected


def test_rejection_reasons_are_the_documented_ones() -> None:
    assert {row[2] for row in INVALID_PHONES} == REASONS - {"invalid email", "invalid characters"}


def test_repeated_parses_hit_the_cache() -> None:
    normalize_phone("+34 611 22 33 44")
    before = _phone_key.cache_info().hits
    # Different spellings of one number reduce to the same cached call.
    assert normalize_phone("whatsapp:+34611223344") == "+34611223344"
    assert normalize_phone("tel:+34-611-22-33-44;ext=9") == "+34611223344"
    assert _phone_key.cache_info().hits == before + 2


VALID_EMAILS: list[tuple[str, str]] = [
    ("alice@example.com", "alice@example.com"),
    ("Alice@Example.COM", "alice@example.com"),
    ("  bob@example.org \n", "bob@example.org"),
    ("First.Last+Tag@Sub.Example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("ÅSA@Exämple.se", "åsa@exämple.se"),
    ("A@B.CO", "a@b.co"),
]

INVALID_EMAILS: list[tuple[str, str]] = [
    ("", "empty"),
    ("   ", "empty"),
    ("alice", "invalid email"),
    ("alice@", "invalid email"),
    ("@example.com", "invalid email"),
    ("alice@example", "invalid email"),
    ("alice@@example.com", "invalid email"),
    ("alice@bob@example.com", "invalid email"),
    ("alice smith@example.com", "invalid email"),
    ("alice@exa mple.com", "invalid email"),
    ("alice@example.com\tx", "invalid email"),
    ("alice@.com", "invalid email"),
    ("alice@example.", "invalid email"),
    ("alice@example..com", "invalid email"),
    ("+34600123456", "invalid email"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID_EMAILS)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), INVALID_EMAILS)
def test_normalize_email_rejects(raw: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_email(raw)
    assert caught.value.reason == reason
    assert caught.value.raw == raw


# (kind, raw, region, expected)
VALID_ADDRESSES: list[tuple[str, str, str | None, str]] = [
    ("phone", "whatsapp:+5215512345678", None, "+525512345678"),
    ("phone", "600 123 456", "ES", "+34600123456"),
    ("phone", "(11) 8765-4321", "BR", "+5511987654321"),
    ("Phone", "+34 600 123 456", None, "+34600123456"),  # kind is case-insensitive
    ("email", " Bob@Example.COM ", None, "bob@example.com"),
    ("EMAIL", "Bob@Example.com", "ES", "bob@example.com"),  # region is irrelevant to email
    ("chatwoot", "  42 ", None, "42"),
    ("calendly", "https://calendly.com/Alice ", None, "https://calendly.com/Alice"),  # case kept
    ("chatwoot", "+34 600 123 456", "ES", "+34 600 123 456"),  # opaque ids are not parsed
]

# (kind, raw, region, reason)
INVALID_ADDRESSES: list[tuple[str, str, str | None, str]] = [
    ("chatwoot", "", None, "empty"),
    ("calendly", " \t ", None, "empty"),
    ("phone", "", "ES", "empty"),
    ("phone", "hello", "ES", "not a number"),
    ("phone", "600123456", None, "unknown region"),
    ("email", "", None, "empty"),
    ("email", "nope", None, "invalid email"),
]


@pytest.mark.parametrize(("kind", "raw", "region", "expected"), VALID_ADDRESSES)
def test_normalize_address(kind: str, raw: str, region: str | None, expected: str) -> None:
    assert normalize_address(kind, raw, region) == expected


@pytest.mark.parametrize(("kind", "raw", "region", "reason"), INVALID_ADDRESSES)
def test_normalize_address_rejects(kind: str, raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_address(kind, raw, region)
    assert caught.value.reason == reason


def test_invalid_address_is_a_value_error_with_reason_and_raw() -> None:
    exc = InvalidAddress("too short", "12")
    assert isinstance(exc, ValueError)
    assert exc.reason == "too short"
    assert exc.raw == "12"
    assert str(exc) == "too short: '12'"


def test_invalid_address_survives_pickling() -> None:
    # Errors cross process boundaries (worker pools, task queues) intact.
    copy = pickle.loads(pickle.dumps(InvalidAddress("invalid number", "+34 000 000 000")))
    assert (copy.reason, copy.raw) == ("invalid number", "+34 000 000 000")


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [("email", "ana\x00@example.com", "invalid email"), ("chatwoot", "42\x00", "invalid characters"), ("calendly", "uri\x07", "invalid characters")],
)
def test_control_characters_are_refused(kind: str, raw: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalize_address(kind, raw)
    assert info.value.reason == reason
