"""Reading untrusted request bodies (JSON and forms) into values the rest of the hub can store and render.

Every HTTP edge (the REST API, the admin API, webhooks) reads its body here,
so the limits hold everywhere at once: bounded nesting, integers that fit in
64 bits, no NaN or Infinity, no NUL characters or lone surrogates (PostgreSQL
refuses both, and an email cannot carry them), and strict UTF-8. A refused
body raises `BadBody`, which names where in the document the problem is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays accepted in a JSON body."""
MAX_INT = 2**63 - 1
"""Integers outside ±MAX_INT are refused: they fit neither a BIGINT column nor most clients."""
_MAX_INT_DIGITS = 20


class BadBody(ValueError):
    """A body the hub refuses; `field` is the path of the offending value ("body" for the whole).

    `status` is 400 when the body cannot be read at all (encoding, syntax), 422 when a value is refused.
    """

    def __init__(self, field: str, reason: str, status: int = 422, error: str = "validation_failed") -> None:
        self.field = field
        self.reason = reason
        self.status = status
        self.error = error
        super().__init__(f"{field}: {reason}")


def _no_constant(name: str) -> Any:
    raise BadBody("body", f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    # Checked before int(): a number with thousands of digits is refused without being converted.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS or abs(value := int(text)) > MAX_INT:
        raise BadBody("body", "an integer is out of range (at most 2^63-1 in absolute value)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody("body", "a number is out of range")
    return value


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored or sent (NUL, lone surrogates), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (invalid Unicode)"
    return None


def check_value(value: Any, field: str = "body", depth: int = 0) -> None:
    """Raise BadBody naming the path of the first value the hub cannot keep (depth, text)."""
    if depth > MAX_DEPTH:
        raise BadBody(field, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if problem := text_problem(value):
            raise BadBody(field, problem)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            path = str(key) if field == "body" else f"{field}.{key}"
            if problem := text_problem(str(key)):
                raise BadBody(path, f"key {problem}")
            check_value(item, path, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_value(item, f"{field}[{index}]", depth + 1)


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, checked; raises BadBody."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("body", "not valid UTF-8", 400, "malformed_json") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except RecursionError:
        raise BadBody("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except BadBody:
        raise
    except json.JSONDecodeError as exc:
        raise BadBody("body", f"malformed JSON: {exc.msg} at character {exc.pos}", 400, "malformed_json") from None
    except ValueError:
        # int() refusing a huge literal (sys.set_int_max_str_digits) before our own bound sees it.
        raise BadBody("body", "a number is out of range") from None
    check_value(value)
    return value


def parse_form(raw: bytes, content_type: str) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as a dict (last value wins); raises BadBody.

    Anything else (multipart, invalid UTF-8, NUL) is refused: the vendors that
    post forms to the hub send url-encoded UTF-8.
    """
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise BadBody("body", "expected application/x-www-form-urlencoded", 400, "malformed_form")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise BadBody("body", "not valid UTF-8", 400, "malformed_form") from None
    except ValueError:
        raise BadBody("body", "too many fields", 400, "malformed_form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        for text_value, where in ((key, "body"), (value, key)):
            if problem := text_problem(text_value):
                raise BadBody(where, problem)
        form[key] = value
    return form


MAX_FORM_FIELDS = 1000
"""Most fields a form may have."""


def check_form(raw: bytes, content_type: str) -> None:
    """Raise BadBody for a form `parse_form` would refuse, without building the form (the handler parses it).

    A plain ASCII body whose percent-decoded bytes are valid UTF-8 without NUL
    is accepted outright (every field is then valid on its own: the separators
    are ASCII); anything else goes through `parse_form`, which names the field.
    """
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded" and raw.isascii() \
            and raw.count(b"&") < MAX_FORM_FIELDS:
        decoded = unquote_to_bytes(raw)
        if b"\x00" not in decoded:
            try:
                decoded.decode("utf-8")
                return
            except UnicodeDecodeError:
                pass
    parse_form(raw, content_type)
