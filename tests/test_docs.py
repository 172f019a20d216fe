"""Meta-tests: the docs cover every hook and module, every hook has a test, the example plugin works."""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import pytest
from aiohttp import web

import hub
import hub.hookspecs
from hub import OutboundMessage, PermanentError, TransientError
from hub.core import Hub
from tests.conftest import DEFAULT_TENANTS, ROOT, TEST_PLUGINS, config_document, make_config, write_toml
from tests.test_plugin_boundary import violations

DOCS = ROOT / "docs"
PLUGINS_MD = DOCS / "plugins.md"
ARCHITECTURE_MD = DOCS / "architecture.md"
TESTS = ROOT / "tests"
EXAMPLE_MARKER = "<!-- example: example_channel.py -->"
EXAMPLE_TOKEN = "s3cret-example-token-9f2c"


def hook_names() -> list[str]:
    """Every hook spec in hub.hookspecs, as pluggy registers them."""
    pm = pluggy.PluginManager("hub")
    pm.add_hookspecs(hub.hookspecs)
    registered = {name for name, caller in vars(pm.hook).items() if isinstance(caller, pluggy.HookCaller)}
    declared = {
        name for name, func in inspect.getmembers(hub.hookspecs, inspect.isfunction) if hasattr(func, "hub_spec")
    }
    assert registered == declared, "pluggy and the module disagree about which functions are hook specs"
    return sorted(declared)


HOOKS = hook_names()


def test_hookspecs_found() -> None:
    assert HOOKS, "no hook specs found in hub.hookspecs"


def hook_reference_sections() -> list[str]:
    """The `### <name>` headings between `## Hook reference` and the next `## ` heading."""
    text = PLUGINS_MD.read_text(encoding="utf-8")
    match = re.search(r"^## Hook reference[ \t]*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "docs/plugins.md has no '## Hook reference' section"
    return [heading.strip().strip("`") for heading in re.findall(r"^### (.+)$", match.group(1), re.MULTILINE)]


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    assert name in hook_reference_sections(), f"docs/plugins.md: no '### {name}' under Hook reference"


def test_no_stale_hook_docs() -> None:
    sections = hook_reference_sections()
    stale = [name for name in sections if name not in HOOKS]
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"
    assert len(sections) == len(set(sections)), "a hook is documented twice"


def read_test_files() -> dict[Path, str]:
    # This file names the pattern itself; only real test modules count.
    here = Path(__file__).resolve()
    return {path: path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py")) if path.resolve() != here}


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name: str) -> None:
    pattern = re.compile(rf"def test_hook_{re.escape(name)}\b")
    found = [path for path, text in read_test_files().items() if pattern.search(text)]
    assert found, f"no `def test_hook_{name}` anywhere under tests/"


def test_architecture_names_every_module() -> None:
    text = ARCHITECTURE_MD.read_text(encoding="utf-8")
    modules = [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "hub").rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py") and "__pycache__" not in path.parts
    ]
    assert "hub/commands/serve.py" in modules  # the scan reaches sub-packages
    missing = [module for module in modules if module not in text]
    assert not missing, f"docs/architecture.md does not name: {missing}"


# --- the example plugin in docs/plugins.md ----------------------------------


def example_source() -> str:
    text = PLUGINS_MD.read_text(encoding="utf-8")
    match = re.search(re.escape(EXAMPLE_MARKER) + r"\n```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md: no ```python block right after {EXAMPLE_MARKER}"
    return match.group(1)


def test_example_imports_only_the_public_surface() -> None:
    tree = ast.parse(example_source())
    hub_imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hub")]
    assert hub_imports, "the example imports nothing from hub"
    for node in hub_imports:
        assert node.module == "hub", f"the example imports from {node.module}, not from hub"
        for alias in node.names:
            assert alias.name in hub.__all__, f"the example imports {alias.name}, which hub does not export"
    plain = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in plain if name.startswith("hub")], "the example uses `import hub...`"
    assert violations(example_source(), "example_channel.py") == []  # and nothing of the hub beyond the port


@pytest.fixture
def example_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "example_plugins"
    folder.mkdir()
    (folder / "example_channel.py").write_text(example_source(), encoding="utf-8")
    return folder


def example_document(database_url: str, example_dir: Path, url: str, **kwargs: Any) -> dict[str, Any]:
    return config_document(
        database_url,
        hub={"plugin_dirs": [str(TEST_PLUGINS), str(example_dir)]},
        plugins={"example_channel": {"url": url, "token": {"env": "EXAMPLE_TOKEN"}, "sandbox": False}},
        **kwargs,
    )


