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
    is_whatsapp_id,
    match_key,
    normalize_address,
    normalize_email,
    normalize_phone,
    normalize_whatsapp_id,
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
    ("600123456 please", "ES", "letters"),
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


# --- Numbers as people really write them: one table per class (copied from client lists,
# booking forms and chat apps), each with what must be refused and why. ----------------------

# Class -> rows of (raw, region, expected key).
WRITTEN_BY_PEOPLE: dict[str, list[tuple[str, str | None, str]]] = {
    "text around the number": [
        ("Móvil: 612 34 56 78", "ES", "+34612345678"),
        ("Tel. +34 91 123 45 67", None, "+34911234567"),
        ("cel 55 1234 5678", "MX", "+525512345678"),
        ("WhatsApp: +54 9 11 2345-6789", None, "+5491123456789"),
        ("Celular: (11) 98765-4321", "BR", "+5511987654321"),
        ("Teléfono fijo: 91 123 45 67", "ES", "+34911234567"),
        ("612 34 56 78 (móvil)", "ES", "+34612345678"),
        ("Phone: +1 (202) 555-0123 ext. 4", None, "+12025550123"),
        ("'+34612345678", None, "+34612345678"),  # a spreadsheet's text cell
        ("=+525512345678", None, "+525512345678"),  # a spreadsheet formula
        ('="+447911123456"', None, "+447911123456"),  # Excel's way to keep the + visible
        ("++34 612 345 678", None, "+34612345678"),  # a doubled key press
        ("Tel: ++52 55 1234 5678", None, "+525512345678"),
    ],
    "invisible characters": [
        ("\u202a+34 612 34 56 78\u202c", None, "+34612345678"),  # WhatsApp Desktop's copy
        ("\u2066+1 202 555 0123\u2069", None, "+12025550123"),  # isolates, from Android
        ("+34\u200b612\u200b345\u200b678", None, "+34612345678"),  # zero-width spaces
        ("\ufeff612345678", "ES", "+34612345678"),  # a byte-order mark at the start of a CSV cell
        ("\u200e+52 1 55 1234 5678\u200f", None, "+525512345678"),  # left-to-right and right-to-left marks
        ("+44\u00a07911\u202f123456", None, "+447911123456"),  # no-break and narrow no-break spaces
        ("612\u00ad345\u00ad678", "ES", "+34612345678"),  # soft hyphens
        ("\u202a(0xx21) 98765-4321\u202c", None, "+5521987654321"),
    ],
    "letters": [
        ("1-888-DENTIST", None, "+18883368478"),
        ("+1 (800) FLOWERS", None, "+18003569377"),
        ("1-800-GOT-JUNK", "US", "+18004685865"),
        ("(888) 555-PLAY", "US", "+18885557529"),
        ("1 (877) GO-DENTAL", None, "+18774633682"),
        ("1-800-MATTRESS", None, "+18006288737"),  # the letter past the tenth digit is not dialled
        ("1-800-FLOWERS", "ES", "+18003569377"),  # the leading 1 says NANP, whatever the tenant
    ],
    "legacy notations": [
        ("(0xx21) 98765-4321", "ES", "+5521987654321"),  # Brazil's carrier placeholder
        ("(0XX11) 3456-7890", None, "+551134567890"),
        ("0xx 21 8765 4321", "BR", "+5521987654321"),  # and an old 8-digit mobile
        ("Tel.: (0xx61) 99876-5432", "MX", "+5561998765432"),
        ("+54 9 261 15 555-1234", None, "+5492615551234"),  # Argentina: both mobile markers
        ("+54 9 11 15 2345-6789", None, "+5491123456789"),
        ("+54 9 341 15 555 0123", None, "+5493415550123"),
        ("54 9 223 15 456 7890", "AR", "+5492234567890"),
        ("+54 9 2966 15 45 6789", None, "+5492966456789"),  # a 4-digit area code
    ],
    "own country code without +": [
        ("4917655512345", "DE", "+4917655512345"),
        ("49 176 55512345", "DE", "+4917655512345"),
        ("4930 1234567", "DE", "+49301234567"),
        ("33 6 12 34 56 78", "FR", "+33612345678"),
        ("34 612 345 678", "ES", "+34612345678"),
        ("44 7911 123456", "GB", "+447911123456"),
        ("57 300 123 4567", "CO", "+573001234567"),
        ("39 390 704 7258", "IT", "+393907047258"),  # too long to be national: international
    ],
    "argentina as written": [
        ("+54 351 422 0000", None, "+543514220000"),  # a Córdoba landline: no 9 invented
        ("0351 422-0000", "AR", "+543514220000"),
        ("0351 15 422-0000", "AR", "+5493514220000"),  # national 15 marks a mobile
        ("+54 341 555 0123", None, "+543415550123"),  # from an SMS
        ("5493415550123", None, "+5493415550123"),  # the same person from WhatsApp
        ("cel. 11 15 2345-6789", "AR", "+5491123456789"),
    ],
}

