"""Normalise contact addresses into the keys that link one person's identities."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from types import MappingProxyType

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType, ValidationResult

__all__ = (
    "REASONS",
    "WHATSAPP_ID",
    "InvalidAddress",
    "is_whatsapp_id",
    "match_key",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
    "normalize_whatsapp_id",
)

# The identity kind of a WhatsApp business-scoped user id (a person who hides their number).
WHATSAPP_ID = "whatsapp_id"

# Every value InvalidAddress.reason can take; callers (the CLI) print these verbatim.
REASONS: frozenset[str] = frozenset(
    {
        "empty",
        "not a number",
        "too short",
        "too long",
        "unknown region",
        "invalid number",
        "invalid email",
        "invalid characters",
        "letters",
        "ambiguous",
        "invalid whatsapp id",
    }
)


class InvalidAddress(ValueError):
    """Raised when an address cannot be normalised; `.reason` is a short machine-friendly reason."""

    reason: str
    raw: str

    def __init__(self, reason: str, raw: str) -> None:
        # Both values go to ValueError so the exception pickles and copies intact.
        super().__init__(reason, raw)
        self.reason = reason
        self.raw = raw

    def __str__(self) -> str:
        return f"{self.reason}: {self.raw!r}"


# Vendors wrap numbers in URI-ish schemes (Twilio's "whatsapp:", RFC 3966 "tel:", "sms:").
_SCHEME = re.compile(r"^\s*(?:whatsapp|tel|sms)\s*:", re.IGNORECASE)

# Words people put before or after a number in client lists and booking forms ("Móvil:",
# "Tel.", "cel", "WhatsApp"). Only these are cut: any other word still makes it "not a number".
_LABEL_WORDS = (
    r"tel[eé]fono|telefone|telf|tel|tlf|tfno|tfn|phone|ph|mobile|mobil|mob|m[oó]vil|celular|cel|cell"
    r"|whats\s*app|wa|wpp|zap|handy|fijo|casa|home|work|trabajo|contacto|contact|n[uú]mero|n[º°o]"
)
# A label is a whole word (not the start of a longer one), maybe followed by "." or ":".
_LEADING_LABELS = re.compile(rf"^(?:(?:{_LABEL_WORDS})(?![^\W\d_])\s*[.:]{{0,2}}\s*-?\s*)+", re.IGNORECASE)
_TRAILING_LABEL = re.compile(rf"(?<![^\W\d_])\s*[(\[]?\s*(?:{_LABEL_WORDS})\.?\s*[)\]]?\s*$", re.IGNORECASE)

# Brazil's "(0xx21)": trunk 0, a placeholder for the carrier code the caller picks, area code 21.
_BR_CARRIER_PLACEHOLDER = re.compile(r"^\(?\s*0\s*xx\s*(\d{2})\s*\)?", re.IGNORECASE)

# The extension never identifies the person, so it is cut before the strict character check
# (which would otherwise reject the letters of "ext").
_EXTENSION = re.compile(
    r"(?:;\s*ext\s*=\s*|\s*,?\s*(?:ext(?:ension)?\.?|x|#)\s*)\d+\s*$",
    re.IGNORECASE,
)

# Visual grouping only; anything else ("*", a "+" after a digit) means it is not a phone
# number, and we refuse it rather than let phonenumbers dig a number out of free text.
_SEPARATOR_CHARS = frozenset("./()[]．／（）［］")

# The letters of a phone keypad (ITU E.161), for NANP vanity numbers such as 1-800-FLOWERS.
_KEYPAD: MappingProxyType[str, str] = MappingProxyType(
    {letter: str(digit) for digit, letters in
     ((2, "ABC"), (3, "DEF"), (4, "GHI"), (5, "JKL"), (6, "MNO"), (7, "PQRS"), (8, "TUV"), (9, "WXYZ"))
     for letter in letters}
)
_NANP_NATIONAL_DIGITS = 10
_NANP_AREA_DIGITS = 3

# Meta's business-scoped user id: ISO country code, "ENT" for a parent id shared by several
# portfolios, then up to 128 letters and digits, e.g. US.13491208655302741918.
_WHATSAPP_ID = re.compile(r"([A-Za-z]{2})\.(?:(ENT)\.)?([A-Za-z0-9]{1,128})", re.IGNORECASE)

# E.164 caps a full international number at 15 digits.
_E164_MAX_DIGITS = 15

# Mexico's pre-2019 national access codes (044/045 mobile, 01 long distance) prefixed the
# 10-digit number; phonenumbers' current metadata no longer strips them.
_MX_OLD_NATIONAL_PREFIX = re.compile(r"(?:044|045|01)(\d{10})")

_AR_GEOGRAPHIC_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)
# Argentina's national mobile marker: "15" after the area code (2 to 4 digits).
_AR_AREA_LENGTHS = (2, 3, 4)

_PARSE_ERROR_REASONS: MappingProxyType[int, str] = MappingProxyType(
    {
        NumberParseException.INVALID_COUNTRY_CODE: "unknown region",
        # Our own scan already rejected text that is not a number, so phonenumbers only says
        # NOT_A_NUMBER here when there are too few digits.
        NumberParseException.NOT_A_NUMBER: "too short",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }
)

_POSSIBILITY_REASONS: MappingProxyType[int, str] = MappingProxyType(
    {
        ValidationResult.IS_POSSIBLE: "invalid number",
        # A local-only number lacks its area code: the caller is missing digits.
        ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
        ValidationResult.TOO_SHORT: "too short",
        ValidationResult.TOO_LONG: "too long",
        ValidationResult.INVALID_LENGTH: "invalid number",
        ValidationResult.INVALID_COUNTRY_CODE: "unknown region",
    }
)


class _Rejected(Exception):
    """Internal: one interpretation of the digits failed for `reason`."""

    def __init__(self, reason: str, *, from_parse: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        # Parse-level failures are about the digit count itself, not about the country guess.
        self.from_parse = from_parse


def normalize_phone(raw: str, region: str | None = None) -> str:
    """Return the stored E.164 form of a phone number written in any way people and vendors write it."""
    body = raw[1:] if raw.startswith("+") else raw
    if body.isascii() and body.isdigit():
        # ASCII digits after at most one +, as vendors and API clients send numbers: there is
        # nothing to strip or scan, and this is most of the CPU of a number already cached below.
        has_plus, digits, bare = body is not raw, body, body is raw
    else:
        text = _strip_decoration(raw)
        if not text:
            raise InvalidAddress("empty", raw)
        text = _EXTENSION.sub("", text)
        placeholder = _BR_CARRIER_PLACEHOLDER.match(text)
        if placeholder is not None:
            # The notation itself is Brazilian, whatever the tenant's region; read as +55 so the area
            # code is never taken for a carrier code.
            text = "+55 " + placeholder.group(1) + text[placeholder.end():]
        has_plus, digits, bare = _scan(text, raw)
    region_code = _region_code(region, raw)
    if not digits.isdigit():
        has_plus, digits, bare = _vanity(has_plus, digits, region_code, text, raw)
    try:
        return _phone_key(digits, has_plus, bare, region_code)
    except InvalidAddress as exc:
        # The cached core only sees the digits; report the caller's own input.
        raise InvalidAddress(exc.reason, raw) from None


def normalize_email(raw: str) -> str:
    """Trim and lower-case an email address; raise InvalidAddress("invalid email") if it is not one."""
    email = raw.strip().lower()
    if not email:
        # Blank is "empty" for every kind, so callers can tell a missing address from a wrong one.
        raise InvalidAddress("empty", raw)
    local, _, domain = email.partition("@")
    if (
        not local
        or "@" not in email
        or "@" in domain
        or "." not in domain
        or any(not label for label in domain.split("."))
        or any(ch.isspace() or not ch.isprintable() for ch in email)
    ):
        raise InvalidAddress("invalid email", raw)
    return email


def is_whatsapp_id(raw: str) -> bool:
    """Whether an address (with or without `whatsapp:`) is a WhatsApp business-scoped user id, not a number."""
    return _WHATSAPP_ID.fullmatch(_SCHEME.sub("", raw, count=1).strip()) is not None


def normalize_whatsapp_id(raw: str) -> str:
    """A business-scoped user id as stored and sent back (`US.1349...`); never parsed as a phone number."""
    text = _SCHEME.sub("", raw, count=1).strip()
    if not text:
        raise InvalidAddress("empty", raw)
    found = _WHATSAPP_ID.fullmatch(text)
    if found is None:
        raise InvalidAddress("invalid whatsapp id", raw)
    country, parent, rest = found.groups()
    # Meta says to send the id back exactly as received; only the country code is case-free.
    return ".".join(filter(None, (country.upper(), parent and parent.upper(), rest)))


def normalize_address(kind: str, raw: str, region: str | None = None) -> str:
    """Normalise an address of a given identity kind: "phone" -> normalize_phone, "email" -> normalize_email, "whatsapp_id" -> normalize_whatsapp_id, anything else (e.g. "chatwoot", "calendly") -> stripped string, InvalidAddress("empty") if blank."""
    # A mis-cased kind must not silently skip phone/email normalisation and mint a second key.
    folded = kind.strip().lower()
    if folded == "phone":
        return normalize_phone(raw, region)
    if folded == "email":
        return normalize_email(raw)
    if folded == WHATSAPP_ID:
        return normalize_whatsapp_id(raw)
    value = raw.strip()
    if not value:
        raise InvalidAddress("empty", raw)
    if not value.isprintable():
        # Control characters (NUL above all) cannot be stored on PostgreSQL and are never part of an id.
        raise InvalidAddress("invalid characters", raw)
    return value


def match_key(kind: str, value: str) -> str:
    """The key two stored values of one kind must share to be one person's address.

    It equals the stored value except for Argentine numbers, whose mobile `9`
    (known from WhatsApp, unknown from a number written without it) does not
    tell two subscribers apart: `+5493415550123` and `+543415550123` share
    the key `+543415550123`.
    """
    if kind == "phone" and value.startswith("+549") and len(value) == 14:
        return "+54" + value[4:]
    return value


def _strip_decoration(raw: str) -> str:
    """The number without invisible marks, scheme, labels and spreadsheet quoting."""
    # Format characters (zero-width spaces, bidirectional marks, BOM, soft hyphens) are invisible
    # in every app, so nobody means them; WhatsApp Desktop wraps copied numbers in U+202A/U+202C.
    text = "".join(ch for ch in raw if unicodedata.category(ch) != "Cf")
    text = _SCHEME.sub("", text, count=1).strip()
    # Spreadsheets: '600... (text cell), =+34... and ="+34..." (formula cells).
    text = text.lstrip("'=").strip().strip('"').strip()
    text = _LEADING_LABELS.sub("", text)
    text = _SCHEME.sub("", text, count=1).strip()
    return _TRAILING_LABEL.sub("", text).strip()


def _scan(text: str, raw: str) -> tuple[bool, str, bool]:
    """Split text into (has a leading +, its ASCII digits and upper-case letters, it was nothing but digits)."""
    has_plus = False
    bare = True
    chars: list[str] = []
    for ch in text:
        if unicodedata.category(ch) == "Nd":
            # Any script's decimal digits (full-width, Arabic-Indic, Devanagari...) mean the same.
            chars.append(str(unicodedata.digit(ch)))
        elif ch in "+＋" and not chars:
            # "++34..." is a doubled key press, not a second number.
            has_plus = True
        elif ch.isascii() and ch.isalpha():
            chars.append(ch.upper())
        elif ch.isspace() or ch in _SEPARATOR_CHARS or unicodedata.category(ch) == "Pd":
            bare = False
        else:
            raise InvalidAddress("not a number", raw)
    digits = "".join(chars)
    if not any(ch.isdigit() for ch in digits):
        raise InvalidAddress("not a number", raw)
    return has_plus, digits, bare and not has_plus


def _vanity(has_plus: bool, chars: str, region: str | None, text: str, raw: str) -> tuple[bool, str, bool]:
    """Letters in a NANP number after its area code are keypad digits (1-888-DENTIST); elsewhere refused."""
    # A leading 1 is NANP's country code whatever the tenant's region: no other plan spells numbers.
    nanp = chars.startswith("1") or (not has_plus and _nanp(region))
    national = chars[1:] if chars.startswith("1") else chars
    tail = national[_NANP_NATIONAL_DIGITS:]
    if (
        not nanp
        or not national[:_NANP_AREA_DIGITS].isdigit()
        or len(national) < _NANP_NATIONAL_DIGITS
        # Vanity words may run past the last digit (1-800-MATTRESS): those letters are not dialled.
        or (tail and not tail.isalpha())
    ):
        # Words before the number ("call 600...") are text around it; letters in or after it are
        # typos for digits (6OO for 600) or a vanity spelling outside NANP, which we do not guess at.
        first_digit = next(i for i, ch in enumerate(text) if unicodedata.category(ch) == "Nd")
        words = any(token.isalpha() for token in text[:first_digit].split())
        raise InvalidAddress("not a number" if words else "letters", raw)
    digits = "".join(_KEYPAD.get(ch, ch) for ch in national[:_NANP_NATIONAL_DIGITS])
    return True, "1" + digits, False


def _nanp(region: str | None) -> bool:
    return region is not None and phonenumbers.country_code_for_region(region) == 1


def _region_code(region: str | None, raw: str) -> str | None:
    """Upper-case an ISO 3166 alpha-2 region, rejecting ones phonenumbers has no metadata for."""
    if region is None:
        return None
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidAddress("unknown region", raw)
    return code


@lru_cache(maxsize=65536)
def _phone_key(digits: str, has_plus: bool, bare: bool, region: str | None) -> str:
    """Pure core of normalize_phone, cached because every inbound message goes through it."""
    if has_plus:
        interpretations: list[tuple[str, str | None]] = [("+" + digits, None)]
        implicit_international = False
    else:
        interpretations = []
        after_exit_code = _after_exit_code(digits)
        if region is not None:
            national = digits
            if region == "MX":
                old = _MX_OLD_NATIONAL_PREFIX.fullmatch(digits)
                national = old.group(1) if old else digits
            own = _own_country_code(digits, national, region) if after_exit_code is None else None
            if own is not None:
                return own
            interpretations.append((national, region))
        # Region first: in Argentina "011 ..." is Buenos Aires with trunk 0, not the NANP exit code.
        if after_exit_code is not None:
            interpretations.append(("+" + after_exit_code, None))
        elif bare:
            # WhatsApp ids are international numbers written without the "+".
            interpretations.append(("+" + digits, None))
        if not interpretations:
            # A formatted national number and no region: it cannot be placed in any country.
            raise InvalidAddress("unknown region", digits)
        implicit_international = region is None and after_exit_code is None

    failures: list[_Rejected] = []
    for text, parse_region in interpretations:
        try:
            return _key(text, parse_region)
        except _Rejected as exc:
            failures.append(exc)
    # The first interpretation is the one the caller asked for (their region), so its reason
    # is the one that explains the failure.
    first_failure = failures[0]
    reason = first_failure.reason
    if implicit_international and not first_failure.from_parse:
        # We only guessed "international"; blaming the guessed country's length rules (a
        # Spanish 600123456 read as Malaysian +60...) would mislead, the region is what's missing.
        reason = "too long" if len(digits) > _E164_MAX_DIGITS else "unknown region"
    raise InvalidAddress(reason, digits)


def _own_country_code(digits: str, national: str, region: str) -> str | None:
    """The key when the digits start with the region's own country code and only that reading is a
    number (4917655512345 in Germany); None to go on with the usual readings."""
    code = str(phonenumbers.country_code_for_region(region))
    if not digits.startswith(code) or len(digits) - len(code) < 4:
        return None
    try:
        international = _key("+" + digits, None)
    except _Rejected:
        return None
    try:
        domestic = _key(national, region)
    except _Rejected:
        return international
    if domestic == international:
        return international
    prefix = phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix  # type: ignore[union-attr]
    if prefix and not digits.startswith(prefix):
        # Where national numbers are dialled with a trunk prefix, one written without it is not
        # national: the leading digits are the country code.
        return international
    raise InvalidAddress("ambiguous", digits)


def _key(text: str, region: str | None) -> str:
    """Parse one interpretation and return its quirk-adjusted E.164 key, or raise _Rejected."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        reason = _PARSE_ERROR_REASONS.get(exc.error_type, "not a number")
        raise _Rejected(reason, from_parse=True) from None

    cc = number.country_code
    nsn = phonenumbers.national_significant_number(number)

    if cc == 52 and len(nsn) == 11 and nsn.startswith("1"):
        # WhatsApp still sends Mexican mobiles as +52 1 + 10 digits; Mexico dropped that "1" in
        # 2019 and phonenumbers now calls the 1-form invalid, so the 10-digit form is the key.
        number = PhoneNumber(country_code=52, national_number=int(nsn[1:]))
    elif cc == 55 and len(nsn) == 10 and nsn[0] != "0" and nsn[2] in "6789":
        # Brazil prefixed every mobile with a ninth digit 9 (2012-2016); older WhatsApp accounts
        # still report the 8-digit form. 8-digit subscribers starting 2-5 are landlines and stay.
        number = PhoneNumber(country_code=55, national_number=int(nsn[:2] + "9" + nsn[2:]))
    elif cc == 54:
        argentine = _ar_key(nsn)
        if argentine is not None:
            return argentine

    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    possibility = phonenumbers.is_possible_number_with_reason(number)
    raise _Rejected(_POSSIBILITY_REASONS.get(possibility, "invalid number"), from_parse=False)