def test_example_plugin_in_hub_plugins(
    run_cli: Callable[..., Any], sqlite_url: str, example_dir: Path, tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "config.toml", example_document(sqlite_url, example_dir, "http://127.0.0.1:9/hook"))
    env = {"EXAMPLE_TOKEN": EXAMPLE_TOKEN}

    result = run_cli("plugins", config=config, env=env)
    assert result.returncode == 0, result.stderr
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("example_channel ")), None)
    assert line is not None, result.stdout
    assert str(example_dir / "example_channel.py") in line
    assert "configured" in line and "not configured" not in line
    assert "mode: live" in line
    assert "example-webhook" in result.stdout
    assert EXAMPLE_TOKEN not in result.stdout + result.stderr

    as_json = run_cli("plugins", "--json", config=config, env=env)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["name"]: row for row in map(json.loads, as_json.stdout.splitlines())}
    row = rows["example_channel"]
    assert row["channels"] == ["example-webhook"]
    assert row["mode"] == "live"
    assert row["configured"] is True
    assert set(row["hooks"]) >= {"register_settings", "register_channels"}
    assert row["settings"]["token"] == "********"
    assert row["settings"]["url"] == "http://127.0.0.1:9/hook"
    assert EXAMPLE_TOKEN not in as_json.stdout + as_json.stderr


def test_example_plugin_without_its_table_is_not_configured(
    run_cli: Callable[..., Any], sqlite_url: str, example_dir: Path, tmp_path: Path
) -> None:
    document = config_document(sqlite_url, hub={"plugin_dirs": [str(TEST_PLUGINS), str(example_dir)]})
    result = run_cli("plugins", "--json", config=write_toml(tmp_path / "config.toml", document))
    assert result.returncode == 0, result.stderr
    row = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}["example_channel"]
    assert row["configured"] is False
    assert row["channels"] == []


@dataclass
class ProviderStub:
    """A local stand-in for the example's provider: records POSTs, answers with `status`."""

    url: str = ""
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def provider() -> AsyncIterator[ProviderStub]:
    stub = ProviderStub()

    async def hook(request: web.Request) -> web.Response:
        if request.method == "POST":
            stub.received.append({"json": await request.json(), "authorization": request.headers.get("Authorization")})
        if stub.status >= 400:
            return web.json_response({"error": "no"}, status=stub.status)
        return web.json_response({"id": f"msg-{len(stub.received)}"}, status=stub.status)

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    stub.url = f"http://{host}:{port}/hook"
    try:
        yield stub
    finally:
        await runner.cleanup()


async def test_example_plugin_sends(sqlite_url: str, example_dir: Path, provider: ProviderStub) -> None:
    tenants = {
        "clinic": DEFAULT_TENANTS["clinic"],
        # A tenant override: salon's messages are only recorded.
        "salon": {**DEFAULT_TENANTS["salon"], "plugins": {"example_channel": {"sandbox": True}}},
    }
    document = example_document(sqlite_url, example_dir, provider.url, tenants=tenants)
    config = make_config(
        sqlite_url,
        environ={"EXAMPLE_TOKEN": "s3cret"},
        hub=document["hub"],
        plugins=document["plugins"],
        tenants=tenants,
    )
    instance = Hub.build(config)
    async with instance.running():
        channel = instance.channels["example-webhook"]
        assert instance.channel_plugins["example-webhook"] == "example_channel"
        assert (channel.medium, channel.address_kind, channel.sandbox) == ("sms", "phone", False)

        delivery = await channel.send(OutboundMessage(tenant="clinic", to="+34600123456", body="hi"))
        assert delivery.status == "sent"
        assert delivery.provider_id == "msg-1"
        assert len(provider.received) == 1
        assert provider.received[0]["json"]["to"] == "+34600123456"
        assert provider.received[0]["json"]["body"] == "hi"
        assert provider.received[0]["authorization"] == "Bearer s3cret"
        assert (await channel.check()).ok

        sandboxed = await channel.send(OutboundMessage(tenant="salon", to="+525512345678", body="hola"))
        assert (sandboxed.provider_id, sandboxed.status) == (None, "sandboxed")
        assert len(provider.received) == 1

        provider.status = 503
        with pytest.raises(TransientError) as transient:
            await channel.send(OutboundMessage(tenant="clinic", to="+34600123456", body="again"))
        assert transient.value.code == "503"
        assert not (await channel.check()).ok

        provider.status = 429
        with pytest.raises(TransientError):
            await channel.send(OutboundMessage(tenant="clinic", to="+34600123456", body="slow down"))

        provider.status = 400
        with pytest.raises(PermanentError) as permanent:
            await channel.send(OutboundMessage(tenant="clinic", to="+34600123456", body="bad"))
        assert permanent.value.code == "400"
        assert not isinstance(permanent.value, TransientError)
        assert [r["json"]["body"] for r in provider.received] == ["hi", "again", "slow down", "bad"]


async def test_example_plugin_sandbox_sends_nothing(sqlite_url: str, example_dir: Path, provider: ProviderStub) -> None:
    document = example_document(sqlite_url, example_dir, provider.url)
    document["plugins"]["example_channel"]["sandbox"] = True
    config = make_config(sqlite_url, environ={"EXAMPLE_TOKEN": "s3cret"}, hub=document["hub"], plugins=document["plugins"])
    instance = Hub.build(config)
    async with instance.running():
        channel = instance.channels["example-webhook"]
        assert channel.sandbox is True
        delivery = await channel.send(OutboundMessage(tenant="clinic", to="+34600123456", body="hi"))
        assert (delivery.provider_id, delivery.status) == (None, "sandboxed")
        assert (await channel.check()).ok
    assert provider.received == []
