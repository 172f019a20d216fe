"""Tenants' plugin settings: config.toml as the bootstrap, the database for what changes at run time.

A tenant's settings for a plugin are the plugin's `[plugins.<name>]` table,
overlaid key by key with `[tenants.<slug>.plugins.<name>]`, overlaid with the
tenant's row in `tenant_plugin_settings` (set by `hub tenants configure` or
the admin API): the database wins, because it is what an operator changed
while the hub ran. The merged table is validated by the plugin's own settings
model once, and the result cached; `settings_for` is then a dictionary lookup.

Every process keeps its cache current without a restart: a change sends a
NOTIFY on PostgreSQL, and every process also compares a cheap fingerprint of
the table every few seconds (the only mechanism on SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

import structlog
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.config import Config, resolve_secrets, validate_table
from hub.database import Database
from hub.errors import HubError, UnknownTenant
from hub.models import Tenant, TenantPluginSettings, utcnow
from hub.secret_keys import Keyring, begin_file_rotation, finish_file_rotation, key_file_for, key_id

SETTINGS_CHANNEL = "hub_tenant_settings"
MASK = "********"
DATABASE_SOURCE = "database"
DEFAULT_SOURCE = "default"

Fingerprint = tuple[int, int, str]


class SettingsProblem(HubError):
    """A key or value a plugin's settings model refuses; names the plugin and the key."""

    def __init__(self, plugin: str, key: str, problem: str) -> None:
        self.plugin = plugin
        self.key = key
        self.problem = problem
        super().__init__(f"{plugin}.{key}: {problem}" if key else f"{plugin}: {problem}")


class UnknownPlugin(HubError):
    """No loaded plugin has this name, or it has no settings model."""


class _PluginState(Protocol):
    @property
    def settings(self) -> BaseModel | None: ...


@dataclass(frozen=True)
class ShownSetting:
    """One key of a tenant's effective settings as shown to an operator: secrets masked, with its source."""

    key: str
    value: Any
    source: str
    secret: bool = False


@dataclass(frozen=True)
class PluginView:
    """A plugin's effective settings for a tenant, as `hub tenants show` and the admin API present them."""

    plugin: str
    configured: bool
    problem: str
    settings: tuple[ShownSetting, ...]

    def as_json(self) -> dict[str, Any]:
        """The JSON shape of the admin API."""
        return {
            "plugin": self.plugin,
            "configured": self.configured,
            "problem": self.problem or None,
            "settings": {s.key: {"value": s.value, "source": s.source, "secret": s.secret} for s in self.settings},
        }


@dataclass(frozen=True)
class _Row:
    tenant_id: int
    slug: str
    plugin: str
    values: dict[str, Any]
    secrets: dict[str, str]


@dataclass(frozen=True)
class RotationReport:
    """What `rotate_key` did."""

    rows: int
    secrets: int
    key_id: str
    key_source: str


