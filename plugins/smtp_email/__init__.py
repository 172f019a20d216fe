"""Email through any SMTP server: the built-in `smtp-email` channel.

Sends each notification as one email (text, plus html when the template
has it) with stable headers, and attaches an .ics invite to confirmations
and reschedules so the appointment lands in the recipient's calendar. Works
with a provider's SMTP relay (Postmark, SES, Mailgun, Gmail Workspace) or a
local MTA.

```toml
[plugins.smtp_email]
host = "smtp.example.com"
port = 587                      # 587 for starttls, 465 for tls, 25 for a local relay
security = "starttls"           # "starttls", "tls" (implicit TLS) or "none"
username = "notifications@clinic.example"
password = {env = "SMTP_PASSWORD"}
from_address = "notifications@clinic.example"   # required: without it the plugin is not configured
from_name = "Clinic"
reply_to = "front-desk@clinic.example"
unsubscribe_mailto = "unsubscribe@clinic.example"  # default: from_address
timeout = 15                    # seconds per SMTP step
validate_certs = true
sandbox = false                 # true (the default): build every email, send none

# A tenant with its own sender and account; other keys come from the table above.
[tenants.salon.plugins.smtp_email]
from_address = "hola@salon.example"
username = "hola@salon.example"
password = {env = "SALON_SMTP_PASSWORD"}
```

What the emails carry:

- `Message-ID: <notification-<id>.<tenant>@<from domain>>`, the same on every
  retry of one notification (a random one when the message has no
  notification id);
- `List-Unsubscribe: <mailto:<unsubscribe_mailto>?subject=unsubscribe>`. No
  https link and no `List-Unsubscribe-Post` (RFC 8058 one-click): that needs
  an endpoint on the hub that unsubscribes, which does not exist yet;
- for `kind` "confirmation" or "reschedule" with `data["appointment"]`, an
  `invite.ics` (text/calendar; method=REQUEST) whose UID is
  `appointment-<id>@<from domain>`, unless `message.attachments` already
  holds a text/calendar part.

Sandbox mode builds the whole email (so a missing subject or a broken
appointment shows up) and returns its Message-ID with status "sandboxed"
without connecting. Errors: 5xx answers are permanent, 4xx answers,
connection problems and failed logins are transient (see `transport`).
Logs never carry bodies, subjects or addresses.
"""

from __future__ import annotations


import structlog

from hub import Delivery, Health, HubPort, OutboundMessage, PermanentError, TransientError, hookimpl

from .message import build_message, recipient
from .settings import Settings
from .transport import check_server, send_email

NAME = "smtp_email"


class SmtpEmailChannel:
    """The `smtp-email` channel: one SMTP connection per email, settings read per tenant."""

    name = "smtp-email"
    medium = "email"
    address_kind = "email"

    def __init__(self, hub: HubPort, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.sandbox = settings.sandbox
        self.log = structlog.get_logger("plugins.smtp_email")

    async def send(self, message: OutboundMessage) -> Delivery:
        """Build the email and hand it to the tenant's SMTP server (or only build it in sandbox mode)."""
        settings: Settings = self.hub.settings_for(NAME, message.tenant) or self.settings
        mail = build_message(message, settings)
        message_id = str(mail["Message-ID"])
        context = {"tenant": message.tenant, "notification_id": message.notification_id, "message_id": message_id}
        if settings.sandbox:
            self.log.info("smtp_email_sandboxed", **context)
            return Delivery(provider_id=message_id, status="sandboxed")
        try:
            await send_email(mail, sender=settings.from_address, recipient=recipient(message), settings=settings)
        except (TransientError, PermanentError) as exc:
            self.log.warning(
                "smtp_email_failed", **context, code=exc.code, permanent=isinstance(exc, PermanentError)
            )
            raise
        self.log.info("smtp_email_sent", **context)
        return Delivery(provider_id=message_id, status="sent")

    async def check(self) -> Health:
        """Sandbox: ok. Live: connect, EHLO, STARTTLS and login as configured, NOOP, quit."""
        if self.settings.sandbox:
            return Health(True, "sandbox: emails are built, not sent")
        problem = await check_server(self.settings)
        if problem is not None:
            return Health(False, problem)
        return Health(True, f"{self.settings.host}:{self.settings.port} answered")


@hookimpl
def register_settings() -> type[Settings]:
    return Settings


@hookimpl
def register_channels(hub: HubPort) -> list[SmtpEmailChannel]:
    settings = hub.settings_for(NAME)
    if settings is None:  # no [plugins.smtp_email] table: loaded, not configured
        return []
    return [SmtpEmailChannel(hub, settings)]