def _ar_key(nsn: str) -> str | None:
    """The stored form of an Argentine geographic number: +54 9 + 10 digits when the input marked a
    mobile (`+54 9`, or `15` which phonenumbers turns into the 9), +54 + 10 digits as written
    otherwise; None for a number that is not geographic (0800 toll-free...)."""
    if len(nsn) == 13 and nsn[0] == "9":
        # Both mobile markers at once (+54 9 261 15 555-1234): the 15 after the area code is redundant.
        return _ar_without_15(nsn)
    ten = _ar_ten_digits(nsn)
    if ten is None:
        return None
    mobile = PhoneNumber(country_code=54, national_number=int("9" + ten))
    fixed = PhoneNumber(country_code=54, national_number=int(ten))
    # Fixed and mobile numbers share one 10-digit plan, so one 10-digit number is one subscriber.
    # Validity is checked on whichever form phonenumbers knows (mobile ranges exist only with the 9).
    if not (phonenumbers.is_valid_number(mobile) or phonenumbers.number_type(fixed) in _AR_GEOGRAPHIC_TYPES):
        return None
    return ("+549" if len(nsn) == 11 else "+54") + ten


def _ar_without_15(nsn: str) -> str:
    """+54 9 + the 10 digits left when the "15" after the area code is dropped; raises when no area
    code length gives a valid mobile (too long) or more than one does (ambiguous)."""
    found = set()
    for length in _AR_AREA_LENGTHS:
        if nsn[1 + length:3 + length] == "15":
            ten = nsn[1:1 + length] + nsn[3 + length:]
            if phonenumbers.is_valid_number(PhoneNumber(country_code=54, national_number=int("9" + ten))):
                found.add("+549" + ten)
    if len(found) > 1:
        raise InvalidAddress("ambiguous", nsn)
    if not found:
        raise _Rejected("too long", from_parse=False)
    return found.pop()


def _after_exit_code(digits: str) -> str | None:
    """The digits after a leading 00 (most of the world) or 011 (NANP) exit code, if any."""
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("011"):
        return digits[3:]
    return None


def _ar_ten_digits(nsn: str) -> str | None:
    """The 10 national significant digits of an Argentine number, without its mobile 9."""
    # Argentine area codes never start with 0 or 9, so a leading 9 is always the mobile marker.
    if len(nsn) == 11 and nsn[0] == "9" and nsn[1] not in "09":
        return nsn[1:]
    if len(nsn) == 10 and nsn[0] not in "09":
        return nsn
    return None
