"""The `[plugins.openai_responder]` table (and each tenant's overrides)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from hub import PluginSettings

from .prompt import DEFAULT_SYSTEM_PROMPT


class Settings(PluginSettings):
    """An OpenAI-compatible model answering one tenant's clients; without `api_key` the plugin is not configured."""

    api_key: SecretStr
    base_url: str = "https://api.openai.com/v1"
    """Any OpenAI-compatible server: OpenAI, a proxy, or a local model (e.g. "http://127.0.0.1:8080/v1")."""
    model: str = "gpt-4o-mini"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """A Jinja template over `tenant`, `business`, `today`, `language`; see plugins/openai_responder/prompt.py."""
    enabled: bool = True
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Limit for the whole answer (every model call and retry); past it the rules responder answers instead.
    Keep it well under the tenant's `responder_timeout` (20 s by default), which bounds both responders."""
    max_retries: int = Field(default=2, ge=0, le=5)
    """Retries of a 429 / 5xx / connection error by the SDK, within `timeout_seconds`."""
    max_steps: int = Field(default=4, ge=1, le=10)
    """Model calls per message (each tool round is one); past it the rules responder answers."""
    daily_token_budget: int | None = Field(default=200_000, ge=0)
    """Tokens per day for the tenant (its time zone); once spent, the rules responder answers until midnight. None: no limit."""
    history_messages: int = Field(default=10, ge=1, le=50)
    """How many of the conversation's last messages the model sees."""
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_completion_tokens: int = Field(default=400, ge=16, le=4096)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
