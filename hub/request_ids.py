"""Request ids: every HTTP request gets one, every log line written while serving it carries it.

A caller's own `X-Request-Id` is kept when it is short and plain (so ids can
be followed across a proxy and the hub); otherwise the hub makes one. It is
returned in the response's `X-Request-Id`, errors included.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from hub.logs import mask_text

HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
_ACCEPTED = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# Letters only: a made-up id never looks like a phone number to the log masking.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_LENGTH = 20
_SPACE = len(_ALPHABET) ** _LENGTH


def new_request_id() -> str:
    """A fresh id: 20 letters (about 90 bits)."""
    # One draw from the system's randomness, spelled in base 23: as uniform as a letter per draw,
    # without twenty urandom calls on every request.
    number = secrets.randbelow(_SPACE)
    letters = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        letters.append(_ALPHABET[digit])
    return "".join(letters)


def request_id_for(incoming: str | None) -> str:
    """The caller's id when it is plain and would reach the logs intact, else a new one."""
    if incoming and _ACCEPTED.fullmatch(incoming) and mask_text(incoming) == incoming:
        return incoming
    return new_request_id()


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id to the logging context for the request and answer it in `X-Request-Id`."""
    request_id = request_id_for(request.headers.get(HEADER))
    request[REQUEST_ID] = request_id
    # Bound and reset by token: `bound_contextvars` would also copy the whole logging context on every request.
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[HEADER] = request_id
        raise
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    response.headers[HEADER] = request_id
    return response
