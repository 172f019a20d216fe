"""Errors the core raises and plugins may raise or catch."""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""


class StartupError(HubError):
    """The hub cannot start; the message is one line that names the cause.

    The CLI prints it alone and exits with status 2.
    """


class ConfigError(StartupError):
    """A mistake in config.toml, named by file, table and key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class PluginLoadError(StartupError):
    """A plugin could not be found, imported or registered."""


class ChannelError(HubError):
    """A channel could not deliver a message; subclasses say whether to retry."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


class TransientError(ChannelError):
    """Worth retrying later (timeouts, 429, 5xx); `retry_after` is a hint in seconds."""

    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Never worth retrying on this channel (invalid address, opted out, rejected template)."""

    def __init__(self, reason: str, *, code: str | None = None, opted_out: bool = False) -> None:
        super().__init__(reason, code=code)
        self.opted_out = opted_out


class UnknownTenant(HubError):
    """No tenant has this slug."""


class UnknownContact(HubError):
    """No contact has this id in the tenant."""


class TemplateError(HubError):
    """A template is missing or broken; names the template and, for undefined variables, the variable.

    `reason` is one of "missing", "syntax", "undefined", "unsafe", "broken";
    `detail` is the human explanation and `line` the template line, when known.
    """

    def __init__(
        self, template: str, reason: str, detail: str, *, variable: str | None = None, line: int | None = None
    ) -> None:
        self.template = template
        self.reason = reason
        self.detail = detail
        self.variable = variable
        self.line = line
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {detail}")
