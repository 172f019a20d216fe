"""The `[plugins.smtp_email]` table: which SMTP server, which account, which sender."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from hub import InvalidAddress, ProviderSettings, normalize_email


class Settings(ProviderSettings):
    """[plugins.smtp_email]; `sandbox = true` (the default) builds each email but sends nothing."""

    host: str = "localhost"
    port: int = 587
    """587 for "starttls", 465 for "tls", 25 for a local relay with "none"."""
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    """STARTTLS after connecting, implicit TLS from the first byte, or plain text (local relays only)."""
    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    timeout: float = 15
    """Seconds allowed for each SMTP step (connect, each command, the data)."""
    unsubscribe_mailto: str | None = None
    """The address of the List-Unsubscribe mailto; `from_address` when unset."""
    validate_certs: bool = True

    @field_validator("from_address", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _an_email_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            normalize_email(value)
        except InvalidAddress:
            raise ValueError(f"not an email address: {value!r}") from None
        return value.strip()

    @field_validator("port")
    @classmethod
    def _a_port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("must be between 1 and 65535")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> Settings:
        # A username without a password would log in with an empty one and fail on every send.
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        return self

    @property
    def domain(self) -> str:
        """The sender's domain: the right-hand side of Message-IDs and calendar UIDs."""
        return self.from_address.rpartition("@")[2].lower()

    @property
    def unsubscribe_address(self) -> str:
        """Where the List-Unsubscribe mailto points."""
        return self.unsubscribe_mailto or self.from_address