# Class -> rows of (raw, region, reason).
REFUSED_BY_CLASS: dict[str, list[tuple[str, str | None, str]]] = {
    "text around the number": [
        ("llamar al 612345678", "ES", "not a number"),  # free text, not a label
        ("Móvil: ", "ES", "empty"),
        ("'", "ES", "empty"),
        ("Tel. abc", "ES", "not a number"),
        ("Fax: 91 123 45 67", "ES", "not a number"),  # a fax is not a way to reach a person
    ],
    "invisible characters": [
        ("\u200b\u200c", None, "empty"),
        ("\u202a\u202c", "ES", "empty"),
        ("\u202a612 34\u202c", "ES", "too short"),
        ("\u2066+34 000 000 000\u2069", None, "invalid number"),
        ("\ufeff612345678", None, "unknown region"),
    ],
    "letters": [
        ("+34 6OO 123 456", None, "letters"),  # O for 0 outside NANP: never guessed
        ("612 l23 456", "ES", "letters"),  # l for 1
        ("+52 55 I234 5678", None, "letters"),
        ("+44 7911 l23456", None, "letters"),
        ("+44 800 FLOWERS", None, "letters"),  # vanity spelling outside NANP
        ("+1 8OO 555 0123", None, "letters"),  # not in the area code either
        ("800-FLOWERS", "ES", "letters"),  # no 1 and not a NANP tenant
    ],
    "legacy notations": [
        ("(0xx1) 98765-4321", "BR", "letters"),  # the area code has two digits
        ("(0xx21) 98765", "BR", "too short"),
        ("(0xx21) 98765-43210", "BR", "too long"),  # the area code is never read as a carrier code
        ("(0xx10) 98765-4321", "BR", "invalid number"),  # no area code 10
        ("+54 9 11 15 2345-678", None, "too long"),  # a digit short once the 15 goes: no reading
        ("+54 9 261 15 555 12345", None, "too long"),
        ("+54 9 11 99 1234 5678", None, "too long"),
    ],
    "own country code without +": [
        ("3907047258", "IT", "ambiguous"),  # Italian mobile 390... or +39 0704...: both exist
        ("483055464", "PL", "ambiguous"),  # Polish 483 055 464 or +48 3055464
        ("4912", "DE", "invalid number"),
        ("34 600 123 45", "ES", "too short"),
        ("34 600 123 4567", "ES", "too long"),
    ],
}


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [pytest.param(*row, id=f"{cls}: {row[0]!r}") for cls, rows in WRITTEN_BY_PEOPLE.items() for row in rows],
)
def test_numbers_as_people_write_them(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected
    # The stored form is a fixed point, as every identity is normalised again on each link.
    assert normalize_phone(expected) == expected


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [pytest.param(*row, id=f"{cls}: {row[0]!r}") for cls, rows in REFUSED_BY_CLASS.items() for row in rows],
)
def test_numbers_that_stay_refused(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_phone(raw, region)
    assert caught.value.reason == reason
    assert caught.value.raw == raw


def test_each_class_has_five_inputs_and_refusals() -> None:
    assert set(WRITTEN_BY_PEOPLE) >= set(REFUSED_BY_CLASS)
    assert all(len(rows) >= 5 for rows in WRITTEN_BY_PEOPLE.values())
    assert all(len(rows) >= 5 for rows in REFUSED_BY_CLASS.values())


# (one stored form, another, their shared match key): the Argentine 9 does not tell people apart.
MATCH_KEYS: list[tuple[str, str, str]] = [
    ("+5493415550123", "+543415550123", "+543415550123"),
    ("+5491123456789", "+541123456789", "+541123456789"),
    ("+5492234567890", "+542234567890", "+542234567890"),
    ("+5493514220000", "+543514220000", "+543514220000"),
    ("+5492966456789", "+542966456789", "+542966456789"),
]


@pytest.mark.parametrize(("mobile", "written", "key"), MATCH_KEYS)
def test_argentine_numbers_match_with_or_without_the_9(mobile: str, written: str, key: str) -> None:
    assert match_key("phone", mobile) == match_key("phone", written) == key


@pytest.mark.parametrize("value", ["+34612345678", "+525512345678", "+5511987654321", "+548001234567", "+5491"])
def test_other_numbers_match_on_their_stored_form(value: str) -> None:
    assert match_key("phone", value) == value
    assert match_key("email", "ana@example.com") == "ana@example.com"


WHATSAPP_IDS: list[tuple[str, str]] = [
    ("US.13491208655302741918", "US.13491208655302741918"),
    ("whatsapp:BR.1502576394655843", "BR.1502576394655843"),
    ("us.ENT.11815799212886844830", "US.ENT.11815799212886844830"),  # a parent id; country code upper-cased
    ("whatsapp: MX.ab12CD34ef", "MX.ab12CD34ef"),  # the id itself is kept exactly
    (" ES.9081726354 ", "ES.9081726354"),
]

INVALID_WHATSAPP_IDS: list[tuple[str, str]] = [
    ("US.", "invalid whatsapp id"),
    ("US.abc-def", "invalid whatsapp id"),
    ("+34612345678", "invalid whatsapp id"),  # a phone number is not an id
    ("USA.123", "invalid whatsapp id"),
    ("whatsapp:", "empty"),
    ("US." + "1" * 129, "invalid whatsapp id"),
]


@pytest.mark.parametrize(("raw", "expected"), WHATSAPP_IDS)
def test_business_scoped_ids(raw: str, expected: str) -> None:
    assert normalize_whatsapp_id(raw) == expected
    assert normalize_address("whatsapp_id", raw) == expected
    assert is_whatsapp_id(raw)


@pytest.mark.parametrize(("raw", "reason"), INVALID_WHATSAPP_IDS)
def test_business_scoped_ids_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_whatsapp_id(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize("raw", ["US.13491208655302741918", "BR.1502576394655843"])
def test_a_business_scoped_id_is_not_a_phone_number(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalize_phone(raw)
    assert caught.value.reason == "letters"


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
    phone_reasons = {row[2] for row in INVALID_PHONES} | {row[2] for rows in REFUSED_BY_CLASS.values() for row in rows}
    assert phone_reasons == REASONS - {"invalid email", "invalid characters", "invalid whatsapp id"}


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
