"""Text that goes into a mail header: RFC 2047 encoded words decoded and checked before use.

A value such as `=?utf-8?q?Cita=0D=0AReply-To:_x@evil?=` looks harmless
but decodes to a line break followed by a header of the sender's choosing;
Python's email package decodes encoded words when a header is set. So a
header value is decoded here first, and refused when the decoded text
holds a line break or another control character.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_DECODING_ROUNDS = 3


class UnsafeHeader(ValueError):
    """A value that cannot be put in a mail header safely; the message says why, without quoting it."""


def header_text(value: str) -> str:
    """The plain text `value` stands for in a header, with no encoded words left; raises UnsafeHeader.

    Raw line breaks and tabs become spaces (a template's subject may wrap);
    control characters that appear only after decoding are refused.
    """
    text = re.sub(r"[\r\n\t]+", " ", value)
    for _ in range(_MAX_DECODING_ROUNDS):
        if not _ENCODED_WORD.search(text):
            break
        try:
            text = str(make_header(decode_header(text)))
        except (HeaderParseError, UnicodeError, LookupError, ValueError):
            raise UnsafeHeader("holds an RFC 2047 encoded word that cannot be decoded") from None
    else:
        raise UnsafeHeader("holds encoded words nested too deeply")
    if _CONTROL.search(text):
        raise UnsafeHeader("decodes to a line break or control character")
    return text.strip()
