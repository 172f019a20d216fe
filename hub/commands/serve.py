"""`hub serve` and `hub worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import signal
from urllib.parse import urlsplit

import click
from aiohttp import web

from hub.app import create_app
from hub.cli import CliState, run
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


def _freeze_startup_objects() -> None:
    # Everything imported and built so far lives as long as the process: moving it out of the
    # collector's generations spares every full collection a scan of ~150k objects (measured:
    # about a fifth of a busy worker's CPU).
    gc.collect()
    gc.freeze()


async def _serve(hub: Hub, host: str, port: int, workers: bool) -> None:
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-workers", is_flag=True, help="Serve HTTP only; leave processing to `hub worker`.")
@click.pass_obj
def serve(state: CliState, host: str, port: int, no_workers: bool) -> None:
    """Run the HTTP app (webhooks, API, health) and, by default, the workers."""
    config = state.config()
    if (url := served_public_url(config.hub.public_url, host, port)) is not None:
        state.use_config(dataclasses.replace(config, hub=config.hub.model_copy(update={"public_url": url})))
        click.echo(f"  public_url: {url} (the loopback public_url {config.hub.public_url} names another port)", err=True)
    run(_serve(state.hub(), host, port, not no_workers))


async def _work(hub: Hub) -> None:
    async with hub.running(), hub.workers():
        _freeze_startup_objects()
        click.echo(f"Notification Hub worker {hub.inbox.worker_id} running{_sandbox_note(hub)}", err=True)
        await _until_signalled()


@click.command()
@click.pass_obj
def worker(state: CliState) -> None:
    """Run only the workers (inbox processor and dispatcher), for more processes on PostgreSQL."""
    run(_work(state.hub()))
