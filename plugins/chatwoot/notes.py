"""The one-line private notes the hub leaves in a client's Chatwoot conversation, in the tenant's language."""

from __future__ import annotations

from collections.abc import Mapping

NOTES: Mapping[str, Mapping[str, str]] = {
    "es": {
        "created": "Hub: cita reservada para el {when}{service}.",
        "rescheduled": "Hub: cita movida al {when}{service}.",
        "canceled": "Hub: cita del {when} cancelada.",
        "no_show": "Hub: el cliente no se presentó a la cita del {when}.",
        "reminder_failed": "Hub: el recordatorio ({kind}) no se pudo entregar por ningún canal.",
        "merge": "Hub: este contacto parece la misma persona que el contacto de Chatwoot #{other} ({evidence}). "
        "Revísalo y confírmalo con `hub chatwoot merge`; no se fusiona solo.",
        "handoff": "Hub: conversación pasada a una persona {reason}. Lo que pide el cliente: {summary}",
    },
    "en": {
        "created": "Hub: appointment booked for {when}{service}.",
        "rescheduled": "Hub: appointment moved to {when}{service}.",
        "canceled": "Hub: appointment on {when} canceled.",
        "no_show": "Hub: the client did not show up for the appointment on {when}.",
        "reminder_failed": "Hub: the reminder ({kind}) could not be delivered on any channel.",
        "merge": "Hub: this contact looks like the same person as Chatwoot contact #{other} ({evidence}). "
        "Check and confirm it with `hub chatwoot merge`; nothing is merged on its own.",
        "handoff": "Hub: conversation handed to a person {reason}. What the client wants: {summary}",
    },
}
WHEN = "{{ start | datetime }}"


def note_text(locale: str, key: str, **values: str) -> str:
    """The note in the tenant's language (its base language; English when the hub has none for it)."""
    table = NOTES.get(locale.split("-")[0].lower(), NOTES["en"])
    return table[key].format(**values)