@dataclass
class _Snapshot:
    rows: dict[tuple[str, str], _Row] = field(default_factory=dict)
    resolved: dict[tuple[str, str], BaseModel | None] = field(default_factory=dict)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    fingerprint: Fingerprint | None = None


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The top-level keys of a settings model that hold a SecretStr: these are encrypted at rest."""
    return frozenset(name for name, info in model.model_fields.items() if _mentions_secret(info.annotation))


def _mentions_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


def _first_problem(exc: ValidationError, prefer: Iterable[str] = ()) -> tuple[str, str]:
    """(key, reason) of the error to report: one about a key the caller just changed, if any."""
    errors = exc.errors()
    wanted = set(prefer)
    error = next((e for e in errors if e["loc"] and str(e["loc"][0]) in wanted), errors[0])
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return key, "unknown key"
    if error["type"] == "missing":
        return key, "required key is missing"
    return key, error["msg"].removeprefix("Value error, ")


def masked(value: Any, secret: bool) -> Any:
    """A value as it may be shown: secrets become asterisks, models and tuples plain JSON."""
    if secret or isinstance(value, SecretStr):
        shown = value.get_secret_value() if isinstance(value, SecretStr) else value
        return MASK if shown else shown
    if isinstance(value, BaseModel):
        return {name: masked(getattr(value, name), False) for name in type(value).model_fields}
    return to_jsonable_python(value)


class TenantSettingsStore:
    """Resolves, caches, stores and reloads tenants' plugin settings; one per hub."""

    def __init__(
        self,
        config: Config,
        db: Database,
        models: Mapping[str, type[BaseModel]],
        states: Mapping[str, _PluginState],
        *,
        keyring: Keyring | None = None,
        poll_seconds: float = 2.0,
    ) -> None:
        self._config = config
        self._db = db
        self._models = models
        """Plugin -> its settings model; the hub fills it while it loads plugins."""
        self._states = states
        self.keyring = keyring or Keyring(config.environ, key_file_for(config.hub.database_url))
        self.poll_seconds = poll_seconds
        self._from_config: dict[tuple[str, str], BaseModel | None] = {}
        self._snapshot = _Snapshot()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._log = structlog.get_logger("hub.tenant_settings")

    # --- reading (synchronous: the cache) --------------------------------------

    def resolve(self, plugin: str, tenant: str | None = None) -> Any:
        """A plugin's validated settings for a tenant (None: not configured); see the module docstring."""
        state = self._states.get(plugin)
        if state is None:
            raise KeyError(f"no plugin {plugin!r} is loaded")
        if tenant is None:
            return state.settings
        key = (plugin, tenant)
        snapshot = self._snapshot
        if key in snapshot.resolved:
            return snapshot.resolved[key]
        if key in self._from_config:
            return self._from_config[key]
        overrides = self._tenant_table(tenant, plugin)
        if not overrides:
            return state.settings
        where = f"tenants.{tenant}.plugins.{plugin}"
        merged = {**self._config.plugins.get(plugin, {}), **overrides}
        resolved = resolve_secrets(merged, self._config.path, where, self._config.environ)
        # Config is immutable for the life of the process: validate once, raise a ConfigError naming the key.
        self._from_config[key] = validate_table(self._models[plugin], resolved, self._config.path, where)
        return self._from_config[key]

    def configured_tenants(self, plugin: str) -> list[str]:
        """config.toml tenants with settings for `plugin`, and database tenants with their own."""
        if plugin not in self._states:
            raise KeyError(f"no plugin {plugin!r} is loaded")
        slugs = {slug for slug in self._config.tenants if self.resolve(plugin, slug) is not None}
        slugs |= {slug for (name, slug), value in self._snapshot.resolved.items() if name == plugin and value is not None}
        return sorted(slugs)

    def _tenant_table(self, tenant: str, plugin: str) -> Mapping[str, Any] | None:
        settings = self._config.tenants.get(tenant)
        return settings.plugins.get(plugin) if settings is not None else None

    # --- loading and reloading ---------------------------------------------------

    async def start(self) -> None:
        """Load every stored setting (errors here stop the start) and keep the cache current in the background."""
        await self.reload()
        self._listener = await self._listen()
        self._task = asyncio.create_task(self._watch(), name="hub-tenant-settings")

    async def stop(self) -> None:
        """Stop watching for changes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def reload(self) -> None:
        """Read every stored row and replace the cache at once; a row that fails validation is logged and unset."""
        async with self._db.sessions() as session:
            fingerprint = await self._fingerprint(session)
            rows = await self._read_rows(session)
        snapshot = _Snapshot(fingerprint=fingerprint)
        for row in rows:
            key = (row.plugin, row.slug)
            snapshot.rows[key] = row
            model = self._models.get(row.plugin)
            if model is None:
                continue  # the plugin is not loaded (or disabled) in this process
            try:
                snapshot.resolved[key] = self._validate(model, row.plugin, self._merged(row.plugin, row.slug, self._plain(row)))
            except SettingsProblem as exc:
                snapshot.resolved[key] = None
                snapshot.problems[key] = str(exc)
                self._log.error("tenant_settings_invalid", tenant=row.slug, plugin=row.plugin, key=exc.key, problem=exc.problem)
        self._snapshot = snapshot

    async def reload_if_changed(self) -> bool:
        """Reload when the stored settings changed since the last load; True if it reloaded."""
        async with self._db.sessions() as session:
            fingerprint = await self._fingerprint(session)
        if fingerprint == self._snapshot.fingerprint:
            return False
        await self.reload()
        return True

    async def _fingerprint(self, session: AsyncSession) -> Fingerprint:
        count, revisions, latest = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(TenantPluginSettings.revision), 0), func.max(TenantPluginSettings.updated_at))
            )
        ).one()
        return int(count), int(revisions), str(latest)

    async def _read_rows(self, session: AsyncSession) -> list[_Row]:
        result = await session.execute(
            select(TenantPluginSettings, Tenant.slug).join(Tenant, Tenant.id == TenantPluginSettings.tenant_id)
        )
        return [_Row(row.tenant_id, slug, row.plugin, dict(row.values or {}), dict(row.secrets or {})) for row, slug in result.all()]

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            notified = self._wake.is_set()
            self._wake.clear()
            try:
                if notified:
                    await self.reload()
                    self._log.info("tenant_settings_reloaded", reason="notify")
                elif await self.reload_if_changed():
                    self._log.info("tenant_settings_reloaded", reason="poll")
            except Exception as exc:  # keep serving the last good settings; the next round tries again
                self._log.error("tenant_settings_reload_failed", error=f"{type(exc).__name__}: {exc}")

    async def _listen(self) -> Any:
        """On PostgreSQL, LISTEN for changes committed by any process."""
        if self._db.dialect != "postgresql":
            return None
        import asyncpg

        url = self._db.engine.url.set(drivername="postgresql")
        try:
            connection = await asyncpg.connect(url.render_as_string(hide_password=False))
            await connection.add_listener(SETTINGS_CHANNEL, lambda *_args: self._wake.set())
        except Exception as exc:  # the periodic check still picks changes up
            self._log.warning("tenant_settings_listen_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return connection

    # --- merging and validating -------------------------------------------------------

    def _context(self, tenant_id: int, plugin: str, key: str) -> str:
        return f"tenant {tenant_id} plugin {plugin} key {key}"

    def _plain(self, row: _Row) -> dict[str, Any]:
        """A row's values with its secrets decrypted (raises SecretKeyError without the key)."""
        secrets = {k: self.keyring.decrypt(token, self._context(row.tenant_id, row.plugin, k)) for k, token in row.secrets.items()}
        return {**row.values, **secrets}

    def _config_layers(self, plugin: str, tenant: str) -> list[tuple[str, Mapping[str, Any]]]:
        layers: list[tuple[str, Mapping[str, Any]]] = []
        if plugin in self._config.plugins:
            layers.append((f"{self._config.path} [plugins.{plugin}]", self._config.plugins[plugin]))
        overrides = self._tenant_table(tenant, plugin)
        if overrides:
            layers.append((f"{self._config.path} [tenants.{tenant}.plugins.{plugin}]", overrides))
        return layers

    def _merged(self, plugin: str, tenant: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for where, table in self._config_layers(plugin, tenant):
            merged.update(resolve_secrets(table, self._config.path, where, self._config.environ))
        merged.update(stored)
        return merged

    def _validate(self, model: type[BaseModel], plugin: str, table: Mapping[str, Any], changed: Iterable[str] = ()) -> BaseModel:
        try:
            return model.model_validate(dict(table))
        except ValidationError as exc:
            raise SettingsProblem(plugin, *_first_problem(exc, changed)) from None

    def model_for(self, plugin: str) -> type[BaseModel]:
        """The plugin's settings model; raises UnknownPlugin."""
        if plugin not in self._states:
            raise UnknownPlugin(f"no plugin {plugin!r} is loaded (see `hub plugins`)")
        model = self._models.get(plugin)
        if model is None:
            raise UnknownPlugin(f"plugin {plugin!r} has no settings")
        return model

    # --- writing --------------------------------------------------------------------

    async def configure(
        self, tenant: str, plugin: str, changes: Mapping[str, Any], unset: Iterable[str] = (), *, replace: bool = False
    ) -> PluginView:
        """Set (and unset) a tenant's own keys for a plugin, validated first; nothing is stored on a SettingsProblem.

        `replace` drops every key stored before (PUT), else the change is merged in (PATCH).
        """
        model = self.model_for(plugin)
        removed = list(unset)
        for key in [*changes, *removed]:
            if key not in model.model_fields:
                raise SettingsProblem(plugin, key, "unknown key")
        secret_keys = secret_fields(model)
        async with self._db.sessions.begin() as session:
            tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == tenant))
            if tenant_id is None:
                raise UnknownTenant(f"no tenant {tenant!r} (create it with `hub tenants create {tenant}` or in config.toml)")
            row = await session.scalar(
                select(TenantPluginSettings)
                .where(TenantPluginSettings.tenant_id == tenant_id, TenantPluginSettings.plugin == plugin)
                .with_for_update()
            )
            stored: dict[str, Any] = {}
            if row is not None and not replace:
                stored = self._plain(_Row(tenant_id, tenant, plugin, dict(row.values or {}), dict(row.secrets or {})))
            stored.update(changes)
            for key in removed:
                stored.pop(key, None)
            self._validate(model, plugin, self._merged(plugin, tenant, stored), changes)
            values = {k: v for k, v in stored.items() if not (k in secret_keys and isinstance(v, str))}
            secrets = {
                k: self.keyring.encrypt(v, self._context(tenant_id, plugin, k))
                for k, v in stored.items()
                if k in secret_keys and isinstance(v, str)
            }
            if not stored:
                await session.execute(delete(TenantPluginSettings).where(TenantPluginSettings.id == (row.id if row else -1)))
            elif row is None:
                session.add(TenantPluginSettings(tenant_id=tenant_id, plugin=plugin, values=values, secrets=secrets, revision=1))
            else:
                row.values, row.secrets, row.revision, row.updated_at = values, secrets, row.revision + 1, utcnow()
            await self._notify(session)
        self._log.info("tenant_settings_changed", tenant=tenant, plugin=plugin, set=sorted(changes), unset=sorted(removed), replace=replace)
        await self.reload()
        return await self.view(tenant, plugin)

    async def _notify(self, session: AsyncSession) -> None:
        if self._db.dialect == "postgresql":
            # Delivered to every listening process when this transaction commits, not before.
            await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": SETTINGS_CHANNEL})

    async def rotate_key(self) -> RotationReport:
        """Re-encrypt every stored secret under the current key (a new one, for a key file); see docs/architecture.md."""
        key_file = self.keyring.key_file
        new_key = begin_file_rotation(key_file) if key_file is not None else self.keyring.current("the key must be rotated")
        rows = secrets = 0
        async with self._db.sessions.begin() as session:
            result = await session.execute(
                select(TenantPluginSettings, Tenant.slug).join(Tenant, Tenant.id == TenantPluginSettings.tenant_id).with_for_update()
            )
            for row, slug in result.all():
                if not row.secrets:
                    continue
                plain = self._plain(_Row(row.tenant_id, slug, row.plugin, {}, dict(row.secrets)))
                row.secrets = {k: self.keyring.encrypt(v, self._context(row.tenant_id, row.plugin, k), key=new_key) for k, v in plain.items()}
                row.revision, row.updated_at = row.revision + 1, utcnow()
                rows += 1
                secrets += len(plain)
            await self._notify(session)
        if key_file is not None:
            finish_file_rotation(key_file)
        self.keyring.adopt(new_key)
        await self.reload()
        self._log.info("secret_key_rotated", rows=rows, secrets=secrets, key_id=key_id(new_key))
        return RotationReport(rows, secrets, key_id(new_key), self.keyring.source)

    # --- showing ------------------------------------------------------------------------

    async def views(self, tenant: str) -> list[PluginView]:
        """Every plugin with settings, as this tenant gets them (fresh from the database)."""
        await self.reload_if_changed()
        return [self._view(tenant, plugin) for plugin in self._states if plugin in self._models]

    async def view(self, tenant: str, plugin: str) -> PluginView:
        """One plugin's settings for a tenant (fresh from the database); raises UnknownPlugin."""
        self.model_for(plugin)
        await self.reload_if_changed()
        return self._view(tenant, plugin)

    def _view(self, tenant: str, plugin: str) -> PluginView:
        model = self._models[plugin]
        secret_keys = secret_fields(model)
        row = self._snapshot.rows.get((plugin, tenant))
        layers = self._config_layers(plugin, tenant)
        stored_keys = set(row.values) | set(row.secrets) if row is not None else set()
        problem = self._snapshot.problems.get((plugin, tenant), "")
        try:
            effective = self.resolve(plugin, tenant)
        except HubError as exc:
            effective, problem = None, str(exc)
        if effective is None and not problem:
            try:
                self._validate(model, plugin, self._merged(plugin, tenant, {}))
            except SettingsProblem as exc:
                problem = str(exc)
            except HubError as exc:
                problem = str(exc)
        shown: list[ShownSetting] = []
        for name, info in model.model_fields.items():
            secret = name in secret_keys
            source = DEFAULT_SOURCE
            required = info.is_required()
            raw: Any = None if required else info.get_default(call_default_factory=True)
            if name in stored_keys and row is not None:
                source, raw = DATABASE_SOURCE, row.values.get(name, MASK if name in row.secrets else None)
            else:
                for where, table in reversed(layers):
                    if name in table:
                        value = table[name]
                        env = value.get("env") if isinstance(value, dict) and set(value) == {"env"} else None
                        source, raw = (f"{where} (env {env})" if env else where), value
                        break
            if effective is not None:
                raw = getattr(effective, name)
            elif source == DEFAULT_SOURCE and required:
                source = "missing (required)"
            shown.append(ShownSetting(name, masked(raw, secret), source, secret))
        return PluginView(plugin, effective is not None, problem, tuple(shown))
