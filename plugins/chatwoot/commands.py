"""`hub chatwoot setup | sync | merges | merge --tenant T`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from hub import HubPort, run_with_hub

from .runtime import ChatwootPlugin
from .sync import ATTRIBUTES, Sync

T = TypeVar("T")

_tenant_option = click.option("--tenant", required=True, help="Tenant slug.")


def _run(body: Callable[[ChatwootPlugin, Sync], Awaitable[T]]) -> T:
    """Open the hub around an async command body; hub errors become one line and exit status 1."""
    def start(hub: HubPort) -> Awaitable[T]:
        plugin = ChatwootPlugin.of(hub)
        return body(plugin, Sync(plugin))

    return run_with_hub(start)


@click.group(name="chatwoot")
def chatwoot() -> None:
    """Chatwoot: attribute definitions, a backfill of contacts, merge proposals."""


@chatwoot.command()
@_tenant_option
@click.option("--rotate-app-key", is_flag=True, help="Make a new Dashboard App key (the old URL stops working).")
def setup(tenant: str, rotate_app_key: bool) -> None:
    """Create the contact attribute definitions (safe to run again) and print the URLs to register in Chatwoot."""

    async def body(plugin: ChatwootPlugin, sync: Sync) -> None:
        await plugin.hub.tenant(tenant)
        client = plugin.client(tenant)
        existing = {d.get("attribute_key") for d in await client.contact_attribute_definitions()}
        created = 0
        for key, name, display_type, values in ATTRIBUTES:
            if key in existing:
                continue
            definition = {
                "attribute_display_name": name, "attribute_display_type": display_type, "attribute_key": key,
                "attribute_model": 1, "attribute_description": "Kept up to date by the notification hub",
            }
            if values:
                definition["attribute_values"] = values
            await client.create_attribute_definition(definition)
            created += 1
        click.echo(f"contact attributes: {created} created, {len(ATTRIBUTES) - created} already there")
        if rotate_app_key:
            await plugin.dashboard_keys(tenant, rotate=True)
        click.echo(f"webhook URL:       {plugin.webhook_url(tenant)}")
        click.echo(f"dashboard app URL: {await plugin.dashboard_url(tenant)}")

    _run(body)


@chatwoot.command()
@_tenant_option
def sync(tenant: str) -> None:
    """Page through every Chatwoot contact, link it to its hub contact and push its context (safe to run again)."""
    from .webhooks import sender_evidence  # with aiohttp's server: not for every command line


    async def body(plugin: ChatwootPlugin, sync: Sync) -> None:
        region = (await plugin.hub.tenant(tenant)).default_region
        client = plugin.client(tenant)
        contacts, total = await client.contacts_page(1)
        linked = pushed = skipped = 0
        page = 1
        progress = click.progressbar(length=total, label="syncing Chatwoot contacts", file=sys.stderr) if sys.stderr.isatty() else None
        while contacts:
            for contact in contacts:
                evidence = sender_evidence(dict(contact), region)
                if evidence is None:
                    skipped += 1
                    continue
                contact_id = await sync.link(tenant, evidence)
                linked += 1
                pushed += await sync.push_now(tenant, contact_id)
            if progress is not None:
                progress.update(len(contacts))
            page += 1
            contacts, _ = await client.contacts_page(page)
        if progress is not None:
            progress.render_finish()
        queued = linked - pushed
        click.echo(
            f"tenant {tenant}: {linked} Chatwoot contacts linked and their context pushed"
            + (f" ({queued} queued: Chatwoot asked to wait)" if queued else "") + (f", {skipped} skipped" if skipped else "")
        )

    _run(body)


@chatwoot.command()
@_tenant_option
def merges(tenant: str) -> None:
    """List the open merge proposals: Chatwoot contacts that are one person in the hub."""

    async def body(plugin: ChatwootPlugin, sync: Sync) -> None:
        items = await sync.proposals(tenant)
        if not items:
            click.echo("no open merge proposals")
        for item in items:
            click.echo(f"keep {item['keep']}  merge {item['merge']}  hub contact {item['hub_contact']}  ({item['evidence']})")

    _run(body)


@chatwoot.command()
@_tenant_option
@click.option("--keep", type=int, required=True, help="The Chatwoot contact that stays.")
@click.option("--merge", "mergee", type=int, required=True, help="The Chatwoot contact folded into it and deleted.")
@click.option("--yes", is_flag=True, help="Confirm without asking (Chatwoot cannot undo a merge).")
def merge(tenant: str, keep: int, mergee: int, yes: bool) -> None:
    """Confirm a proposal: merge two Chatwoot contacts with Chatwoot's contact_merge (cannot be undone there)."""
    if not yes:
        click.confirm(f"Merge Chatwoot contact {mergee} into {keep}? Chatwoot cannot undo this", abort=True)

    async def body(plugin: ChatwootPlugin, sync: Sync) -> None:
        await sync.confirm_merge(tenant, keep, mergee)
        click.echo(f"merged Chatwoot contact {mergee} into {keep}")

    _run(body)
