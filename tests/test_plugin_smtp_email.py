"""The built-in smtp_email plugin against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from icalendar import Calendar

from hub import OutboundMessage, PermanentError, TransientError
from hub.core import Hub
from hub.errors import ConfigError
from tests.conftest import DEFAULT_TENANTS, config_document, make_config, write_toml
from tests.pg import free_port
from tests.smtp_server import PASSWORD, Server

# aiosmtpd warns about AUTH without TLS; the auth tests want exactly that, on 127.0.0.1.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SENDER = "notify@clinic.example"
TO = "ana@example.com"
APPOINTMENT = {
    "id": 42,
    "start": "2025-03-03T10:00:00+01:00",
    "end": None,
    "service": "Dental cleaning",
    "location": "Calle Mayor 1, Madrid",
    "timezone": "Europe/Madrid",
    "cancel_url": "https://hub.example/a/42/cancel",
    "reschedule_url": "https://hub.example/a/42/reschedule",
}


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A plain SMTP server without TLS or AUTH, like a local relay."""
    return start_server()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and key for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def server_tls(tls_files: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


# --- the hub ---------------------------------------------------------------


def smtp_table(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": SENDER,
        "from_name": "Clínica Sol",
        "reply_to": "desk@clinic.example",
        "timeout": 5,
        "sandbox": False,
        **overrides,
    }


@asynccontextmanager
async def smtp_hub(
    database_url: str, table: dict[str, Any], *, environ: dict[str, str] | None = None, tenants: dict[str, Any] | None = None
) -> AsyncIterator[Hub]:
    instance = Hub.build(make_config(database_url, environ=environ, plugins={"smtp_email": table}, tenants=tenants))
    async with instance.running():
        yield instance


def outbound(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "tenant": "clinic",
        "to": TO,
        "body": "Your appointment is confirmed. ñ",
        "html": "<p>Your appointment is <b>confirmed</b>.</p>",
        "subject": "Appointment confirmed",
        "kind": "confirmation",
        "notification_id": 7,
        "data": {"appointment": dict(APPOINTMENT), "tenant": {"name": "Clinic"}},
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def invite_of(mail: EmailMessage) -> Any:
    """The one VEVENT of the email's invite.ics (and the calendar around it)."""
    parts = [part for part in mail.walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in mail.walk()]
    part = parts[0]
    assert part.get_filename() == "invite.ics"
    assert part.get_param("method") == "REQUEST"
    calendar = Calendar.from_ical(part.get_payload(decode=True))
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.events
    return event


def body_of(mail: EmailMessage, subtype: str) -> str:
    part = mail.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return str(part.get_content())


# --- sending -----------------------------------------------------------------


async def test_send_delivers_the_email_with_its_headers_and_parts(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        channel = instance.channels["smtp-email"]
        assert instance.channel_plugins["smtp-email"] == "smtp_email"
        assert (channel.medium, channel.address_kind, channel.sandbox) == ("email", "email", False)

        delivery = await channel.send(outbound())

    (received,) = server.mailbox.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [TO]
    mail = received.email
    assert mail["From"].addresses[0].display_name == "Clínica Sol"
    assert mail["From"].addresses[0].addr_spec == SENDER
    assert str(mail["To"]) == TO
    assert str(mail["Reply-To"]) == "desk@clinic.example"
    assert str(mail["Subject"]) == "Appointment confirmed"
    assert mail["Date"].datetime.tzinfo is not None
    assert str(mail["Message-ID"]) == "<notification-7.clinic@clinic.example>"
    assert str(mail["List-Unsubscribe"]) == f"<mailto:{SENDER}?subject=unsubscribe>"
    assert mail["List-Unsubscribe-Post"] is None
    assert mail.get_content_type() == "multipart/mixed"
    assert body_of(mail, "plain").strip() == "Your appointment is confirmed. ñ"
    assert body_of(mail, "html").strip() == "<p>Your appointment is <b>confirmed</b>.</p>"
    assert (delivery.provider_id, delivery.status) == ("<notification-7.clinic@clinic.example>", "sent")


async def test_message_id_is_stable_per_notification(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        channel = instance.channels["smtp-email"]
        first = await channel.send(outbound(kind="reminder"))
        retry = await channel.send(outbound(kind="reminder"))
        other = await channel.send(outbound(kind="reminder", notification_id=8))
        loose_a = await channel.send(outbound(kind="reminder", notification_id=None))
        loose_b = await channel.send(outbound(kind="reminder", notification_id=None))

    ids = [str(r.email["Message-ID"]) for r in server.mailbox.received]
    assert ids[0] == ids[1] == first.provider_id == retry.provider_id == "<notification-7.clinic@clinic.example>"
    assert ids[2] == other.provider_id == "<notification-8.clinic@clinic.example>"
    assert ids[3] != ids[4]
    assert ids[3].endswith("@clinic.example>") and ids[4].endswith("@clinic.example>")
    assert [loose_a.provider_id, loose_b.provider_id] == ids[3:]


async def test_confirmation_carries_a_calendar_invite(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        await instance.channels["smtp-email"].send(outbound())

    event = invite_of(server.mailbox.received[0].email)
    utc = dt.timezone.utc
    assert event.decoded("DTSTART") == dt.datetime(2025, 3, 3, 9, 0, tzinfo=utc)
    assert event.decoded("DTSTART").utcoffset() == dt.timedelta(0)
    assert event.decoded("DTEND") == dt.datetime(2025, 3, 3, 9, 30, tzinfo=utc)  # no end: 30 minutes
    assert str(event["UID"]) == "appointment-42@clinic.example"
    assert str(event["SUMMARY"]) == "Dental cleaning"
    assert str(event["LOCATION"]) == "Calle Mayor 1, Madrid"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert int(event["SEQUENCE"]) == 0
    assert str(event["ORGANIZER"]) == f"mailto:{SENDER}"
    assert str(event["ATTENDEE"]) == f"mailto:{TO}"
    description = str(event["DESCRIPTION"])
    assert "https://hub.example/a/42/reschedule" in description
    assert "https://hub.example/a/42/cancel" in description


async def test_reschedule_updates_the_same_calendar_event(sqlite_url: str, server: Server) -> None:
    moved = {**APPOINTMENT, "start": "2025-03-04T16:15:00-05:00", "end": "2025-03-04T17:00:00-05:00", "sequence": 2}
    moved.pop("service")
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        channel = instance.channels["smtp-email"]
        await channel.send(outbound())
        await channel.send(outbound(kind="reschedule", notification_id=9, data={"appointment": moved, "tenant": {"name": "Clinic"}}))

    first, second = (invite_of(r.email) for r in server.mailbox.received)
    assert str(first["UID"]) == str(second["UID"]) == "appointment-42@clinic.example"
    assert int(second["SEQUENCE"]) == 2
    assert second.decoded("DTSTART") == dt.datetime(2025, 3, 4, 21, 15, tzinfo=dt.timezone.utc)
    assert second.decoded("DTEND") == dt.datetime(2025, 3, 4, 22, 0, tzinfo=dt.timezone.utc)
    assert str(second["SUMMARY"]) == "Clinic"  # no service: the tenant's name


async def test_reminder_has_no_invite_but_keeps_given_attachments(sqlite_url: str, server: Server) -> None:
    pdf = b"%PDF-1.4 directions"
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        await instance.channels["smtp-email"].send(
            outbound(kind="reminder", attachments=[("directions.pdf", "application/pdf", pdf)])
        )

    mail = server.mailbox.received[0].email
    assert not [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "directions.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == pdf


async def test_text_only_message_is_a_single_part(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        await instance.channels["smtp-email"].send(outbound(kind="reminder", html=None))

    mail = server.mailbox.received[0].email
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().strip() == "Your appointment is confirmed. ñ"


async def test_tenant_overrides_sender_and_sandbox(sqlite_url: str, server: Server) -> None:
    tenants = {
        "clinic": DEFAULT_TENANTS["clinic"],
        "salon": {**DEFAULT_TENANTS["salon"], "plugins": {"smtp_email": {"from_address": "hola@salon.example", "from_name": "Salón"}}},
        "spa": {"name": "Spa", "plugins": {"smtp_email": {"sandbox": True}}},
    }
    async with smtp_hub(sqlite_url, smtp_table(server.port), tenants=tenants) as instance:
        channel = instance.channels["smtp-email"]
        await channel.send(outbound(tenant="clinic", kind="reminder"))
        await channel.send(outbound(tenant="salon", kind="reminder"))
        spa = await channel.send(outbound(tenant="spa", kind="reminder"))

    clinic_mail, salon_mail = (r.email for r in server.mailbox.received)
    assert clinic_mail["From"].addresses[0].addr_spec == SENDER
    assert salon_mail["From"].addresses[0].addr_spec == "hola@salon.example"
    assert str(salon_mail["Message-ID"]) == "<notification-7.salon@salon.example>"
    assert str(salon_mail["List-Unsubscribe"]) == "<mailto:hola@salon.example?subject=unsubscribe>"
    assert server.mailbox.received[1].mail_from == "hola@salon.example"
    assert spa.status == "sandboxed"
    assert len(server.mailbox.received) == 2


async def test_unsubscribe_mailto_setting(sqlite_url: str, server: Server) -> None:
    table = smtp_table(server.port, unsubscribe_mailto="unsubscribe@clinic.example")
    async with smtp_hub(sqlite_url, table) as instance:
        await instance.channels["smtp-email"].send(outbound(kind="reminder"))

    mail = server.mailbox.received[0].email
    assert str(mail["List-Unsubscribe"]) == "<mailto:unsubscribe@clinic.example?subject=unsubscribe>"


async def test_logs_carry_no_addresses_or_content(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        channel = instance.channels["smtp-email"]
        with structlog.testing.capture_logs() as logs:
            await channel.send(outbound())
            server.mailbox.rcpt_reply = "550 5.1.1 <ana@example.com> mailbox unavailable"
            with pytest.raises(PermanentError):
                await channel.send(outbound())

    assert [entry["event"] for entry in logs] == ["smtp_email_sent", "smtp_email_failed"]
    assert logs[0]["message_id"] == "<notification-7.clinic@clinic.example>"
    assert logs[1]["code"] == "550"
    text = json.dumps(logs, default=str)
    for secret in (TO, "ana@", "confirmed", "Appointment confirmed", "Dental"):
        assert secret not in text


# --- authentication and TLS --------------------------------------------------


async def test_login_uses_username_and_password_from_the_environment(
    sqlite_url: str, start_server: Callable[..., Server]
) -> None:
    server = start_server(with_auth=True)
    table = smtp_table(server.port, username="clinic-user", password={"env": "SMTP_PASSWORD"})
    async with smtp_hub(sqlite_url, table, environ={"SMTP_PASSWORD": PASSWORD}) as instance:
        channel = instance.channels["smtp-email"]
        assert PASSWORD not in repr(instance.settings_for("smtp_email"))
        delivery = await channel.send(outbound(kind="reminder"))
        health = await channel.check()

    assert delivery.status == "sent"
    assert server.mailbox.logins[:1] == [("clinic-user", PASSWORD)]
    assert server.mailbox.received[0].login == "clinic-user"
    assert health.ok, health.detail


async def test_wrong_password_is_transient(sqlite_url: str, start_server: Callable[..., Server]) -> None:
    server = start_server(with_auth=True)
    table = smtp_table(server.port, username="clinic-user", password={"env": "SMTP_PASSWORD"})
    async with smtp_hub(sqlite_url, table, environ={"SMTP_PASSWORD": "rotated-long-ago"}) as instance:
        channel = instance.channels["smtp-email"]
        with pytest.raises(TransientError) as error:
            await channel.send(outbound(kind="reminder"))
        health = await channel.check()

    assert "authentication failed" in error.value.reason
    assert error.value.code == "535"
    assert not health.ok and "authentication failed" in health.detail
    assert server.mailbox.received == []


async def test_server_that_requires_a_login_we_do_not_have_is_transient(
    sqlite_url: str, start_server: Callable[..., Server]
) -> None:
    server = start_server(with_auth=True)
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        with pytest.raises(TransientError) as error:
            await instance.channels["smtp-email"].send(outbound(kind="reminder"))
    assert error.value.code == "530"
    assert server.mailbox.received == []


async def test_starttls(sqlite_url: str, start_server: Callable[..., Server], server_tls: ssl.SSLContext) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True)
    async with smtp_hub(sqlite_url, smtp_table(server.port, security="starttls", validate_certs=False)) as instance:
        channel = instance.channels["smtp-email"]
        delivery = await channel.send(outbound(kind="reminder"))
        health = await channel.check()
    assert delivery.status == "sent"
    assert server.mailbox.received[0].tls is True
    assert health.ok, health.detail


async def test_starttls_with_an_untrusted_certificate_is_refused(
    sqlite_url: str, start_server: Callable[..., Server], server_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True)
    async with smtp_hub(sqlite_url, smtp_table(server.port, security="starttls", validate_certs=True)) as instance:
        channel = instance.channels["smtp-email"]
        with pytest.raises(TransientError):
            await channel.send(outbound(kind="reminder"))
        assert not (await channel.check()).ok
    assert server.mailbox.received == []


async def test_plain_text_to_a_server_that_requires_starttls_is_transient(
    sqlite_url: str, start_server: Callable[..., Server], server_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True)
    async with smtp_hub(sqlite_url, smtp_table(server.port, security="none")) as instance:
        with pytest.raises(TransientError) as error:
            await instance.channels["smtp-email"].send(outbound(kind="reminder"))
    assert error.value.code == "530"
    assert server.mailbox.received == []


async def test_implicit_tls(sqlite_url: str, start_server: Callable[..., Server], server_tls: ssl.SSLContext) -> None:
    server = start_server(ssl_context=server_tls)
    async with smtp_hub(sqlite_url, smtp_table(server.port, security="tls", validate_certs=False)) as instance:
        channel = instance.channels["smtp-email"]
        delivery = await channel.send(outbound(kind="reminder"))
        health = await channel.check()
    assert delivery.status == "sent"
    assert server.mailbox.received[0].tls is True
    assert health.ok, health.detail


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "code", "words"),
    [
        ("550 5.1.1 mailbox unavailable", PermanentError, "550", "mailbox unavailable"),
        ("553 5.1.3 bad destination mailbox address", PermanentError, "553", "bad destination"),
        ("451 4.3.0 try later", TransientError, "451", "try later"),
        ("452 4.2.2 mailbox full", TransientError, "452", "mailbox full"),
        ("421 4.7.0 too many connections", TransientError, "421", "too many connections"),
    ],
)
async def test_refused_recipient(
    sqlite_url: str, server: Server, reply: str, error: type[Exception], code: str, words: str
) -> None:
    server.mailbox.rcpt_reply = reply
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        with pytest.raises((PermanentError, TransientError)) as raised:
            await instance.channels["smtp-email"].send(outbound(kind="reminder"))
    assert type(raised.value) is error
    assert raised.value.code == code
    assert code in raised.value.reason and words in raised.value.reason
    assert server.mailbox.received == []


async def test_closed_port_is_transient(sqlite_url: str) -> None:
    async with smtp_hub(sqlite_url, smtp_table(free_port())) as instance:
        channel = instance.channels["smtp-email"]
        with pytest.raises(TransientError) as error:
            await channel.send(outbound(kind="reminder"))
        health = await channel.check()
    assert error.value.code == "connection"
    assert not health.ok and health.detail


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"to": "not-an-address"}, "invalid_address"),
        ({"to": "ana@example.com\r\nBcc: all@example.com"}, "invalid_address"),
        ({"subject": None}, "no_subject"),
        ({"subject": "  "}, "no_subject"),
        ({"data": {"appointment": {**APPOINTMENT, "start": "next tuesday"}}}, "bad_appointment"),
        ({"data": {"appointment": {**APPOINTMENT, "start": "2025-03-03T10:00:00", "timezone": None}}}, "bad_appointment"),
    ],
)
async def test_unsendable_message_is_permanent_and_sends_nothing(
    sqlite_url: str, server: Server, overrides: dict[str, Any], code: str
) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        with pytest.raises(PermanentError) as error:
            await instance.channels["smtp-email"].send(outbound(**overrides))
    assert error.value.code == code
    assert server.mailbox.received == []


async def test_naive_start_is_read_in_the_appointment_timezone(sqlite_url: str, server: Server) -> None:
    appointment = {**APPOINTMENT, "start": "2025-07-01T10:00:00", "timezone": "Europe/Madrid"}
    async with smtp_hub(sqlite_url, smtp_table(server.port)) as instance:
        await instance.channels["smtp-email"].send(outbound(data={"appointment": appointment}))
    event = invite_of(server.mailbox.received[0].email)
    assert event.decoded("DTSTART") == dt.datetime(2025, 7, 1, 8, 0, tzinfo=dt.timezone.utc)


# --- sandbox -----------------------------------------------------------------


async def test_sandbox_builds_but_sends_nothing(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, smtp_table(server.port, sandbox=True)) as instance:
        channel = instance.channels["smtp-email"]
        assert channel.sandbox is True
        delivery = await channel.send(outbound())
        health = await channel.check()
        # The email is still built, so a broken one fails in sandbox mode too.
        with pytest.raises(PermanentError):
            await channel.send(outbound(subject=None))

    assert (delivery.provider_id, delivery.status) == ("<notification-7.clinic@clinic.example>", "sandboxed")
    assert health.ok and "sandbox" in health.detail
    assert server.mailbox.received == []


async def test_sandbox_is_the_default(sqlite_url: str, server: Server) -> None:
    async with smtp_hub(sqlite_url, {"from_address": SENDER, "port": server.port, "host": "127.0.0.1"}) as instance:
        delivery = await instance.channels["smtp-email"].send(outbound())
    assert delivery.status == "sandboxed"
    assert server.mailbox.received == []


# --- settings and `hub plugins` ----------------------------------------------


def test_without_a_table_there_is_no_channel(sqlite_url: str) -> None:
    instance = Hub.build(make_config(sqlite_url))
    assert instance.settings_for("smtp_email") is None
    assert instance.plugins["smtp_email"].configured is False
    assert "smtp-email" not in instance.channels


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"host": "smtp.example.com"}, "plugins.smtp_email.from_address", "required key is missing"),
        ({"from_address": "nobody"}, "plugins.smtp_email.from_address", "not an email address"),
        ({"from_address": SENDER, "security": "ssl"}, "plugins.smtp_email.security", "starttls"),
        ({"from_address": SENDER, "username": "u"}, "plugins.smtp_email", "username and password go together"),
        ({"from_address": SENDER, "port": 0}, "plugins.smtp_email.port", "between 1 and 65535"),
    ],
)
def test_settings_errors_name_the_key(sqlite_url: str, table: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        Hub.build(make_config(sqlite_url, plugins={"smtp_email": table}))
    assert error.value.key == key
    assert problem in error.value.problem


def test_hub_plugins_lists_smtp_email(run_cli: Callable[..., Any], sqlite_url: str, tmp_path: Path) -> None:
    bare = write_toml(tmp_path / "bare.toml", config_document(sqlite_url))
    result = run_cli("plugins", config=bare)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("smtp_email "))
    assert "[builtin]" in line and "not configured" in line

    table = smtp_table(2525, username="clinic-user", password={"env": "SMTP_PASSWORD"})
    configured = write_toml(tmp_path / "config.toml", config_document(sqlite_url, plugins={"smtp_email": table}))
    env = {"SMTP_PASSWORD": PASSWORD}
    result = run_cli("plugins", "--json", config=configured, env=env)
    assert result.returncode == 0, result.stderr
    row = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}["smtp_email"]
    assert row["configured"] is True
    assert row["channels"] == ["smtp-email"]
    assert row["mode"] == "live"
    assert row["settings"]["password"] == "********"
    assert row["settings"]["from_address"] == SENDER
    assert PASSWORD not in result.stdout + result.stderr

    text = run_cli("plugins", config=configured, env=env)
    assert text.returncode == 0, text.stderr
    assert "smtp-email" in text.stdout and PASSWORD not in text.stdout + text.stderr
