"""Message templates: the shipped ones render cleanly, lookup order, locales, errors, sandbox, `hub templates check`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.templates import (
    DEFAULT_KINDS,
    SAMPLE_CONTEXT,
    SHIPPED_TEMPLATES,
    SPARSE_SAMPLE_CONTEXT,
    TemplateError,
    Rendered,
    Templates,
    babel_locale,
    locale_chain,
    normalize_locale,
)
from tests.conftest import CliResult, config_document, write_toml

RunCli = Callable[..., CliResult]
MADRID = "Europe/Madrid"


def context(*, name: str | None = "Ana", full: bool = True, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """A dispatcher-shaped context; `full=False` makes every optional value None."""
    return {
        "contact": {"name": name},
        "tenant": {"name": "Clínica Sol"},
        "appointment": {
            "start": "2026-11-24T09:30:00+00:00",
            "end": "2026-11-24T10:00:00+00:00" if full else None,
            "service": "Limpieza dental" if full else None,
            "location": "Calle Mayor 1" if full else None,
            "timezone": MADRID,
            "cancel_url": "https://citas.example.com/c/1" if full else None,
            "reschedule_url": "https://citas.example.com/r/1" if full else None,
        },
        "reason": reason,
        **extra,
    }


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def shipped() -> Templates:
    return Templates([SHIPPED_TEMPLATES])


# --- the shipped templates ---------------------------------------------------

SHIPPED = [(locale, kind, medium) for locale in ("es", "en") for kind in DEFAULT_KINDS for medium in ("sms", "email")]

# What each shipped text message says, per (locale, kind): it must name the right event.
KEY_PHRASES = {
    ("es", "confirmation"): "está confirmada",
    ("es", "reminder"): "te recordamos tu cita",
    ("es", "cancellation"): "ha sido cancelada",
    ("es", "reschedule"): "ha cambiado",
    ("en", "confirmation"): "is confirmed",
    ("en", "reminder"): "a reminder of your appointment",
    ("en", "cancellation"): "has been cancelled",
    ("en", "reschedule"): "has been moved",
}
WHEN = {"es": "martes, 24 de noviembre de 2026, 10:30", "en": "Tuesday, November 24, 2026, 10:30 AM"}


def parts(rendered: Any) -> list[str]:
    return [part for part in (rendered.subject, rendered.text, rendered.html) if part is not None]


def assert_no_holes(text: str) -> None:
    assert "None" not in text
    assert not re.search(r"[ \t]{2,}\S|\S[ \t]+[,.:;)]|\(\s|[ \t]+\n|\n{3,}", text), text


@pytest.mark.parametrize(("locale", "kind", "medium"), SHIPPED)
def test_shipped_template_with_every_value(shipped: Templates, locale: str, kind: str, medium: str) -> None:
    rendered = shipped.render(
        kind=kind, medium=medium, locale=locale, timezone=MADRID, context=context(reason="La doctora está enferma")
    )
    assert KEY_PHRASES[locale, kind] in rendered.text.lower()
    for part in parts(rendered):
        assert WHEN[locale] in part or part is rendered.subject
        assert "Clínica Sol" in part
    assert "Ana" in rendered.text and "Limpieza dental" in rendered.text
    assert "https://citas.example.com/r/1" in rendered.text
    if kind == "cancellation":
        assert "La doctora está enferma" in rendered.text
        assert "https://citas.example.com/c/1" not in rendered.text  # nothing left to cancel
    else:
        assert "Calle Mayor 1" in rendered.text
        assert "https://citas.example.com/c/1" in rendered.text
    if medium == "email":
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.html and rendered.html.startswith("<!DOCTYPE html>") and f'lang="{locale}"' in rendered.html
        assert 'href="https://citas.example.com/r/1"' in rendered.html
        assert_no_holes(rendered.text)
    else:
        assert rendered.subject is None and rendered.html is None
        assert len(rendered.text) < 300, rendered.text
        assert_no_holes(rendered.text)


@pytest.mark.parametrize(("locale", "kind", "medium"), SHIPPED)
def test_shipped_template_with_every_optional_missing(shipped: Templates, locale: str, kind: str, medium: str) -> None:
    rendered = shipped.render(kind=kind, medium=medium, locale=locale, timezone=MADRID, context=context(name=None, full=False))
    for part in parts(rendered):
        assert "None" not in part
        assert "https://" not in part
        assert "<a " not in part
    assert_no_holes(rendered.text)
    assert WHEN[locale] in rendered.text
    greeting = {"es": "Hola", "en": "Hi"}[locale]
    assert re.match(rf"{greeting}[,:]", rendered.text), rendered.text  # "Hola," not "Hola ,"


def test_check_passes_on_the_shipped_templates(shipped: Templates) -> None:
    lookup = {"kinds": DEFAULT_KINDS, "mediums": ("whatsapp", "sms", "chatwoot", "email"), "locales": ("es-MX", "es", "en")}
    assert shipped.check(**lookup) == []
    # The text file serves three mediums: 2 locales x 4 kinds x (text + email).
    assert len(shipped.found(**lookup)) == 16


def test_sample_contexts_are_immutable() -> None:
    with pytest.raises(TypeError):
        SAMPLE_CONTEXT["reason"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        SPARSE_SAMPLE_CONTEXT["appointment"]["service"] = "x"
    assert SPARSE_SAMPLE_CONTEXT["contact"]["name"] is None and SAMPLE_CONTEXT["contact"]["name"]


# --- dates, times and locales ---------------------------------------------------

DATES: list[tuple[str, str, str, str]] = [
    # (template, locale, timezone, expected)
    ("{{ appointment.start | datetime }}", "es", MADRID, "martes, 24 de noviembre de 2026, 10:30"),
    ("{{ appointment.start | datetime }}", "en", MADRID, "Tuesday, November 24, 2026, 10:30 AM"),
    # 09:30 UTC is 03:30 in Mexico City (UTC-6): the date is the same, the hour is not.
    ("{{ appointment.start | datetime }}", "es-MX", "America/Mexico_City", "martes, 24 de noviembre de 2026, 3:30 a.m."),
    ("{{ appointment.start | time }}", "es", "America/Bogota", "4:30"),
    # Crossing midnight moves the day: 09:30 UTC on the 24th is the 23rd at 23:30 in Honolulu.
    ("{{ appointment.start | date }}", "en", "Pacific/Honolulu", "Monday, November 23, 2026"),
    ("{{ appointment.start | day }}", "es", MADRID, "martes 24"),
    ("{{ appointment.start | day }}", "en", MADRID, "Tuesday 24"),
    ("{{ appointment.start | date }}", "es_ES", MADRID, "martes, 24 de noviembre de 2026"),
    ("{{ start | time }}", "es", MADRID, "10:30"),  # an aware datetime object, not a string
    ("{{ '2026-11-24T09:30:00Z' | time }}", "es", MADRID, "10:30"),  # the Z suffix
    ("{{ '2026-07-01T09:30:00' | time }}", "es", MADRID, "11:30"),  # naive means UTC; summer time
]


@pytest.mark.parametrize(("source", "locale", "timezone", "expected"), DATES)
def test_date_filters(tmp_path: Path, source: str, locale: str, timezone: str, expected: str) -> None:
    write(tmp_path, "en/probe.text.j2", source)
    rendered = Templates([tmp_path]).render(
        kind="probe", medium="sms", locale=locale, timezone=timezone, context=context(start=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    )
    assert rendered.text == expected


def test_times_use_plain_spaces_for_sms(tmp_path: Path) -> None:
    # CLDR writes "10:30\u202fAM"; a narrow no-break space would force an SMS into UCS-2.
    write(tmp_path, "en/probe.text.j2", "{{ appointment.start | time }}")
    text = Templates([tmp_path]).render(kind="probe", medium="sms", locale="en", timezone=MADRID, context=context()).text
    assert text == "10:30 AM" and text.isascii()


def test_filter_given_a_bad_value_names_the_template_and_line(tmp_path: Path) -> None:
    write(tmp_path, "en/probe.text.j2", "Hello\n{{ appointment.end | datetime }}\n")
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path]).render(kind="probe", medium="sms", locale="en", timezone=MADRID, context=context(full=False))
    assert (caught.value.template, caught.value.line, caught.value.reason) == ("en/probe.text.j2", 2, "broken")
    assert "NoneType" in str(caught.value)


LOCALES: list[tuple[str, str, tuple[str, ...], str]] = [
    # (given, normalised, folders tried, babel locale)
    ("es-MX", "es-MX", ("es-MX", "es", "en"), "es_MX"),
    ("es_mx", "es-MX", ("es-MX", "es", "en"), "es_MX"),
    ("ES", "es", ("es", "en"), "es"),
    ("en", "en", ("en",), "en"),
    ("es_ES.UTF-8", "es-ES", ("es-ES", "es", "en"), "es_ES"),
    ("es-XX", "es-XX", ("es-XX", "es", "en"), "es"),  # unknown region: the language
    ("zz", "zz", ("zz", "en"), "en"),  # unknown language: English
    ("", "en", ("en",), "en"),
]


@pytest.mark.parametrize(("given", "normal", "chain", "babel"), LOCALES)
def test_locales(given: str, normal: str, chain: tuple[str, ...], babel: str) -> None:
    assert normalize_locale(given) == normal
    assert locale_chain(given) == chain
    assert babel_locale(given) == babel


# --- lookup order --------------------------------------------------------------

def test_locale_falls_back_from_region_to_language_to_english(shipped: Templates, tmp_path: Path) -> None:
    assert shipped.find(kind="reminder", medium="whatsapp", locale="es-MX") == "es/reminder.text.j2"
    assert shipped.find(kind="reminder", medium="whatsapp", locale="es_MX") == "es/reminder.text.j2"
    assert shipped.find(kind="reminder", medium="email", locale="pt-BR") == "en/reminder.email.j2"
    write(tmp_path, "es-MX/reminder.text.j2", "Hola desde México")
    assert shipped.find(kind="reminder", medium="sms", locale="es_MX", tenant_dir=tmp_path) == "es-MX/reminder.text.j2"
    # The regional folder is not used for plain Spanish.
    assert shipped.find(kind="reminder", medium="sms", locale="es", tenant_dir=tmp_path) == "es/reminder.text.j2"


def test_tenant_folder_overrides_the_shipped_template(shipped: Templates, tmp_path: Path) -> None:
    write(tmp_path, "es/reminder.text.j2", "Hola {{ contact.name }}, nos vemos el {{ appointment.start | day }}.")
    rendered = shipped.render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=context(), tenant_dir=tmp_path)
    assert rendered.text == "Hola Ana, nos vemos el martes 24."
    # Without the tenant folder the same instance still renders the shipped one.
    plain = shipped.render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=context())
    assert plain.text.startswith("Hola Ana, te recordamos")


def test_plugin_folder_comes_before_the_shipped_one(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    write(plugin, "en/reminder.whatsapp.j2", "*Reminder*: {{ appointment.start | time }}")
    templates = Templates([plugin, SHIPPED_TEMPLATES])
    whatsapp = templates.render(kind="reminder", medium="whatsapp", locale="en", timezone=MADRID, context=context())
    assert whatsapp.text == "*Reminder*: 10:30 AM"
    sms = templates.render(kind="reminder", medium="sms", locale="en", timezone=MADRID, context=context())
    assert sms.text.startswith("Hi Ana, a reminder")  # no sms file in the plugin: the shipped text one


def test_order_is_locale_then_folder_then_medium(tmp_path: Path) -> None:
    tenant, plugin = tmp_path / "tenant", tmp_path / "plugin"
    write(tenant, "es/reminder.text.j2", "tenant text")
    write(tenant, "en/reminder.whatsapp.j2", "tenant english whatsapp")
    write(plugin, "es/reminder.whatsapp.j2", "plugin whatsapp")
    templates = Templates([plugin])
    # The tenant's own text file beats a plugin's medium-specific one...
    assert templates.render(kind="reminder", medium="whatsapp", locale="es", timezone=MADRID, context=context(), tenant_dir=tenant).text == "tenant text"
    # ...but never a template in a better-matching language.
    assert templates.render(kind="reminder", medium="whatsapp", locale="es", timezone=MADRID, context=context()).text == "plugin whatsapp"
    write(plugin, "es/reminder.text.j2", "plugin text")
    assert templates.find(kind="reminder", medium="sms", locale="es", tenant_dir=tenant) == "es/reminder.text.j2"
    assert templates.render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=context(), tenant_dir=tenant).text == "tenant text"


def test_tenants_do_not_see_each_others_templates(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, "en/reminder.text.j2", "one")
    write(two, "en/reminder.text.j2", "two")
    templates = Templates([SHIPPED_TEMPLATES])
    render = lambda folder: templates.render(  # noqa: E731
        kind="reminder", medium="sms", locale="en", timezone=MADRID, context=context(), tenant_dir=folder
    ).text
    assert (render(one), render(two), render(one)) == ("one", "two", "one")


def test_edited_template_is_picked_up(tmp_path: Path) -> None:
    path = write(tmp_path, "en/reminder.text.j2", "first")
    templates = Templates([tmp_path])
    args: dict[str, Any] = {"kind": "reminder", "medium": "sms", "locale": "en", "timezone": MADRID, "context": context()}
    assert templates.render(**args).text == "first"
    path.write_text("second version")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert templates.render(**args).text == "second version"


# --- errors -------------------------------------------------------------------

def test_missing_template_names_what_was_looked_for(tmp_path: Path) -> None:
    write(tmp_path, "es/reminder.text.j2", "solo texto")
    templates = Templates([tmp_path])
    with pytest.raises(TemplateError) as caught:
        templates.find(kind="reminder", medium="email", locale="es-MX")  # email never falls back to text
    error = caught.value
    assert error.reason == "missing" and error.template == "es-MX/reminder.email.j2"
    for tried in ("es-MX/reminder.email.j2", "es/reminder.email.j2", "en/reminder.email.j2", str(tmp_path)):
        assert tried in str(error)
    with pytest.raises(TemplateError, match="no followup template for sms in es") as other:
        templates.render(kind="followup", medium="sms", locale="es", timezone=MADRID, context=context())
    assert other.value.reason == "missing" and "es/followup.sms.j2, es/followup.text.j2" in str(other.value)


def test_path_like_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "secret.text.j2", "not a template")
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path / "en"]).find(kind="../secret", medium="sms", locale="en")
    assert caught.value.reason == "missing"


UNDEFINED: list[tuple[str, dict[str, Any], str, int]] = [
    # (template source, context, variable named, line)
    ("Hola {{ client }}", context(), "client", 1),
    ("Hola\n{{ appointment.room }}", context(), "room", 2),  # 'dict object' has no attribute 'room'
    ("{% if contact.name %}\n{{ contact.name.first }}\n{% endif %}", context(), "first", 2),
    ("{{ appointment.start | datetime }}", {"contact": {"name": None}}, "appointment", 1),
    ("{{ appointment.rooms[0] }}", context(), "rooms", 1),
    ("{{ appointment.start | datetime }}", context(appointment=None), "start", 1),  # 'None' has no attribute
]


@pytest.mark.parametrize(("source", "values", "variable", "line"), UNDEFINED)
def test_undefined_variable_names_template_and_variable(tmp_path: Path, source: str, values: dict[str, Any], variable: str, line: int) -> None:
    write(tmp_path, "es/reminder.text.j2", source)
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path]).render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=values)
    error = caught.value
    assert (error.template, error.variable, error.reason, error.line) == ("es/reminder.text.j2", variable, "undefined", line)
    assert str(error) == f"es/reminder.text.j2:{line}: undefined variable {variable!r}"


def test_undefined_variable_in_an_email_block(tmp_path: Path) -> None:
    write(tmp_path, "en/reminder.email.j2", "{% block subject %}Hi{% endblock %}\n{% block text %}ok{% endblock %}\n{% block html %}\n<p>{{ tenant.logo }}</p>\n{% endblock %}\n")
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path]).render(kind="reminder", medium="email", locale="en", timezone=MADRID, context=context())
    assert (caught.value.variable, caught.value.line) == ("logo", 4)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    write(tmp_path, "es/reminder.text.j2", "Hola\n{% if contact.name %}\n{{ contact.name }\n")
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path]).render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=context())
    assert (caught.value.template, caught.value.reason, caught.value.line) == ("es/reminder.text.j2", "syntax", 3)
    assert str(caught.value).startswith("es/reminder.text.j2:3: syntax error")


EMAIL_PROBLEMS: list[tuple[str, str]] = [
    ("{% block subject %}Hi{% endblock %}{% block text %}ok{% endblock %}", "block html"),
    ("just text, no blocks", "block subject"),
    ("{% block subject %}{% if contact.name %}x{% endif %}{% endblock %}{% block text %}t{% endblock %}{% block html %}h{% endblock %}", "subject block rendered empty"),
]


@pytest.mark.parametrize(("source", "problem"), EMAIL_PROBLEMS)
def test_broken_email_templates(tmp_path: Path, source: str, problem: str) -> None:
    write(tmp_path, "en/reminder.email.j2", source)
    with pytest.raises(TemplateError, match=problem) as caught:
        Templates([tmp_path]).render(kind="reminder", medium="email", locale="en", timezone=MADRID, context=context(name=None))
    assert caught.value.template == "en/reminder.email.j2" and caught.value.reason == "broken"


# --- email blocks and escaping ---------------------------------------------------

def test_email_blocks_are_rendered_separately_and_escaped_only_in_html(shipped: Templates) -> None:
    rendered = shipped.render(kind="reminder", medium="email", locale="es", timezone=MADRID, context=context(name="<b>Ana</b> & Co"))
    assert rendered.text.startswith("Hola <b>Ana</b> & Co:")
    assert rendered.html and "Hola &lt;b&gt;Ana&lt;/b&gt; &amp; Co:" in rendered.html and "<b>Ana</b>" not in rendered.html
    assert rendered.subject == "Recordatorio: tu cita en Clínica Sol el martes, 24 de noviembre de 2026"
    assert "<" not in rendered.text.replace("<b>Ana</b>", "")  # no HTML leaks into the text part
    assert "{%" not in rendered.html and "block" not in rendered.text


def test_subject_is_one_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "en/reminder.email.j2",
        "{% block subject %}\n  Your visit\n  to {{ tenant.name }}\n{% endblock %}{% block text %}T{% endblock %}{% block html %}<p>H</p>{% endblock %}",
    )
    rendered = Templates([tmp_path]).render(kind="reminder", medium="email", locale="en", timezone=MADRID, context=context())
    assert rendered == Rendered(text="T", subject="Your visit to Clínica Sol", html="<p>H</p>")


def test_text_templates_are_not_escaped(tmp_path: Path) -> None:
    write(tmp_path, "es/reminder.text.j2", "\n\n  Hola {{ contact.name }} & {{ tenant.name }}  \n\n")
    rendered = Templates([tmp_path]).render(kind="reminder", medium="sms", locale="es", timezone=MADRID, context=context(name="<Ana>"))
    assert rendered.text == "Hola <Ana> & Clínica Sol"


# --- the sandbox ------------------------------------------------------------------

UNSAFE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ contact.__class__ }}",
    "{{ appointment.update({'service': 'x'}) }}",
    "{% set names = [] %}{{ names.append(contact.name) }}",
    "{{ cycler.__init__.__globals__ }}",
]


@pytest.mark.parametrize("source", UNSAFE)
def test_sandbox_refuses_internals_and_mutation(tmp_path: Path, source: str) -> None:
    write(tmp_path, "en/probe.text.j2", source)
    values = context()
    with pytest.raises(TemplateError) as caught:
        Templates([tmp_path]).render(kind="probe", medium="sms", locale="en", timezone=MADRID, context=values)
    assert caught.value.reason == "unsafe" and caught.value.template == "en/probe.text.j2"
    assert values["appointment"]["service"] == "Limpieza dental"


# --- check ------------------------------------------------------------------------

def test_check_reports_each_problem_on_one_line(tmp_path: Path) -> None:
    write(tmp_path, "es/reminder.text.j2", "Hola {{ contact.name }}, {{ appointment.service | upper }}")
    write(tmp_path, "es/confirmation.text.j2", "Hola {{ contact.nombre }}")
    write(tmp_path, "es/cancellation.text.j2", "{% if %}")
    problems = Templates([SHIPPED_TEMPLATES]).check(kinds=DEFAULT_KINDS, mediums=("sms", "whatsapp"), locales=("es",), tenant_dir=tmp_path)
    assert problems == [
        "es/confirmation.text.j2:1: undefined variable 'nombre'",
        "es/reminder.text.j2: shows 'None' when an optional value is missing (guard it with {% if %})",
        "es/cancellation.text.j2:1: syntax error: Expected an expression, got 'end of statement block'",
    ]


def test_check_reports_a_missing_email_template(tmp_path: Path) -> None:
    write(tmp_path, "en/followup.text.j2", "Hi")
    problems = Templates([tmp_path]).check(kinds=("followup",), mediums=("sms", "email"), locales=("en",))
    assert len(problems) == 1 and problems[0].startswith("en/followup.email.j2: no followup template for email in en")


# --- the command line -------------------------------------------------------------

def test_cli_check_passes_on_the_shipped_templates(sqlite_url: str, tmp_path: Path, run_cli: RunCli) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url))
    result = run_cli("templates", "check", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    # Two Spanish tenants: each uses es and en, text and email, for four kinds.
    assert result.stdout.splitlines() == ["ok: 40 templates checked"]
    one = run_cli("templates", "check", "--tenant", "salon", config=config)
    assert (one.returncode, one.stdout) == (0, "ok: 20 templates checked\n")
    unknown = run_cli("templates", "check", "--tenant", "nobody", config=config)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


def test_cli_check_fails_on_a_broken_plugin_template(sqlite_url: str, tmp_path: Path, run_cli: RunCli) -> None:
    plugins = tmp_path / "extra_plugins"  # not "plugins": python -m puts the cwd first on sys.path
    write(
        plugins,
        "broken_templates.py",
        "from pathlib import Path\nfrom hub import hookimpl\n\n\n@hookimpl\ndef register_template_dirs() -> list[str]:\n"
        "    return [str(Path(__file__).parent / 'templates')]\n",
    )
    write(plugins, "templates/es/reminder.whatsapp.j2", "Hola {{ cliente }}")
    document = config_document(sqlite_url)
    document["hub"]["plugin_dirs"].append(str(plugins))
    config = write_toml(tmp_path / "config.toml", document)
    result = run_cli("templates", "check", "--tenant", "clinic", config=config)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "clinic: es/reminder.whatsapp.j2:1: undefined variable 'cliente'",
        "failed: 1 problems, 21 templates checked",
    ]


def test_render_inline_uses_the_same_filters_and_sandbox() -> None:
    library = Templates([SHIPPED_TEMPLATES])
    context = {"appointment": {"start": "2026-11-24T09:30:00+00:00"}}
    text = library.render_inline("{{ appointment.start | datetime }}", locale="es", timezone="Europe/Madrid", context=context)
    assert text == "martes, 24 de noviembre de 2026, 10:30"
    with pytest.raises(TemplateError) as info:
        library.render_inline("{{ missing }}", locale="es", timezone="UTC", context={}, name="twilio:reminder:1")
    assert info.value.variable == "missing" and "twilio:reminder:1" in str(info.value)
