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
    "InvalidAddress",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
)

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

# The extension never identifies the person, so it is cut before the strict character check
# (which would otherwise reject the letters of "ext").
_EXTENSION = re.compile(
    r"(?:;\s*ext\s*=\s*|\s*,?\s*(?:ext(?:ension)?\.?|x|#)\s*)\d+\s*$",
    re.IGNORECASE,
)

# Visual grouping only; anything else (letters, "*", a second "+") means it is not a phone
# number, and we refuse it rather than let phonenumbers dig a number out of free text.
_SEPARATOR_CHARS = frozenset("./()[]．／（）［］")

# E.164 caps a full international number at 15 digits.
_E164_MAX_DIGITS = 15

# Mexico's pre-2019 national access codes (044/045 mobile, 01 long distance) prefixed the
# 10-digit number; phonenumbers' current metadata no longer strips them.
_MX_OLD_NATIONAL_PREFIX = re.compile(r"(?:044|045|01)(\d{10})")

_AR_GEOGRAPHIC_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)

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
    """Return the canonical E.164 key for a phone number in any form vendors send."""
    text = _SCHEME.sub("", raw, count=1).strip()
    if not text:
        raise InvalidAddress("empty", raw)
    text = _EXTENSION.sub("", text)
    has_plus, digits, bare = _scan(text, raw)
    region_code = _region_code(region, raw)
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


def normalize_address(kind: str, raw: str, region: str | None = None) -> str:
    """Normalise an address of a given identity kind: "phone" -> normalize_phone, "email" -> normalize_email, anything else (e.g. "chatwoot", "calendly") -> stripped string, InvalidAddress("empty") if blank."""
    # A mis-cased kind must not silently skip phone/email normalisation and mint a second key.
    folded = kind.strip().lower()
    if folded == "phone":
        return normalize_phone(raw, region)
    if folded == "email":
        return normalize_email(raw)
    value = raw.strip()
    if not value:
        raise InvalidAddress("empty", raw)
    if not value.isprintable():
        # Control characters (NUL above all) cannot be stored on PostgreSQL and are never part of an id.
        raise InvalidAddress("invalid characters", raw)
    return value


def _scan(text: str, raw: str) -> tuple[bool, str, bool]:
    """Split text into (has a leading +, its ASCII digits, it was nothing but digits)."""
    has_plus = False
    bare = True
    digits: list[str] = []
    for ch in text:
        if unicodedata.category(ch) == "Nd":
            # Any script's decimal digits (full-width, Arabic-Indic, Devanagari...) mean the same.
            digits.append(str(unicodedata.digit(ch)))
        elif ch in "+＋" and not has_plus and not digits:
            has_plus = True
        elif ch.isspace() or ch in _SEPARATOR_CHARS or unicodedata.category(ch) == "Pd":
            bare = False
        else:
            raise InvalidAddress("not a number", raw)
    if not digits:
        raise InvalidAddress("not a number", raw)
    return has_plus, "".join(digits), bare and not has_plus


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
        if region is not None:
            national = digits
            if region == "MX":
                old = _MX_OLD_NATIONAL_PREFIX.fullmatch(digits)
                national = old.group(1) if old else digits
            interpretations.append((national, region))
        # Region first: in Argentina "011 ..." is Buenos Aires with trunk 0, not the NANP exit code.
        after_exit_code = _after_exit_code(digits)
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
        ten = _ar_ten_digits(nsn)
        if ten is not None:
            mobile = PhoneNumber(country_code=54, national_number=int("9" + ten))
            fixed = PhoneNumber(country_code=54, national_number=int(ten))
            # Argentina's fixed and mobile numbers share one 10-digit plan, so one 10-digit
            # number is one subscriber; the "9" only tells a caller abroad it is a mobile, and
            # WhatsApp always uses the 9 form, so that is the key. Validity is checked on
            # whichever form phonenumbers knows (mobile ranges only exist with the 9).
            if phonenumbers.is_valid_number(mobile) or (
                phonenumbers.number_type(fixed) in _AR_GEOGRAPHIC_TYPES
            ):
                return "+549" + ten
            # Not a geographic number (0800 toll-free, 0810...): no mobile twin, keep it as is.

    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    possibility = phonenumbers.is_possible_number_with_reason(number)
    raise _Rejected(_POSSIBILITY_REASONS.get(possibility, "invalid number"), from_parse=False)


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
