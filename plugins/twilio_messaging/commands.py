"""`hub twilio templates`: which WhatsApp Content template each tenant sends for each kind."""

from __future__ import annotations

import json
import click

from hub import HubPort, run_with_hub

from .sending import NAME, find_template, locale_candidates
from .settings import Settings, locale_key

# The kinds the core sends about appointments (hub.templates.DEFAULT_KINDS, which hub does not export).
APPOINTMENT_KINDS = ("confirmation", "reminder", "cancellation", "reschedule")


def template_report(slug: str, settings: Settings | None, tenant_locale: str) -> tuple[list[str], int]:
    """The lines `hub twilio templates` prints for one tenant, and how many kinds have no template."""
    if settings is None:
        return [f"{slug}: twilio_messaging not configured"], 0
    locales = list(dict.fromkeys([locale_key(tenant_locale), *settings.content_templates]))
    sender = settings.whatsapp_from or settings.messaging_service_sid or "no WhatsApp sender"
    lines = [f"{slug}: account {settings.account_sid}, WhatsApp from {sender}{' (sandbox)' if settings.sandbox else ''}"]
    missing = 0
    for locale in locales:
        mapped = {kind for candidate in locale_candidates(locale) for kind in settings.content_templates.get(candidate, {})}
        kinds = [*APPOINTMENT_KINDS, *sorted(mapped - set(APPOINTMENT_KINDS))]
        for kind in kinds:
            found = find_template(settings, locale, kind)
            if found is None:
                missing += 1
                lines.append(f"  {locale:<6} {kind:<13} MISSING: outside 24 h this kind falls through to the next channel")
                continue
            where, template = found
            inherited = f" (from {where})" if where != locale else ""
            variables = json.dumps(template.variables, ensure_ascii=False, sort_keys=True)
            lines.append(f"  {locale:<6} {kind:<13} {template.content_sid}{inherited}  {variables}")
    return lines, missing


def add_commands(cli: click.Group) -> None:
    """Attach `hub twilio ...` to the hub's command line."""

    @cli.group(name="twilio")
    def twilio() -> None:
        """Twilio WhatsApp and SMS (the twilio_messaging plugin)."""

    @twilio.command()
    @click.option("--tenant", "only", default=None, help="Only this tenant (default: every tenant with Twilio settings).")
    def templates(only: str | None) -> None:
        """List the WhatsApp Content templates per tenant and locale; exit 1 if a kind has none."""

        async def report(hub: HubPort) -> int:
            slugs = [(await hub.tenant(only)).slug] if only else hub.configured_tenants(NAME)
            missing = 0
            for slug in slugs:
                lines, absent = template_report(slug, hub.settings_for(NAME, slug), (await hub.tenant(slug)).locale)
                missing += absent
                for line in lines:
                    click.echo(line)
            return missing

        if run_with_hub(report):
            raise click.exceptions.Exit(1)
