"""The `hub` command line.

Plugins add their own sub-commands through `register_commands`; to do that
before arguments are parsed, `main` reads `--config` early and loads the
plugins once (their modules, not the hub), then builds the hub from those
same plugins only when a command asks for it. Nothing here imports the
engine, the HTTP server or the templates: `hub --help` and the commands
that need none of them answer without loading them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hub.config import Config, config_path, load_config
from hub.errors import HubError, StartupError, UnknownTenant
from hub.logs import configure_logging
from hub.port import HubPort

if TYPE_CHECKING:
    import pluggy

    from hub.core import Hub
    from hub.plugins import HookCaller, PluginInfo

T = TypeVar("T")


class StartupFailure(click.ClickException):
    """A start-up problem: printed as one line, exit status 2."""

    exit_code = 2


class CliState:
    """What every command shares: which config to read, and the hub built from it (lazily)."""

    def __init__(self, config_file: str | None, environ: dict[str, str]) -> None:
        self.config_file = config_path(config_file, environ)
        self.environ = environ
        self._config: Config | None = None
        self._hub: Hub | None = None
        self._plugins: tuple[pluggy.PluginManager, list[PluginInfo]] | None = None

    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_file, self.environ)
            except StartupError as exc:
                raise StartupFailure(str(exc)) from None
            configure_logging(self._config.hub.log_level)
        return self._config

    def use_config(self, config: Config) -> None:
        """Replace the config before the hub opens: `hub serve` fills in its own address."""
        self._config = config
        if self._hub is not None:
            # Built (to list plugin commands) but not opened: it reads the config from here on.
            self._hub.config = config

    def plugin_hooks(self) -> HookCaller:
        """The config's plugins, loaded (imported and registered) but not set up: enough to add their commands."""
        from hub.plugins import HookCaller, build_plugin_manager, discover

        if self._plugins is None:
            config = self.config()
            try:
                self._plugins = build_plugin_manager(discover(config.plugin_dir_paths()), config.hub.disabled)
            except StartupError as exc:
                raise StartupFailure(str(exc)) from None
        return HookCaller(self._plugins[0])

    def hub(self) -> Hub:
        """The hub, built on first use (from the plugins already loaded, if any)."""
        if self._hub is None:
            from hub.core import Hub

            config = self.config()
            try:
                if self._plugins is None:
                    self._hub = Hub.build(config)
                else:
                    self._hub = Hub(config, *self._plugins)
            except StartupError as exc:
                raise StartupFailure(str(exc)) from None
        return self._hub


def hub_from_context() -> Hub:
    """The hub for the running command (built, not yet opened)."""
    state = click.get_current_context().find_object(CliState)
    if state is None:
        raise click.UsageError("no hub for this command (run it through the `hub` command line)")
    return state.hub()


def run_with_hub(body: Callable[[HubPort], Awaitable[T]]) -> T:
    """Run a plugin command's async body with the opened hub; hub errors become one line and exit status 1."""
    hub = hub_from_context()

    async def main() -> T:
        async with hub.running():
            return await body(hub)

    try:
        return run(main())
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop roughly halves the event loop's share of a busy worker (sockets, callbacks);
    # where it is not installed (it is optional), the standard loop does the same work.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; start-up errors become one line and exit status 2."""
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(coro)
    except StartupError as exc:
        raise StartupFailure(str(exc)) from None
    except UnknownTenant as exc:
        raise click.ClickException(str(exc)) from None


def with_open_hub(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorate an async command body `(hub, **options)`: the hub is opened around it."""

    @click.pass_obj
    def command(state: CliState, /, **options: Any) -> T:
        hub = state.hub()

        async def body() -> T:
            async with hub.running():
                return await func(hub, **options)

        return run(body())

    command.__name__ = func.__name__
    command.__doc__ = func.__doc__
    return command


class LazyChoice(click.Choice[str]):
    """A `click.Choice` whose values come from a module loaded only when a command line reads them.

    The values live beside the code that uses them (often with the engine behind it); declaring an
    option must not import that for `hub --help` and every other command.
    """

    def __init__(self, load: Callable[[], Sequence[str]], case_sensitive: bool = True) -> None:
        self._load = load
        self._loaded: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:
        """The values, loaded on first use."""
        if self._loaded is None:
            self._loaded = tuple(self._load())
        return self._loaded

    @choices.setter
    def choices(self, values: Sequence[str]) -> None:
        self._loaded = tuple(values)


class LazyHelpOption(click.Option):
    """A `click.Option` whose help text is made when it is shown (it names values from a heavy module)."""

    def __init__(self, *args: Any, lazy_help: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_help = lazy_help

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self._lazy_help()
        return super().get_help_record(ctx)


@click.group()
@click.option("--config", "config_file", metavar="PATH", help="Config file (default: $HUB_CONFIG or ./config.toml).")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Notification Hub: webhooks in, contacts linked, reminders out."""
    if not isinstance(ctx.obj, CliState) or (config_file and ctx.obj.config_file != config_file):
        ctx.obj = CliState(config_file, dict(os.environ))


def main() -> None:
    """Entry point of the `hub` script and `python -m hub`."""
    from hub.commands import add_builtin_commands

    add_builtin_commands(cli)
    environ = dict(os.environ)
    state = CliState(_early_config_option(sys.argv[1:]), environ)
    try:
        hooks = state.plugin_hooks()
    except click.ClickException:
        hooks = None  # the command that needs the hub reports the problem itself
    if hooks is not None:
        try:
            hooks.call_sync("register_commands", cli=cli)
        except StartupError as exc:
            StartupFailure(str(exc)).show()
            sys.exit(StartupFailure.exit_code)
    cli.main(obj=state, prog_name="hub")


def _early_config_option(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None
