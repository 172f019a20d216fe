"""`hub send` and `hub notifications`: queue one notification, list the outbox."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from hub.cli import LazyChoice, with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.models import Notification


@click.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--to", "to", required=True, help="+34600123456, whatsapp:+34..., or an email address.")
@click.option("--kind", required=True, help="confirmation, reminder, cancellation, reschedule, or your own.")
@click.option("--channel", "channels", multiple=True, help="Medium or channel name; repeat for a fallback order.")
@click.option("--data", "data_json", default="{}", help="Template data as a JSON object.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the outcome.")
@with_open_hub
async def send(hub: Hub, tenant: str, to: str, kind: str, channels: tuple[str, ...], data_json: str, timeout: float) -> None:
    """Queue one notification now and wait for its outcome."""
    from sqlalchemy import select

    from hub.models import DeliveryAttempt
    from hub.notifications import NotificationRequest
    from hub.outbox import FINAL_STATUSES, NotificationStatus
    from hub.phones import InvalidAddress
    from hub.request_body import BadBody, parse_json

    try:
        data = parse_json(data_json.encode())
    except BadBody as exc:
        raise click.BadParameter(exc.reason if exc.field == "body" else f"{exc.field}: {exc.reason}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    mediums = {c.medium for c in hub.channels.values()}
    for channel in channels:
        if channel not in hub.channels and channel not in mediums:
            raise click.BadParameter(f"no channel or medium {channel!r} (have: {', '.join(sorted([*hub.channels, *mediums]))})", param_hint="--channel")
    async with hub.workers():
        try:
            notification_id = await hub.notify(
                tenant=tenant, request=NotificationRequest(kind=kind, address=to, data=data, channel_order=channels)
            )
        except InvalidAddress as exc:
            raise click.BadParameter(exc.reason, param_hint="--to") from None
        row = await _wait(hub, notification_id, timeout)
    click.echo(_describe(row))
    async with hub.db.sessions() as session:
        for attempt in (await session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == row.id).order_by(DeliveryAttempt.id))).all():
            click.echo(f"  attempt {attempt.channel}: {attempt.outcome}{' - ' + attempt.error if attempt.error else ''}")
    if row.status == NotificationStatus.SANDBOXED:
        click.echo("SANDBOX: the message was rendered and recorded, not sent (set sandbox = false on the channel's plugin to send).")
    if row.status not in FINAL_STATUSES:
        raise click.ClickException(f"notification {row.id} is still {row.status} after {timeout:g}s; it stays queued")
    if row.status in (NotificationStatus.FAILED, NotificationStatus.EXPIRED):
        raise click.exceptions.Exit(1)


async def _wait(hub: Hub, notification_id: int, timeout: float) -> Notification:
    from hub.models import Notification
    from hub.outbox import FINAL_STATUSES

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with hub.db.sessions() as session:
            row = await session.get_one(Notification, notification_id)
        if row.status in FINAL_STATUSES or loop.time() > deadline:
            return row
        await asyncio.sleep(0.05)


def _describe(row: Notification) -> str:
    parts: list[Any] = [f"notification {row.id}", row.kind, row.status.upper()]
    if row.channel:
        parts.append(f"via {row.channel}")
    if row.last_error:
        parts.append(f"({row.last_error})")
    return "  ".join(str(p) for p in parts)


def _statuses() -> tuple[str, ...]:
    from hub.outbox import STATUSES  # with the engine behind it: loaded only when a command line reads it

    return STATUSES


@click.group()
def notifications() -> None:
    """The outbox."""


@notifications.command(name="list")
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--status", type=LazyChoice(_statuses), help="Only this status.")
@click.option("--limit", default=50, show_default=True)
@with_open_hub
async def list_(hub: Hub, tenant: str, status: str | None, limit: int) -> None:
    """List a tenant's notifications, newest due first."""
    from sqlalchemy import select

    from hub.models import Notification

    info = await hub.tenants.get(tenant)
    query = select(Notification).where(Notification.tenant_id == info.id)
    if status:
        query = query.where(Notification.status == status)
    async with hub.db.sessions() as session:
        rows = (await session.scalars(query.order_by(Notification.due_at.desc(), Notification.id.desc()).limit(limit))).all()
    if not rows:
        click.echo("no notifications")
        return
    click.echo("ID\tDUE\tKIND\tSTATUS\tCHANNEL\tCONTACT\tERROR")
    for row in rows:
        click.echo(
            f"{row.id}\t{row.due_at.isoformat(timespec='seconds')}\t{row.kind}\t{row.status}\t{row.channel or '-'}"
            f"\tcontact {row.contact_id}\t{row.last_error or ''}".rstrip()
        )
