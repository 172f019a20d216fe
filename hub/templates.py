"""Message templates: find a tenant's, a plugin's or the shipped template and render it.

Templates live in `<dir>/<locale>/<kind>.<medium>.j2` and are Jinja2, run in
an immutable sandbox because tenants write them. See templates/README.md for
what template authors may use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound, TemplateSyntaxError, Undefined, UndefinedError
from jinja2 import pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hub.errors import TemplateError

INLINE_CACHE = 512
"""Most inline template sources kept compiled."""

DEFAULT_KINDS = ("confirmation", "reminder", "cancellation", "reschedule")
FALLBACK_LOCALE = "en"
EMAIL = "email"
TEXT = "text"
EMAIL_BLOCKS = ("subject", "text", "html")
SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
"""The repository's templates/ folder: searched last."""

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']*)' is undefined$")
_MISSING_MEMBER = re.compile(r" has no (?:attribute|element) '?(?P<name>.*?)'?$")


@dataclass(frozen=True)
class Rendered:
    """A rendered message: the plain-text body, and for email a subject and an HTML part."""

    text: str
    """The SMS/WhatsApp body, or the email's text part."""
    subject: str | None = None
    html: str | None = None


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    return value


SAMPLE_CONTEXT: Mapping[str, Any] = _frozen(
    {
        "contact": {"name": "Ana García"},
        "tenant": {"name": "Clínica Sol"},
        "appointment": {
            "start": "2026-11-24T09:30:00+00:00",
            "end": "2026-11-24T10:00:00+00:00",
            "service": "Limpieza dental",
            "location": "Calle Mayor 1, Madrid",
            "timezone": "Europe/Madrid",
            "cancel_url": "https://citas.example.com/c/7Hq2",
            "reschedule_url": "https://citas.example.com/r/7Hq2",
        },
        "reason": "La doctora no puede atender ese día",
        "text": "Mañana cerramos a las 14:00.",
        "subject": "Horario de mañana",
    }
)
"""A realistic context with every optional value present: what `check` renders."""

SPARSE_SAMPLE_CONTEXT: Mapping[str, Any] = _frozen(
    {
        "contact": {"name": None},
        "tenant": {"name": "Clínica Sol"},
        "appointment": {
            "start": "2026-11-24T09:30:00+00:00",
            "end": None,
            "service": None,
            "location": None,
            "timezone": "Europe/Madrid",
            "cancel_url": None,
            "reschedule_url": None,
        },
        "reason": None,
        "text": "Mañana cerramos a las 14:00.",
    }
)
"""The same with every optional value None: `check` renders this too, so an unguarded optional shows up."""


@functools.lru_cache(maxsize=256)
def normalize_locale(tag: str) -> str:
    """A locale in the one form template folders use: `es-MX`, `es`, `zh-Hant-TW` (`en` when unusable)."""
    # POSIX locales may carry an encoding or modifier (es_ES.UTF-8@euro).
    parts = [part for part in re.split(r"[-_]", tag.strip().split(".")[0].split("@")[0]) if part]
    if not parts or not all(part.isascii() and part.isalnum() for part in parts) or not parts[0].isalpha():
        return FALLBACK_LOCALE
    shaped = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            shaped.append(part.title())
        elif len(part) == 2 or (len(part) == 3 and part.isdigit()):
            shaped.append(part.upper())
        else:
            shaped.append(part.lower())
    return "-".join(shaped)


@functools.lru_cache(maxsize=256)
def locale_chain(tag: str) -> tuple[str, ...]:
    """Template folders to try for a locale, most specific first: `es-MX`, `es`, `en`."""
    exact = normalize_locale(tag)
    chain = [exact, exact.split("-")[0], FALLBACK_LOCALE]
    return tuple(dict.fromkeys(chain))


@functools.lru_cache(maxsize=256)
def babel_locale(tag: str) -> str:
    """The babel locale for a tag (`es-MX` → `es_MX`); an unknown one falls back to its language, then `en`."""
    for candidate in locale_chain(tag):
        try:
            return str(Locale.parse(candidate.replace("-", "_")))
        except (UnknownLocaleError, ValueError):
            continue
    return FALLBACK_LOCALE


