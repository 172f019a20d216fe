"""`hub chat`: a terminal conversation with the responders, as a client, with nothing sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult, config_document, write_toml


def test_hub_chat_shows_intents_answers_and_the_hand_off(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    tenants = {"clinic": {
        "name": "Clínica Sol", "default_region": "ES", "timezone": "Europe/Madrid", "locale": "es",
        "business": {"address": "Calle Mayor 1", "services": [{"name": "Limpieza dental", "price": "45 €", "aliases": ["limpieza"]}]},
    }}
    document = config_document(sqlite_url, hub={"plugin_dirs": []}, tenants=tenants, plugins={"rules_responder": {"enabled": True}})
    config = write_toml(tmp_path / "config.toml", document)
    lines = "Hola\n¿Cuánto cuesta una limpieza?\n\nquiero hablar con una persona\nhola??\n"
    result = run_cli("chat", "--tenant", "clinic", "--from", "600 123 456", config=config, input=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "  [rules_responder] intent: greeting",
        "< ¡Hola! Soy el asistente de Clínica Sol. Puedo ayudarte a pedir, cambiar, confirmar o cancelar una cita, o darte precios y horarios.",
        "  [rules_responder] intent: info",
        "< Limpieza dental: 45 €",
        "  [handed off to a person] asked for a person",
        "  [rules_responder] intent: human",
        "< Te paso con una persona del equipo; te responderá en cuanto pueda.",
        "  (no answer)",
    ]
    listed = run_cli("notifications", "list", "--tenant", "clinic", config=config)
    assert listed.returncode == 0
    replies = [line.split("\t") for line in listed.stdout.splitlines() if "\treply\t" in line]
    assert len(replies) == 3 and all(fields[3] == "canceled" for fields in replies)  # shown, never sent


def test_hub_chat_names_an_unknown_tenant(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    config = write_toml(tmp_path / "config.toml", config_document(sqlite_url, hub={"plugin_dirs": []}))
    result = run_cli("chat", "--tenant", "nope", "--from", "+34600123456", config=config, input="hola\n")
    assert result.returncode == 1 and "nope" in result.stderr and result.stdout == ""
