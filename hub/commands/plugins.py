"""`hub plugins` and `hub tools`: what is loaded and what it offers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel, SecretStr

from hub.cli import CliState, with_open_hub

if TYPE_CHECKING:
    from hub.core import Hub


def masked(settings: BaseModel | None) -> dict[str, Any]:
    """Settings as plain values with every secret replaced by asterisks."""
    if settings is None:
        return {}
    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "********" if value.get_secret_value() else ""
        elif isinstance(value, BaseModel):
            value = masked(value)
        shown[name] = value
    return shown


def describe(hub: Hub) -> list[dict[str, Any]]:
    """One dict per loaded plugin, as `hub plugins --json` prints it."""
    rows = []
    for name, state in hub.plugins.items():
        rows.append(
            {
                "name": name,
                "origin": state.info.origin,
                "hooks": list(state.info.hooks),
                "channels": sorted(c for c, p in hub.channel_plugins.items() if p == name),
                "configured": state.configured,
                "configured_per_tenant": [] if state.configured else hub.configured_tenants(name),
                "mode": {True: "sandbox", False: "live", None: "-"}[state.sandbox],
                "settings": masked(state.settings),
                "problem": state.problem,
            }
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
@click.pass_obj
def plugins(state: CliState, as_json: bool) -> None:
    """List loaded plugins: origin, hooks, channels, configured, sandbox or live."""
    rows = describe(state.hub())
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no plugins loaded")
    for row in rows:
        if row["configured"]:
            configured = "configured"
        elif row["configured_per_tenant"]:
            configured = f"configured per tenant ({', '.join(row['configured_per_tenant'])})"
        else:
            configured = f"not configured ({row['problem']})"
        click.echo(f"{row['name']}  [{row['origin']}]  {configured}  mode: {row['mode']}")
        click.echo(f"    hooks:    {', '.join(row['hooks']) or '-'}")
        click.echo(f"    channels: {', '.join(row['channels']) or '-'}")
        if row["settings"]:
            click.echo(f"    settings: {json.dumps(row['settings'], default=str)}")


@click.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@with_open_hub
async def tools(hub: Hub, tenant: str) -> None:
    """List the tools responders may call for a tenant."""
    await hub.tenants.get(tenant)
    for plugin, tools in await hub.hooks.call_all_named("register_tools", hub=hub, tenant=tenant):
        for tool in tools:
            click.echo(f"{tool.name}  [{plugin}]  {tool.description}")
            click.echo(f"    parameters: {json.dumps(tool.parameters, sort_keys=True)}")

