"""The base classes of plugin settings models (see the `register_settings` hook)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PluginSettings(BaseModel):
    """Base of a plugin's settings model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSettings(PluginSettings):
    """Settings of a plugin that talks to a vendor: sandbox records instead of sending."""

    sandbox: bool = True
