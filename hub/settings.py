"""The base classes of plugin settings models (see the `register_settings` hook)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator


class PluginSettings(BaseModel):
    """Base of a plugin's settings model: unknown keys are errors, values are frozen, secrets never blank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _secret_not_blank(cls, value: Any) -> Any:
        # An empty signing key verifies signatures anyone can make: refused for every plugin at once.
        for secret in value if isinstance(value, tuple | list) else (value,):
            if isinstance(secret, SecretStr) and not secret.get_secret_value().strip():
                raise ValueError("a secret cannot be empty or blank")
        return value


class ProviderSettings(PluginSettings):
    """Settings of a plugin that talks to a vendor: sandbox records instead of sending."""

    sandbox: bool = True