def _moment(value: Any, timezone: str) -> datetime:
    """An aware datetime (or ISO 8601 string) converted to `timezone`."""
    if isinstance(value, Undefined):
        str(value)  # a StrictUndefined raises the UndefinedError that names the variable
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date and time: {value!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a date and time, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the hub stores every time in UTC
    return value.astimezone(ZoneInfo(timezone))


def _day(value: Any, timezone: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # a bare date has no time zone to convert
    return _moment(value, timezone)


def _plain_spaces(text: str) -> str:
    # CLDR puts narrow and ordinary no-break spaces in times ("10:30\u202fAM");
    # either forces an SMS into UCS-2, halving how much fits in one segment.
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def _settings(context: Context) -> tuple[str, str]:
    return str(context.get("_locale", FALLBACK_LOCALE)), str(context.get("_timezone", "UTC"))


@pass_context
def datetime_filter(context: Context, value: Any) -> str:
    """Long localised date and time: "martes, 24 de noviembre de 2026, 10:30"."""
    locale, timezone = _settings(context)
    moment = _moment(value, timezone)
    day = format_date(moment, format="full", locale=locale)
    return _plain_spaces(f"{day}, {format_time(moment, format='short', locale=locale)}")


@pass_context
def date_filter(context: Context, value: Any) -> str:
    """Full localised date: "martes, 24 de noviembre de 2026"."""
    locale, timezone = _settings(context)
    return _plain_spaces(format_date(_day(value, timezone), format="full", locale=locale))


@pass_context
def time_filter(context: Context, value: Any) -> str:
    """Short localised time: "10:30", "10:30 AM"."""
    locale, timezone = _settings(context)
    return _plain_spaces(format_time(_moment(value, timezone), format="short", locale=locale))


@pass_context
def day_filter(context: Context, value: Any) -> str:
    """Weekday and day of the month: "martes 24", "Tuesday 24"."""
    locale, timezone = _settings(context)
    return _plain_spaces(format_date(_day(value, timezone), format="EEEE d", locale=locale))


FILTERS: Mapping[str, Callable[..., str]] = MappingProxyType(
    {"datetime": datetime_filter, "date": date_filter, "time": time_filter, "day": day_filter}
)


def _tidy(text: str) -> str:
    # Optional lines dropped by {% if %} leave trailing spaces and runs of blank lines.
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _template_line(exc: BaseException, template: Template) -> int | None:
    """The template line an exception was raised at, from the compiled template's frames."""
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if template.filename and tb.tb_frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _undefined_variable(message: str) -> str:
    """The variable or attribute a jinja2 UndefinedError message names."""
    if match := _UNDEFINED_NAME.match(message):
        return match["name"]
    if match := _MISSING_MEMBER.search(message):
        return match["name"]
    return message


class Templates:
    """Finds and renders message templates from a tenant's folder, plugin folders and the shipped ones."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = tuple(Path(d) for d in dirs)
        """Shared search folders in order: plugin template dirs, then the repo's templates/."""
        # One environment per (tenant folder, html?) so each template compiles once;
        # autoescape is fixed when a template compiles, hence a separate html one.
        self._environments: dict[tuple[Path | None, bool], ImmutableSandboxedEnvironment] = {}
        self._found: dict[tuple[str, str, str, Path | None], str] = {}
        # Inline sources compiled once: a responder renders the same few reply texts for every message.
        self._inline: dict[str, Template] = {}

    def search_path(self, tenant_dir: Path | None = None) -> tuple[Path, ...]:
        """The folders searched, in order: the tenant's own, then the shared ones."""
        return (tenant_dir, *self.dirs) if tenant_dir is not None else self.dirs

    def find(self, *, kind: str, medium: str, locale: str, tenant_dir: Path | None = None) -> str:
        """The template name that would be used (`es/reminder.text.j2`), or raise TemplateError "missing".

        Found names are remembered (the lookup stats several files and runs on every send):
        a template added where none was found before is seen at once, but a new file that
        would shadow one already found (a tenant override) needs a restart of the workers.
        Edits to a template's text are picked up by jinja as they are made.
        """
        key = (kind, medium, locale, tenant_dir)
        if key in self._found:
            return self._found[key]
        name = self._find(kind=kind, medium=medium, locale=locale, tenant_dir=tenant_dir)
        self._found[key] = name
        return name

    def _find(self, *, kind: str, medium: str, locale: str, tenant_dir: Path | None) -> str:
        for name in (kind, medium):
            if not _NAME.fullmatch(name):
                raise TemplateError(f"{kind}.{medium}", "missing", f"not a template name: {name!r}")
        files = [f"{kind}.{medium}.j2"] if medium in (EMAIL, TEXT) else [f"{kind}.{medium}.j2", f"{kind}.{TEXT}.j2"]
        folders = self.search_path(tenant_dir)
        tried: list[str] = []
        # Locale outermost, then folder, then file: a tenant's text template beats a
        # plugin's medium-specific one, but never a better-matching language.
        # For the chosen name, the chosen folder is also the first one holding it,
        # which is the file jinja's FileSystemLoader will load.
        for folder_locale in locale_chain(locale):
            for folder in folders:
                for file in files:
                    if (folder / folder_locale / file).is_file():
                        return f"{folder_locale}/{file}"
            tried.extend(f"{folder_locale}/{file}" for file in files)
        raise TemplateError(
            tried[0],
            "missing",
            f"no {kind} template for {medium} in {locale}: looked for {', '.join(tried)} "
            f"in {', '.join(str(folder) for folder in folders) or 'no folders'}",
        )

    def render(
        self,
        *,
        kind: str,
        medium: str,
        locale: str,
        timezone: str,
        context: Mapping[str, Any],
        tenant_dir: Path | None = None,
    ) -> Rendered:
        """Render the template for this kind, medium and locale; times shown in `timezone`."""
        name = self.find(kind=kind, medium=medium, locale=locale, tenant_dir=tenant_dir)
        return self._render(name, email=medium == EMAIL, locale=locale, timezone=timezone, context=context, tenant_dir=tenant_dir)

    def found(
        self, *, kinds: Sequence[str], mediums: Sequence[str], locales: Sequence[str], tenant_dir: Path | None = None
    ) -> list[str]:
        """The distinct template names these combinations use, missing ones left out."""
        lookups = self._lookups(kinds, mediums, locales, tenant_dir)
        return list(dict.fromkeys(name for _, _, name in lookups if isinstance(name, str)))

    def check(
        self, *, kinds: Sequence[str], mediums: Sequence[str], locales: Sequence[str], tenant_dir: Path | None = None
    ) -> list[str]:
        """Problems, one human line each: missing templates, and each found one rendered with the sample contexts."""
        problems: list[str] = []
        rendered: set[str] = set()
        for locale, medium, found in self._lookups(kinds, mediums, locales, tenant_dir):
            if isinstance(found, TemplateError):
                problems.append(str(found))
                continue
            if found in rendered:
                continue  # one text template serves several mediums
            rendered.add(found)
            for sample in (SAMPLE_CONTEXT, SPARSE_SAMPLE_CONTEXT):
                try:
                    result = self._render(
                        found,
                        email=medium == EMAIL,
                        locale=locale,
                        timezone=sample["appointment"]["timezone"],
                        context=sample,
                        tenant_dir=tenant_dir,
                    )
                except TemplateError as exc:
                    problems.append(str(exc))
                    break
                parts = (result.subject or "", result.text, result.html or "")
                if any(re.search(r"\bNone\b", part) for part in parts):
                    problems.append(f"{found}: shows 'None' when an optional value is missing (guard it with {{% if %}})")
                    break
        return problems

    # --- internals ----------------------------------------------------------

    def _lookups(
        self, kinds: Sequence[str], mediums: Sequence[str], locales: Sequence[str], tenant_dir: Path | None
    ) -> Iterator[tuple[str, str, str | TemplateError]]:
        for locale in dict.fromkeys(locales):
            for kind in kinds:
                for medium in mediums:
                    try:
                        yield locale, medium, self.find(kind=kind, medium=medium, locale=locale, tenant_dir=tenant_dir)
                    except TemplateError as exc:
                        yield locale, medium, exc

    def render_inline(self, source: str, *, locale: str, timezone: str, context: Mapping[str, Any], name: str = "<inline>") -> str:
        """Render a short template given as text (e.g. a vendor template's variable) with the same filters and sandbox."""
        template = self._inline.get(source)
        if template is None:
            try:
                template = self._environment(None, html=False).from_string(source)
            except TemplateSyntaxError as exc:
                raise TemplateError(name, "syntax", f"syntax error: {exc.message}", line=exc.lineno) from None
            if len(self._inline) >= INLINE_CACHE:
                self._inline.clear()  # sources come from config and plugins: a bound, not an eviction policy
            self._inline[source] = template
        variables = {**context, "_locale": babel_locale(locale), "_timezone": timezone}
        return self._run(name, template, template.root_render_func, variables).strip()

    def _environment(self, tenant_dir: Path | None, *, html: bool) -> ImmutableSandboxedEnvironment:
        key = (tenant_dir, html)
        environment = self._environments.get(key)
        if environment is None:
            environment = ImmutableSandboxedEnvironment(
                loader=FileSystemLoader(self.search_path(tenant_dir)),
                undefined=StrictUndefined,
                autoescape=html,
                # Block tags alone on a line leave no blank line: templates stay readable.
                trim_blocks=True,
                lstrip_blocks=True,
            )
            environment.filters.update(FILTERS)
            self._environments[key] = environment
        return environment

    def _load(self, name: str, tenant_dir: Path | None, *, html: bool) -> Template:
        try:
            return self._environment(tenant_dir, html=html).get_template(name)
        except TemplateSyntaxError as exc:
            raise TemplateError(name, "syntax", f"syntax error: {exc.message}", line=exc.lineno) from None
        except TemplateNotFound:
            raise TemplateError(name, "missing", "template disappeared while loading") from None
        except UnicodeDecodeError:
            raise TemplateError(name, "broken", "not UTF-8 text") from None

    def _render(
        self,
        name: str,
        *,
        email: bool,
        locale: str,
        timezone: str,
        context: Mapping[str, Any],
        tenant_dir: Path | None,
    ) -> Rendered:
        variables = {**context, "_locale": babel_locale(locale), "_timezone": timezone}
        text_template = self._load(name, tenant_dir, html=False)
        if not email:
            return Rendered(text=_tidy(self._run(name, text_template, text_template.root_render_func, variables)))
        html_template = self._load(name, tenant_dir, html=True)
        subject = " ".join(self._block(name, text_template, "subject", variables).split())
        if not subject:
            raise TemplateError(name, "broken", "the subject block rendered empty")
        return Rendered(
            text=_tidy(self._block(name, text_template, "text", variables)),
            subject=subject,
            html=self._block(name, html_template, "html", variables).strip(),
        )

    def _block(self, name: str, template: Template, block: str, variables: dict[str, Any]) -> str:
        if block not in template.blocks:
            has = ", ".join(template.blocks) or "no blocks"
            raise TemplateError(name, "broken", f"an email template needs {{% block {block} %}} (it has {has})")
        return self._run(name, template, template.blocks[block], variables)

    def _run(
        self, name: str, template: Template, render: Callable[[Context], Iterable[str]], variables: dict[str, Any]
    ) -> str:
        try:
            return "".join(render(template.new_context(variables)))
        except TemplateError:
            raise
        except SecurityError as exc:
            raise TemplateError(name, "unsafe", f"not allowed: {exc}", line=_template_line(exc, template)) from None
        except UndefinedError as exc:
            variable = _undefined_variable(exc.message or str(exc))
            raise TemplateError(
                name, "undefined", f"undefined variable {variable!r}", variable=variable, line=_template_line(exc, template)
            ) from None
        except Exception as exc:
            # Tenants' templates fail in arbitrary ways (a filter given a bad value, a
            # division by zero); callers need one error type that names the template.
            raise TemplateError(name, "broken", f"{type(exc).__name__}: {exc}", line=_template_line(exc, template)) from None
