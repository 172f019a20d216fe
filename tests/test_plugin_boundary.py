"""The plugin contract is enforced: plugins use the port and `hub`'s exported names, nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hub
from hub.port import HubPort

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py"))
PORT_MEMBERS = frozenset(name for name in dir(HubPort) if not name.startswith("_"))
HUB_NAMES = frozenset(hub.__all__)


def violations(source: str, filename: str = "<plugin>") -> list[str]:
    """What a plugin module uses beyond the port and `hub`'s exports, one line each."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name == "hub" or a.name.startswith("hub.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("hub."):
                found.append(f"{where}: from {node.module} import ...")
            elif node.module == "hub":
                found += [f"{where}: hub.{a.name} is not exported" for a in node.names if a.name not in HUB_NAMES]
        elif isinstance(node, ast.Attribute) and _is_hub(node.value) and node.attr not in PORT_MEMBERS:
            found.append(f"{where}: hub.{node.attr} is not on the port")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if arg.arg == "hub" and (arg.annotation is None or ast.unparse(arg.annotation) != "HubPort"):
                    found.append(f"{where}: parameter hub of {node.name} is not annotated HubPort")
    return found


def _is_hub(node: ast.expr) -> bool:
    """`hub` or `<anything>.hub`: the names plugins give the port."""
    return (isinstance(node, ast.Name) and node.id == "hub") or (isinstance(node, ast.Attribute) and node.attr == "hub")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from hub.core import Hub", ["from hub.core import ..."]),
        ("import hub.inbox", ["import hub.inbox"]),
        ("from hub import Templates", ["hub.Templates is not exported"]),
        ("def f(hub: HubPort):\n    return hub.config.tenants", ["hub.config is not on the port"]),
        ("def f(self):\n    return self.hub.inbox.accept", ["hub.inbox is not on the port"]),
        ("def register_channels(hub: Any):\n    return []", ["parameter hub of register_channels is not annotated HubPort"]),
        ("from hub import HubPort, hookimpl\ndef f(hub: HubPort):\n    return hub.settings_for('x')", []),
    ],
)
def test_the_checker_finds_each_kind_of_trespass(source: str, expected: list[str]) -> None:
    assert [v.split(": ", 1)[1] for v in violations(source)] == expected


def test_builtin_plugins_use_only_the_port() -> None:
    assert PLUGIN_FILES, "no plugin sources found"
    found = [v for path in PLUGIN_FILES for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_importing_the_plugin_surface_stays_light() -> None:
    probe = (
        "import sys\n"
        "from hub import hookimpl, HubPort, Channel, Delivery, Reply, Tool, InboundMessage, NotificationRequest, TemplateError, AppointmentInput\n"
        "heavy = ['sqlalchemy', 'alembic', 'click', 'aiohttp.web', 'hub.core', 'hub.cli', 'hub.database']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == ""


def test_heavy_names_load_on_first_use() -> None:
    probe = "import hub, sys\nassert 'hub.cli' not in sys.modules\nprint(hub.run_with_hub.__module__)\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "hub.cli"
