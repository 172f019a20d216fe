"""What the console changes: retry or cancel a notification, through the outbox's own transitions."""

from __future__ import annotations

from sqlalchemy import select

from hub.core import Hub
from hub.models import Notification, utcnow
from hub.outbox import NotificationStatus, cancel, rearm
from hub.tenants import TenantInfo

RETRYABLE = (NotificationStatus.FAILED, NotificationStatus.EXPIRED, NotificationStatus.CANCELED)


class ActionRefused(Exception):
    """The action does not apply to this notification; the message says why."""


async def retry_notification(hub: Hub, tenant: TenantInfo, notification_id: int, *, by: str) -> None:
    """Send a failed, expired or canceled notification again now, with a fresh retry budget (`outbox.rearm`)."""
    async with hub.unit_of_work() as uow:
        row = await uow.session.scalar(
            select(Notification).where(Notification.id == notification_id, Notification.tenant_id == tenant.id).with_for_update()
        )
        if row is None:
            raise LookupError(notification_id)
        if row.status not in RETRYABLE:
            raise ActionRefused(f"a {row.status} notification is not retried (only failed, expired or canceled ones)")
        now = utcnow()
        if row.expires_at is not None and row.expires_at <= now:
            raise ActionRefused(f"it expired at {row.expires_at:%Y-%m-%d %H:%M} UTC: too late to send")
        rearm(row, due_at=now, expires_at=row.expires_at, reason=f"retried from the console by {by}")
        hub.wake_dispatcher(uow)


async def cancel_notification(hub: Hub, tenant: TenantInfo, notification_id: int, *, by: str) -> None:
    """Cancel a pending notification (`outbox.cancel`)."""
    async with hub.unit_of_work() as uow:
        row = await uow.session.scalar(
            select(Notification).where(Notification.id == notification_id, Notification.tenant_id == tenant.id).with_for_update()
        )
        if row is None:
            raise LookupError(notification_id)
        if not cancel(row, f"canceled from the console by {by}"):
            raise ActionRefused(f"a {row.status} notification cannot be canceled (only pending ones)")
