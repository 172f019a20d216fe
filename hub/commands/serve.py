"""`hub serve` and `hub worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from hub.cli import CliState, run

if TYPE_CHECKING:
    from hub.core import Hub


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _sandbox_note(hub: Hub) -> str:
    sandboxed = sorted(name for name, state in hub.plugins.items() if state.sandbox)
    return f" [SANDBOX: {', '.join(sandboxed)}]" if sandboxed else ""


def _collect_once_at_startup() -> None:
    """Pause the cyclic collector until `_freeze_startup_objects`: start-up then collects once, not ~200 times."""
    # Imports and the hub's build make ~150k objects that live as long as the process; scanning them
    # again and again while they are made was about a sixth of the CPU from start to healthy.
    gc.disable()


def _freeze_startup_objects() -> None:
    # Everything imported and built so far lives as long as the process: moving it out of the
    # collector's generations spares every full collection a scan of ~150k objects (measured:
    # about a fifth of a busy worker's CPU).
    gc.collect()
    gc.freeze()
    gc.enable()  # paused since the command started (`_collect_once_at_startup`)


async def _demo_sign_in(hub: Hub, email: str) -> str:
    """Make a demo console user for the first tenant if there is no user yet; the line telling how to sign in."""
    from hub.console.passwords import generate_password, new_hasher
    from hub.console.users import count_users, create_user

    tenants = await hub.tenants.all()
    if not tenants:
        return "no tenant yet: create one, then `hub users create`"
    async with hub.db.sessions.begin() as session:
        if await count_users(session):
            return f"sign in as {email} with the password printed when it was made (or `hub users create`)"
        password = generate_password()
        await create_user(session, new_hasher(), email=email, password=password, role="tenant", tenant=tenants[0].slug)
    # Shown once, here: only its argon2id hash is stored.
    return f"sign in as {email} with password {password} (tenant {tenants[0].slug}; shown only this once)"


@asynccontextmanager
async def _metrics_listener(hub: Hub, host: str, port: int | None) -> AsyncIterator[None]:
    """An operator-only listener serving /metrics without a token (bind it where only operators reach)."""
    if port is None:
        yield
        return
    from aiohttp import web

    from hub.metrics import metrics_app

    runner = web.AppRunner(metrics_app(hub), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        click.echo(f"  metrics: http://{host}:{port}/metrics (operator listener)", err=True)
        yield
    finally:
        await runner.cleanup()


async def _serve(
    hub: Hub, host: str, port: int, workers: bool, demo_user: str | None = None, metrics: tuple[str, int | None] = ("127.0.0.1", None)
) -> None:
    from aiohttp import web

    from hub.app import create_app

    async with hub.running():
        _freeze_startup_objects()
        app = create_app(hub, run_workers=workers, manage_hub=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            click.echo(f"Notification Hub serving on http://{host}:{port}/{_sandbox_note(hub)}", err=True)
            click.echo(f"  health: http://{host}:{port}/health   database: {hub.db.safe_url}", err=True)
            if demo_user:
                click.echo(f"  console: http://{host}:{port}/   {await _demo_sign_in(hub, demo_user)}", err=True)
            else:
                click.echo(f"  console: http://{host}:{port}/", err=True)
            async with _metrics_listener(hub, *metrics):
                await _until_signalled()
        finally:
            await runner.cleanup()


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def served_public_url(public_url: str, host: str, port: int) -> str | None:
    """The URL to use instead of a loopback `public_url` naming another port than the one served, or None.

    A loopback public_url can only mean this process: `make run PORT=9000` with the shipped
    config (8080) would otherwise sign Twilio checks and write OpenAPI servers for the wrong port.
    """
    parts = urlsplit(public_url)
    if parts.hostname not in LOOPBACK or parts.port == port:
        return None
    shown = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{shown}:{port}"


METRICS_HOST = click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of the operator-only metrics listener.")
METRICS_PORT = click.option("--metrics-port", type=int, help="Serve /metrics without a token on this port (operator-only listener).")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-workers", is_flag=True, help="Serve HTTP only; leave processing to `hub worker`.")
@click.option("--demo-user", metavar="EMAIL", help="With no console user yet, create this one for the first tenant and print its password once.")
@METRICS_HOST
@METRICS_PORT
@click.pass_obj
def serve(state: CliState, host: str, port: int, no_workers: bool, demo_user: str | None, metrics_host: str, metrics_port: int | None) -> None:
    """Run the HTTP app (console, webhooks, API, health) and, by default, the workers."""
    _collect_once_at_startup()
    config = state.config()
    if (url := served_public_url(config.hub.public_url, host, port)) is not None:
        state.use_config(dataclasses.replace(config, hub=config.hub.model_copy(update={"public_url": url})))
        click.echo(f"  public_url: {url} (the loopback public_url {config.hub.public_url} names another port)", err=True)
    run(_serve(state.hub(), host, port, not no_workers, demo_user, (metrics_host, metrics_port)))


async def _work(hub: Hub, metrics: tuple[str, int | None]) -> None:
    async with hub.running(), hub.workers():
        _freeze_startup_objects()
        click.echo(f"Notification Hub worker {hub.inbox.worker_id} running{_sandbox_note(hub)}", err=True)
        async with _metrics_listener(hub, *metrics):
            await _until_signalled()


@click.command()
@METRICS_HOST
@METRICS_PORT
@click.pass_obj
def worker(state: CliState, metrics_host: str, metrics_port: int | None) -> None:
    """Run only the workers (inbox processor and dispatcher), for more processes on PostgreSQL."""
    _collect_once_at_startup()
    run(_work(state.hub(), (metrics_host, metrics_port)))
