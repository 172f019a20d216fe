"""What the rules responder says, per language: Jinja texts a tenant may override in its settings.

Each text is rendered with `hub.render_inline` (the hub's `datetime`, `date`,
`time` and `day` filters, in the contact's language and time zone).
A tenant changes any of them with `[tenants.<slug>.plugins.rules_responder.replies.<lang>]`
(`es`, `en`), key by key; the keys are those of `DEFAULTS["es"]`.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "es": {
        "greeting": "¡Hola{% if name %} {{ name }}{% endif %}! Soy el asistente de {{ tenant }}. Puedo ayudarte a pedir, cambiar, confirmar o cancelar una cita, o darte precios y horarios.",
        "thanks": "¡A ti! Aquí estamos para lo que necesites.",
        "confirmed": "¡Gracias! Tu cita del {{ start | datetime }} queda confirmada.",
        "no_appointment": "No encuentro ninguna cita próxima a tu nombre. ¿Quieres pedir una?",
        "cancel_ask": "¿Seguro que quieres cancelar tu cita del {{ start | datetime }}? Responde SÍ para cancelarla.",
        "canceled": "Tu cita del {{ start | datetime }} ha quedado cancelada.",
        "cancel_kept": "De acuerdo, mantenemos tu cita del {{ start | datetime }}.",
        "slots": "Tengo estos horarios{% if service %} para {{ service }}{% endif %}:\n{% for slot in slots %}{{ loop.index }}) {{ slot | datetime }}\n{% endfor %}Responde con el número del que prefieras.",
        "no_slots": "No tengo horarios libres {% if day %}el {{ day | date }}{% else %}en los próximos días{% endif %}. ¿Te va otro día?",
        "book_ask": "¿Te reservo{% if service %} {{ service }}{% endif %} el {{ start | datetime }}? Responde SÍ para confirmar.",
        "move_ask": "¿Cambio tu cita al {{ start | datetime }}? Responde SÍ para confirmar.",
        "ask_email": "Para reservar necesito tu correo electrónico. ¿Me lo escribes?",
        "bad_email": "No parece un correo válido. ¿Puedes escribirlo de nuevo?",
        "booked": "¡Listo! Tu cita queda reservada para el {{ start | datetime }}.",
        "moved": "¡Listo! Tu cita se ha cambiado al {{ start | datetime }}.",
        "link": "No he podido reservarla directamente. Puedes terminar la reserva aquí: {{ url }}",
        "not_booked": "De acuerdo, no reservo nada. ¿Te busco otro horario?",
        "handoff": "Te paso con una persona del equipo; te responderá en cuanto pueda.",
        "prices": "{% for s in services %}{{ s.name }}{% if s.price %}: {{ s.price }}{% endif %}\n{% endfor %}",
        "address": "Estamos en {{ address }}.",
        "hours": "Nuestro horario: {{ hours }}.",
        "not_understood": "Perdona, no te he entendido. Puedo ayudarte a pedir, cambiar, confirmar o cancelar una cita, o darte precios y horarios.",
        "late": "Gracias por avisar, se lo decimos al equipo.",
    },
    "en": {
        "greeting": "Hi{% if name %} {{ name }}{% endif %}! I'm {{ tenant }}'s assistant. I can book, move, confirm or cancel an appointment, or tell you prices and opening hours.",
        "thanks": "You're welcome! We're here if you need anything.",
        "confirmed": "Thank you! Your appointment on {{ start | datetime }} is confirmed.",
        "no_appointment": "I can't find an upcoming appointment for you. Would you like to book one?",
        "cancel_ask": "Are you sure you want to cancel your appointment on {{ start | datetime }}? Reply YES to cancel it.",
        "canceled": "Your appointment on {{ start | datetime }} is cancelled.",
        "cancel_kept": "OK, we keep your appointment on {{ start | datetime }}.",
        "slots": "These times are free{% if service %} for {{ service }}{% endif %}:\n{% for slot in slots %}{{ loop.index }}) {{ slot | datetime }}\n{% endfor %}Reply with the number you prefer.",
        "no_slots": "There are no free times {% if day %}on {{ day | date }}{% else %}in the next few days{% endif %}. Would another day suit you?",
        "book_ask": "Shall I book{% if service %} {{ service }}{% endif %} on {{ start | datetime }}? Reply YES to confirm.",
        "move_ask": "Shall I move your appointment to {{ start | datetime }}? Reply YES to confirm.",
        "ask_email": "To book I need your email address. Could you type it?",
        "bad_email": "That doesn't look like an email address. Could you type it again?",
        "booked": "Done! Your appointment is booked for {{ start | datetime }}.",
        "moved": "Done! Your appointment is moved to {{ start | datetime }}.",
        "link": "I couldn't book it directly. You can finish the booking here: {{ url }}",
        "not_booked": "OK, nothing booked. Shall I look for another time?",
        "handoff": "I'm passing you to a person on the team; they'll answer as soon as they can.",
        "prices": "{% for s in services %}{{ s.name }}{% if s.price %}: {{ s.price }}{% endif %}\n{% endfor %}",
        "address": "We're at {{ address }}.",
        "hours": "Our opening hours: {{ hours }}.",
        "not_understood": "Sorry, I didn't understand. I can book, move, confirm or cancel an appointment, or tell you prices and opening hours.",
        "late": "Thanks for letting us know, we'll tell the team.",
    },
}

DAY_NAMES = {
    "es": {"mon": "lunes", "tue": "martes", "wed": "miércoles", "thu": "jueves", "fri": "viernes", "sat": "sábado", "sun": "domingo"},
    "en": {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"},
}
RANGE_WORD = {"es": " a ", "en": " to "}


def language(locale: str | None) -> str:
    """The language of a locale that has texts here ("es-MX" -> "es"), else "en"."""
    lang = (locale or "").replace("_", "-").split("-")[0].lower()
    return lang if lang in DEFAULTS else "en"


def hours_text(hours: Mapping[str, str], lang: str) -> str:
    """Opening hours as a sentence part: "lunes a viernes 9:00-19:00, sábado 10:00-14:00"."""
    names = DAY_NAMES.get(lang, DAY_NAMES["en"])
    order = list(DAY_NAMES["en"])
    parts = []
    # Stored as JSON, the table's order is not kept (PostgreSQL's JSONB sorts keys): the week's order is.
    for days, span in sorted(hours.items(), key=lambda item: order.index(item[0].split("-")[0].strip().lower())):
        named = RANGE_WORD.get(lang, " to ").join(names.get(d.strip().lower(), d) for d in days.split("-"))
        parts.append(f"{named} {span}")
    return ", ".join(parts)
