"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 keeping what it receives.

`start_server` is a fixture (registered in conftest.py) so every test module that sends email can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.pg import free_port

PASSWORD = "s3cret-smtp-pass-7c1e"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: str | None

    @property
    def email(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every delivered envelope; `rcpt_reply` refuses recipients."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)
    password: str = PASSWORD

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls, login))
        return "250 Message accepted for delivery"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd itself answers a failure with 535.
        return AuthResult(success=password == self.password, handled=False, auth_data=auth_data)


@dataclass
class Server:
    port: int
    mailbox: Mailbox


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Start aiosmtpd controllers (each in its own thread) with extra SMTP options; stop them after."""
    controllers: list[Controller] = []

    def start(**smtp_options: Any) -> Server:
        mailbox = Mailbox()
        if smtp_options.pop("with_auth", False):
            smtp_options.update(authenticator=mailbox.authenticator, auth_required=True, auth_require_tls=False)
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **smtp_options)
        controller.start()
        controllers.append(controller)
        return Server(controller.port, mailbox)

    yield start
    for controller in controllers:
        controller.stop()


