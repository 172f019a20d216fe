"""`hub tenants`: create tenants, issue their API keys, configure and show their plugin settings."""

from __future__ import annotations

import datetime as dt
import json
from types import UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import click
from pydantic import BaseModel, SecretStr, ValidationError

from hub.cli import CliState, run, with_open_hub
from hub.config import TenantSettings, slug_problem

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.tenant_settings import PluginView

# The database side (SQLAlchemy, models, the settings store) is imported in the commands that use it:
# `hub --help` and every other command load this module.


@click.group()
def tenants() -> None:
    """Tenants, their API keys and their plugin settings."""


@tenants.command()
@click.argument("slug")
@click.option("--name", default="", help="Display name (default: the slug).")
@click.option("--region", default="ES", show_default=True, help="Default phone region (ISO 3166).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--locale", default="en", show_default=True)
@with_open_hub
async def create(hub: Hub, slug: str, name: str, region: str, timezone: str, locale: str) -> None:
    """Create a tenant and print a new API key (shown once, stored hashed)."""
    from sqlalchemy import select

    from hub.models import Tenant
    from hub.tenants import issue_api_key, upsert_tenant

    if problem := slug_problem(slug):
        raise click.BadParameter(problem, param_hint="SLUG")
    try:
        settings = TenantSettings(name=name or slug, default_region=region, timezone=timezone, locale=locale)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = {"default_region": "region"}.get(str(error["loc"][0]), str(error["loc"][0]))
        raise click.BadParameter(error["msg"].removeprefix("Value error, "), param_hint=f"--{option}") from None
    async with hub.db.sessions.begin() as session:
        if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise click.ClickException(f"tenant {slug!r} already exists (use `hub tenants key {slug}` for a new key)")
        info, _ = await upsert_tenant(session, slug, settings)
        key = await issue_api_key(session, info.id)
    click.echo(f"created tenant {slug} ({info.default_region}, {info.timezone}, {info.locale})", err=True)
    click.echo(f"API key (shown once): {key}", err=True)
    click.echo(key)


@tenants.command()
@click.argument("slug")
@click.option("--name", default=None, help="Who or what holds the key (shown by `hub tenants keys list`).")
@click.option("--expires-in", "expires_in", type=click.IntRange(1, 3650), default=None, metavar="DAYS",
              help="Refuse the key after this many days (default: until revoked).")
@with_open_hub
async def key(hub: Hub, slug: str, name: str | None, expires_in: int | None) -> None:
    """Issue another API key for an existing tenant (each run mints a new one: keep it, list and revoke old ones)."""
    from hub.models import utcnow
    from hub.tenants import issue_api_key

    info = await hub.tenants.get(slug)
    expires_at = utcnow() + dt.timedelta(days=expires_in) if expires_in else None
    async with hub.db.sessions.begin() as session:
        new_key = await issue_api_key(session, info.id, name=name, expires_at=expires_at)
    click.echo(f"API key for {slug} (shown once; `hub tenants keys revoke {slug} {new_key[:12]}` revokes it)", err=True)
    click.echo(new_key)


@tenants.group()
def keys() -> None:
    """A tenant's API keys: list them (prefix, created, last used, expiry) and revoke them."""


