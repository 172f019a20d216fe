"""The "webhook" channel: posts a signed delivery of an outbound webhook (hub.outbound_webhooks) to its URL.

The dispatcher treats it like any channel: a 2xx is `sent`; a timeout, a
connection error or any other status is a transient failure, retried with
backoff until the tenant's `max_attempts`, then the delivery is `failed`
(dead-lettered); 410 Gone fails it at once.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy import select

from hub.channels import Delivery, Health, OutboundMessage
from hub.errors import PermanentError, TransientError
from hub.models import WebhookSubscription
from hub.outbound_webhooks import EVENT_HEADER, ID_HEADER, KIND, SECRET_CONTEXT, SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from hub.core import Hub

TIMEOUT_SECONDS = 10.0


class WebhookChannel:
    """Delivers outbound webhooks; registered by the core, not by a plugin."""

    name = KIND
    medium = KIND
    address_kind = KIND
    sandbox = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def send(self, message: OutboundMessage) -> Delivery:
        """POST the delivery's envelope, signed, to the subscription's URL."""
        async with self.hub.db.sessions() as session:
            row = await session.scalar(
                select(WebhookSubscription).where(WebhookSubscription.id == int(message.to), WebhookSubscription.disabled_at.is_(None))
            )
        if row is None:
            raise PermanentError(f"subscription {message.to} is gone or disabled")
        envelope = message.data.get("envelope")
        if not isinstance(envelope, dict):
            raise PermanentError("delivery has no envelope")
        secret = self.hub.tenant_settings.keyring.decrypt(row.secret, SECRET_CONTEXT)
        body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "notification-hub-webhooks/1",
            ID_HEADER: str(envelope.get("id", "")),
            EVENT_HEADER: str(envelope.get("type", "")),
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        }
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as client:
                async with client.post(row.url, data=body, headers=headers, allow_redirects=False) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"POST failed: {type(exc).__name__}") from None
        if 200 <= status < 300:
            return Delivery(provider_id=str(envelope.get("id", "")) or None)
        if status == 410:
            raise PermanentError("the receiver answered 410 Gone")
        raise TransientError(f"the receiver answered {status}", retry_after=float(retry_after) if retry_after.isdigit() else None)

    async def check(self) -> Health:
        """Nothing to check ahead: each delivery reports its own outcome."""
        return Health(True, "", required=False)
