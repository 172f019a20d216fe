"""Shared set-up for the console's tests: a hub with two tenants, users in each, and data to look at."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from hub.appointment_input import AppointmentInput
from hub.console.passwords import new_hasher
from hub.console.users import create_user
from hub.core import Hub
from hub.models import Notification, utcnow
from hub.notifications import NotificationRequest

PASSWORD = "correct horse battery"
CLINIC_USER = "desk@clinic.example"
SALON_USER = "desk@salon.example"
OPERATOR = "ops@hub.example"


@dataclass(frozen=True)
class Seeded:
    """Ids the tests look for."""

    ana: int
    """A clinic contact with phone +34 600 123 456 and email."""
    salon_contact: int
    failed_notification: int


async def seed(hub: Hub) -> Seeded:
    """Users for both tenants and an operator; a clinic contact with a failed notification (SMS opted out)."""
    hasher = new_hasher()
    async with hub.db.sessions.begin() as session:
        await create_user(session, hasher, email=CLINIC_USER, password=PASSWORD, role="tenant", tenant="clinic")
        await create_user(session, hasher, email=SALON_USER, password=PASSWORD, role="tenant", tenant="salon")
        await create_user(session, hasher, email=OPERATOR, password=PASSWORD, role="operator", tenant=None)
    appointment = await hub.upsert_appointment("clinic", AppointmentInput(
        source="api", external_id="visit-1", start_at=utcnow() + dt.timedelta(hours=3), status="scheduled",
        addresses=(("phone", "+34600123456"), ("email", "ana@clinic-patients.example")), contact_name="Ana García",
        service="Check-up",
    ))
    ana = appointment.appointment.contact_id
    assert ana is not None
    await hub.dispatcher.dispatch_due()  # the confirmation goes out on recorder-sms
    await hub.set_opt_out("clinic", "phone", "+34600123456", "sms", True)
    failed = await hub.notify(tenant="clinic", request=NotificationRequest(kind="reminder_note", contact_id=ana, template="message", data={"text": "see you"}))
    salon_note = await hub.notify(tenant="salon", request=NotificationRequest(kind="message", address="+5215512345678", data={"text": "hola"}))
    await hub.dispatcher.dispatch_due()
    async with hub.db.sessions() as session:
        salon = await session.scalar(select(Notification.contact_id).where(Notification.id == salon_note))
    assert salon is not None
    return Seeded(ana, salon, failed)


def csrf_of(html: str) -> str:
    """The CSRF token in a page's first form."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    """Sign in through the form; returns the response (not following the redirect)."""
    form = await client.get("/signin")
    token = csrf_of(await form.text())
    return await client.post("/signin", data={"email": email, "password": password, "csrf": token}, allow_redirects=False)