@keys.command(name="list")
@click.argument("slug")
@with_open_hub
async def keys_list(hub: Hub, slug: str) -> None:
    """List the tenant's API keys by prefix (the keys themselves are stored hashed)."""
    from hub.models import utcnow
    from hub.tenants import list_api_keys

    info = await hub.tenants.get(slug)
    async with hub.db.sessions() as session:
        found = await list_api_keys(session, info.id)
    now = utcnow()

    def when(moment: dt.datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    click.echo("PREFIX\tSTATE\tCREATED\tLAST USED\tEXPIRES\tNAME")
    for item in found:
        click.echo(f"{item.prefix}\t{item.state(now)}\t{when(item.created_at)}\t{when(item.last_used_at)}\t{when(item.expires_at)}\t{item.name or '-'}")


@keys.command(name="revoke")
@click.argument("slug")
@click.argument("prefix")
@with_open_hub
async def keys_revoke(hub: Hub, slug: str, prefix: str) -> None:
    """Revoke the tenant's API key with this prefix (as `hub tenants keys list` shows it); it is refused at once."""
    from hub.tenants import revoke_api_key

    info = await hub.tenants.get(slug)
    try:
        async with hub.db.sessions.begin() as session:
            count = await revoke_api_key(session, info.id, prefix)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not count:
        raise click.ClickException(f"no active API key of {slug} with prefix {prefix!r} (see `hub tenants keys list {slug}`)")
    click.echo(f"revoked API key {prefix} of {slug}")


@tenants.command(name="list")
@with_open_hub
async def list_(hub: Hub) -> None:
    """List tenants."""
    for info in await hub.tenants.all():
        click.echo(f"{info.slug}\t{info.name}\t{info.default_region}\t{info.timezone}\t{info.locale}")


# --- plugin settings ---------------------------------------------------------------


class BadSetting(click.ClickException):
    """A key or value a plugin refuses: one line naming plugin and key, exit status 2, nothing stored."""

    exit_code = 2


def _text_only(annotation: Any) -> bool:
    """Whether a field takes text and nothing else (its value is kept exactly as typed)."""
    if annotation in (str, SecretStr):
        return True
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    return get_origin(annotation) in (Union, UnionType) and bool(args) and all(_text_only(arg) for arg in args)


def parse_value(annotation: Any, raw: str) -> Any:
    """A command-line value: text fields as typed; else true/false, numbers, null, JSON lists and tables, or text."""
    if _text_only(annotation):
        return raw
    word = raw.strip()
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    if word.lower() == "null":
        return None
    for number in (int, float):
        try:
            return number(word)
        except ValueError:
            pass
    if word[:1] in ("[", "{", '"'):
        try:
            return json.loads(word)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    return raw


def parse_assignments(model: type[BaseModel], plugin: str, items: tuple[str, ...], environ: dict[str, str]) -> dict[str, Any]:
    """`key=value` arguments as a table; `key=@env:NAME` takes the value from an environment variable."""
    from hub.tenant_settings import SettingsProblem

    table: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsProblem(plugin, item, "expected key=value")
        if key not in model.model_fields:
            raise SettingsProblem(plugin, key, "unknown key")
        if raw.startswith("@env:"):
            name = raw.removeprefix("@env:")
            if name not in environ:
                raise SettingsProblem(plugin, key, f"environment variable {name} is not set")
            raw = environ[name]
        try:
            table[key] = parse_value(model.model_fields[key].annotation, raw)
        except ValueError as exc:
            raise SettingsProblem(plugin, key, str(exc)) from None
    return table


def _print_view(view: PluginView) -> None:
    state = "configured" if view.configured else f"not configured ({view.problem or 'no settings'})"
    click.echo(f"plugin {view.plugin}: {state}")
    width = max((len(s.key) for s in view.settings), default=0)
    for setting in view.settings:
        value = json.dumps(setting.value, ensure_ascii=False, default=str)
        click.echo(f"  {setting.key:<{width}}  {value}  [{setting.source}]")


@tenants.command()
@click.argument("slug")
@click.argument("plugin")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove the tenant's stored value (config.toml or the default applies again).")
@click.pass_obj
def configure(state: CliState, slug: str, plugin: str, assignments: tuple[str, ...], unset: tuple[str, ...]) -> None:
    """Set a tenant's settings for a plugin, checked by the plugin's settings model; running hubs pick them up.

    Values: true/false, numbers, null, JSON for lists and tables ('["a","b"]',
    '{"es": {...}}'), anything else as text; text fields keep the text as
    typed. KEY=@env:NAME reads the value from an environment variable, which
    keeps a secret out of your shell history. Secret keys are stored encrypted.
    """
    from hub.tenant_settings import SettingsProblem, UnknownPlugin

    if not assignments and not unset:
        raise click.UsageError("give at least one KEY=VALUE or --unset KEY")
    hub = state.hub()

    async def body() -> PluginView:
        async with hub.running():
            store = hub.tenant_settings
            try:
                model = store.model_for(plugin)
                changes = parse_assignments(model, plugin, assignments, state.environ)
                return await store.configure(slug, plugin, changes, unset)
            except (SettingsProblem, UnknownPlugin) as exc:
                raise BadSetting(str(exc)) from None

    view = run(body())
    changed = ", ".join([*(a.partition("=")[0].strip() for a in assignments), *(f"-{k}" for k in unset)])
    click.echo(f"configured {plugin} for tenant {slug}: {changed}", err=True)
    _print_view(view)


@tenants.command()
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@with_open_hub
async def show(hub: Hub, slug: str, as_json: bool) -> None:
    """Show a tenant and every plugin's effective settings (secrets masked), with where each value comes from."""
    info = await hub.tenants.get(slug)
    source = hub.config.path if slug in hub.config.tenants else "database"
    fields = info.model_dump(exclude={"id"})
    views = await hub.tenant_settings.views(slug)
    if as_json:
        click.echo(json.dumps({"tenant": {**fields, "source": source}, "plugins": [v.as_json() for v in views]}, ensure_ascii=False, default=str))
        return
    click.echo(f"tenant {slug}  [{source}]")
    for key, value in fields.items():
        shown = ", ".join(value) if isinstance(value, tuple | list) else ("-" if value is None else value)
        click.echo(f"  {key:<14}  {shown}")
    for view in views:
        _print_view(view)


@tenants.command(name="rotate-key")
@with_open_hub
async def rotate_key(hub: Hub) -> None:
    """Re-encrypt every stored secret setting under a new key (see docs/architecture.md, "Tenants and their settings")."""
    report = await hub.tenant_settings.rotate_key()
    click.echo(f"re-encrypted {report.secrets} secrets of {report.rows} tenant plugin settings under key {report.key_id} ({report.key_source})")
