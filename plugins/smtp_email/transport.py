"""Talking to the SMTP server with aiosmtplib, and what its errors mean for the hub.

Error mapping (PermanentError falls through to the next channel,
TransientError is retried later):

- a 5xx answer (recipient, sender or data refused, e.g. 550 mailbox
  unavailable) -> PermanentError with the code and the server's text;
- a 4xx answer (421, 450, 451, 452) -> TransientError;
- authentication failures (SMTPAuthenticationError, or 530 "authentication
  required" / "STARTTLS first") -> TransientError: a rotated password is fixed by the operator,
  and the mail should wait for that rather than be dropped;
- connection errors, timeouts, TLS failures and anything else aiosmtplib
  raises -> TransientError.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from hub import ChannelError, PermanentError, TransientError

from .settings import Settings

AUTH_REQUIRED = 530


def _connection(settings: Settings) -> dict[str, object]:
    """The aiosmtplib keyword arguments for server, account and security."""
    return {
        "hostname": settings.host,
        "port": settings.port,
        "username": settings.username,
        "password": settings.password.get_secret_value() if settings.password is not None else None,
        "use_tls": settings.security == "tls",
        # True requires STARTTLS (a server without it fails the send); False never tries it.
        "start_tls": settings.security == "starttls",
        "timeout": settings.timeout,
        "validate_certs": settings.validate_certs,
    }


async def send_email(mail: EmailMessage, *, sender: str, recipient: str, settings: Settings) -> None:
    """Hand one email to the server; raise TransientError or PermanentError on failure."""
    import aiosmtplib  # loaded when mail is sent, not with the plugin

    try:
        await aiosmtplib.send(mail, sender=sender, recipients=[recipient], **_connection(settings))  # type: ignore[arg-type]
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise classify(exc) from exc


def _response_error(code: int, text: str, stage: str) -> ChannelError:
    reason = f"{stage}: {code} {text.strip()}".strip()
    if code == AUTH_REQUIRED:
        # "Authentication required" or "Must issue a STARTTLS command first": the settings need fixing.
        return TransientError(
            f"authentication failed: the server wants a login or TLS first ({code} {text.strip()})", code=str(code)
        )
    if 400 <= code < 500:
        return TransientError(reason, code=str(code))
    if 500 <= code < 600:
        return PermanentError(reason, code=str(code))
    return TransientError(reason, code=str(code))


def classify(exc: BaseException) -> ChannelError:
    """The hub error an aiosmtplib (or network) exception stands for."""
    import aiosmtplib  # loaded when mail is sent, not with the plugin

    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return TransientError(
            f"authentication failed: {exc.code} {exc.message.strip()} (check username and password)", code=str(exc.code)
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # One recipient per email: its refusal is the answer. Any 5xx among several is permanent.
        refusals = exc.recipients
        worst = next((r for r in refusals if 500 <= r.code < 600), refusals[0] if refusals else None)
        if worst is None:
            return TransientError("recipient refused without a reason")
        return _response_error(worst.code, worst.message, "recipient refused")
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _response_error(exc.code, exc.message, "recipient refused")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _response_error(exc.code, exc.message, "sender refused")
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _response_error(exc.code, exc.message, "message refused")
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
        # A server that will not talk now (554 at the greeting, a refused EHLO) may talk later.
        return TransientError(f"server unavailable: {exc.code} {exc.message.strip()}", code=str(exc.code))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc.code, exc.message, "server answered")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return TransientError(f"timed out: {type(exc).__name__}", code="timeout")
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return TransientError(f"cannot reach the SMTP server: {type(exc).__name__}: {exc}", code="connection")
    return TransientError(f"unexpected error while sending: {type(exc).__name__}", code="unexpected")


async def check_server(settings: Settings) -> str | None:
    """Connect, greet (STARTTLS and login as configured), NOOP and quit; None when all went well, else why not."""
    import aiosmtplib

    client = aiosmtplib.SMTP(**_connection(settings))  # type: ignore[arg-type]
    try:
        async with client:
            await client.noop()
    except Exception as exc:  # a health check reports, it never raises
        return classify(exc).reason
    return None
