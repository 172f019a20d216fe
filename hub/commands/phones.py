"""`hub phones normalize`: the address normaliser for operators."""

from __future__ import annotations

import sys

import click

from hub.phones import InvalidAddress, normalize_phone


@click.group()
def phones() -> None:
    """Phone number tools."""


@phones.command()
@click.option("--region", default=None, help="Default region (ISO 3166, e.g. MX) for numbers without +.")
def normalize(region: str | None) -> None:
    """Read one raw number per line (optionally `raw<TAB>region`) and print its E.164 key or `INVALID<TAB>reason`."""
    for line in sys.stdin:
        raw, _, line_region = line.rstrip("\r\n").partition("\t")
        try:
            click.echo(normalize_phone(raw, line_region.strip() or region))
        except InvalidAddress as exc:
            click.echo(f"INVALID\t{exc.reason}")
