"""The Twilio SDK's async HTTP client, made to keep what the hub needs from an error answer.

Its own module, imported on the first send: the SDK class it extends is loaded only then.
"""

from __future__ import annotations

import base64
import datetime as dt

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

from hub import TransientError

from .sending import _error_body, retry_after_seconds


class RetryingHttpClient(AsyncTwilioHttpClient):
    """The SDK's async client, but 429 and 5xx become TransientError carrying Retry-After.

    The SDK turns every error answer into an exception without its headers,
    so Retry-After would be lost; it also passes no timeout to aiohttp (which
    then waits forever) unless each call names one, and authenticates
    through an aiohttp argument that aiohttp deprecates.
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            # The same Basic header the SDK would build, without aiohttp's deprecated `auth=` argument.
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        response = await super().request(
            method, url, params=params, data=data, headers=headers, auth=None,
            timeout=timeout or self.timeout, allow_redirects=allow_redirects,
        )
        status = response.status_code
        if status == 429 or status >= 500:
            code, text = _error_body(response.text)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), dt.datetime.now(dt.UTC))
            raise TransientError(
                f"Twilio answered {status}{f' ({code})' if code else ''}: {text or 'try again later'}",
                code=str(code or status),
                retry_after=retry_after,
            )
        return response
