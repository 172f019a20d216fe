"""Reading config.toml: the [hub] table, tenants, and each plugin's raw settings.

Nothing here reads `os.environ` by itself: the caller passes the environment
in, so tests and the CLI decide what the hub sees.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError
from hub.input_rules import check_locale, is_timezone
from hub.settings import PluginSettings, ProviderSettings
from hub.tenant_policy import TenantPolicy

DEFAULT_CONFIG = "config.toml"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///hub.db"

Model = TypeVar("Model", bound=BaseModel)


class HubSettings(BaseModel):
    """The [hub] table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    public_url: str = "http://127.0.0.1:8080"
    plugin_dirs: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    log_level: str = "info"
    auto_migrate: bool | None = None
    """Migrate on start; None means "yes on SQLite, no elsewhere"."""
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    webhook_requests_per_minute: int = Field(default=1200, ge=1)
    """Webhook requests one source address may make per minute to one plugin; past it: 429 with Retry-After."""
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """Longest a request body may take to arrive; a slower client gets 408 and is closed."""
    inbox_max_attempts: int = Field(default=5, ge=1)
    inbox_poll_seconds: float = Field(default=1.0, gt=0)
    dispatch_poll_seconds: float = Field(default=1.0, gt=0)
    """Longest the dispatcher sleeps between looks at the outbox (it is also woken on new work)."""
    dispatch_lease_seconds: float = Field(default=120.0, gt=0)
    """How long a claimed notification stays reserved; a dead worker's rows are retaken after it."""
    dispatch_batch_size: int = Field(default=200, ge=1, le=5000)
    dispatch_concurrency: int = Field(default=64, ge=1, le=1000)
    """Sends in flight at once per worker."""
    retry_base_seconds: float = Field(default=2.0, gt=0)
    """First retry delay after a transient failure; it doubles each try (with jitter), up to 10 minutes."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @property
    def should_auto_migrate(self) -> bool:
        """Whether `hub serve` migrates by itself."""
        if self.auto_migrate is None:
            return self.database_url.startswith("sqlite")
        return self.auto_migrate


class TenantSettings(TenantPolicy):
    """One [tenants.<slug>] table: the tenant's identity, its policy keys (`TenantPolicy`) and plugin overrides."""

    name: str = ""
    default_region: str = "ES"
    timezone: str = "UTC"
    locale: str = "en"
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-tenant overrides of [plugins.<name>] keys (own credentials, senders)."""

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (use an ISO 3166 code such as ES, MX, US)")
        return region

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Europe/Madrid)")
        return value

    @field_validator("locale")
    @classmethod
    def _language_tag(cls, value: str) -> str:
        return check_locale(value)


@dataclass(frozen=True)
class Config:
    """The whole config file, validated except for plugin tables (plugins validate their own)."""

    path: str
    hub: HubSettings
    tenants: Mapping[str, TenantSettings]
    plugins: Mapping[str, Mapping[str, Any]]
    environ: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are resolved from."""
        return Path(self.path).resolve().parent

    def plugin_dir_paths(self) -> list[Path]:
        """`plugin_dirs`, resolved relative to the config file."""
        return [(self.base_dir / d).resolve() for d in self.hub.plugin_dirs]


def config_path(explicit: str | None, environ: Mapping[str, str]) -> str:
    """Which config file to read: --config, else HUB_CONFIG, else ./config.toml."""
    return explicit or environ.get("HUB_CONFIG") or DEFAULT_CONFIG


def load_config(path: str, environ: Mapping[str, str]) -> Config:
    """Read and validate a config file; every error names the file, table and key."""
    name = path
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found (pass --config or set HUB_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    return parse_config(raw, name, environ)


def parse_config(raw: Mapping[str, Any], name: str, environ: Mapping[str, str]) -> Config:
    """Validate an already-parsed config document."""
    unknown = set(raw) - {"hub", "tenants", "plugins"}
    if unknown:
        raise ConfigError(name, sorted(unknown)[0], "unknown table (expected hub, tenants, plugins)")
    hub_table = dict(_table(raw, "hub", name))
    if environ.get("HUB_DATABASE_URL"):
        hub_table["database_url"] = environ["HUB_DATABASE_URL"]
    hub_settings = validate_table(HubSettings, resolve_secrets(hub_table, name, "hub", environ), name, "hub")
    tenants: dict[str, TenantSettings] = {}
    for slug, table in _table(raw, "tenants", name).items():
        if not isinstance(table, dict):
            raise ConfigError(name, f"tenants.{slug}", "must be a table")
        if problem := slug_problem(slug):
            raise ConfigError(name, f"tenants.{slug}", problem)
        tenant = validate_table(TenantSettings, table, name, f"tenants.{slug}")
        tenants[slug] = tenant.model_copy(update={"name": tenant.name or slug})
    plugins = {key: value for key, value in _table(raw, "plugins", name).items()}
    for key, value in plugins.items():
        if not isinstance(value, dict):
            raise ConfigError(name, f"plugins.{key}", "must be a table")
    return Config(path=name, hub=hub_settings, tenants=tenants, plugins=plugins, environ=dict(environ))


def slug_problem(slug: str) -> str | None:
    """Why a tenant slug is unusable (it appears in URLs and commands), or None."""
    if not slug or len(slug) > 64 or not slug.replace("-", "").replace("_", "").isascii() or not slug.replace("-", "").replace("_", "").isalnum():
        return "a tenant slug is 1-64 ASCII letters, digits, - and _"
    return None


def _table(raw: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(name, key, "must be a table")
    return value


def resolve_secrets(table: Mapping[str, Any], name: str, where: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Replace every `{env = "NAME"}` value with the environment variable's value."""
    resolved: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and set(value) == {"env"}:
            var = value["env"]
            if var not in environ:
                raise ConfigError(name, f"{where}.{key}", f"environment variable {var} is not set")
            if not environ[var].strip():
                raise ConfigError(name, f"{where}.{key}", f"environment variable {var} is empty")
            resolved[key] = environ[var]
        elif isinstance(value, dict):
            resolved[key] = resolve_secrets(value, name, f"{where}.{key}", environ)
        else:
            resolved[key] = value
    return resolved


def validate_table(model: type[Model], table: Mapping[str, Any], name: str, where: str) -> Model:
    """Validate one table, turning the first pydantic error into a ConfigError naming the key."""
    try:
        return model.model_validate(dict(table))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"])
        key = f"{where}.{loc}" if loc else where
        if error["type"] == "extra_forbidden":
            problem = "unknown key"
        elif error["type"] == "missing":
            problem = "required key is missing"
        else:
            problem = error["msg"].removeprefix("Value error, ")
        raise ConfigError(name, key, problem) from None
