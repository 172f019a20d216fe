"""Plugin discovery (built-in, entry points, plugin_dirs), disabling, and how hooks are called."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.config import parse_config
from hub.core import Hub
from hub.errors import PluginLoadError
from hub.plugins import HookCaller, build_plugin_manager, discover
from tests.conftest import TEST_PLUGINS, CliResult, config_document, make_config, write_toml

ORDER_PLUGIN = '''
from hub import ContextSection, hookimpl

@hookimpl
async def contact_context(hub, contact):
    return ContextSection("{name}", ["async"])

@hookimpl
def respond_to_message(hub, conversation, message):
    return {answer!r}
'''


def make_dist(root: Path, dist: str, entry_name: str, module: str, code: str) -> Path:
    """An installed distribution on a path entry: a module and a dist-info exposing it under group `hub`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(code)
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hub]\n{entry_name} = {module}\n")
    return root


def test_plugins_load_from_every_source_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_dist(tmp_path / "site", "hub-extras", "extras", "hub_extras_mod", ORDER_PLUGIN.format(name="extras", answer=None))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    sources = discover([TEST_PLUGINS])
    origins = {s.name: s.origin for s in sources}
    assert origins["extras"] == "entry point hub-extras"
    assert origins["recorder"] == str(TEST_PLUGINS / "recorder.py")
    # Built-ins first, then entry points, then plugin_dirs.
    names = [s.name for s in sources]
    assert names.index("extras") < names.index("flaky") < names.index("recorder")
    pm, infos = build_plugin_manager(sources)
    assert pm.has_plugin("extras") and pm.has_plugin("recorder")
    assert next(i for i in infos if i.name == "extras").hooks == ("contact_context", "respond_to_message")


def test_dropped_in_file_is_listed_by_hub_plugins(sqlite_url: str, tmp_path: Path, run_cli: Callable[..., CliResult]) -> None:
    folder = tmp_path / "my-plugins"
    folder.mkdir()
    (folder / "welcome.py").write_text(ORDER_PLUGIN.format(name="welcome", answer=None))
    document = config_document(sqlite_url, hub={"plugin_dirs": ["my-plugins", str(TEST_PLUGINS)]})
    config = write_toml(tmp_path / "config.toml", document)
    result = run_cli("plugins", config=config)
    assert result.returncode == 0, result.stderr
    assert f"welcome  [{folder / 'welcome.py'}]  configured  mode: -" in result.stdout
    assert "    hooks:    contact_context, respond_to_message" in result.stdout
    assert "recorder  [" in result.stdout and "    channels: recorder-sms" in result.stdout


def test_same_file_name_in_two_folders_gets_private_module_names(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.py").write_text(f"VALUE = {folder!r}\n")
    sources = [s for s in discover([tmp_path / "a", tmp_path / "b"]) if s.name == "same"]
    modules = [s.load() for s in sources]
    assert [m.VALUE for m in modules] == ["a", "b"]
    assert modules[0].__name__ != modules[1].__name__
    with pytest.raises(PluginLoadError, match="same name"):
        build_plugin_manager(sources)


def test_disabled_plugin_is_not_imported(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('would break start-up')\n")
    pm, infos = build_plugin_manager(discover([tmp_path, TEST_PLUGINS]), disabled=["broken", "flaky"])
    assert not pm.has_plugin("broken") and not pm.has_plugin("flaky")
    assert {i.name for i in infos} >= {"recorder"}


def test_plugin_that_raises_on_import_names_itself(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise ImportError('missing dependency foo')\n")
    with pytest.raises(PluginLoadError, match=r"plugin 'broken' \(.*broken.py\) failed to import: ImportError: missing dependency foo"):
        build_plugin_manager(discover([tmp_path]))


def test_unknown_hook_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text("from hub import hookimpl\n@hookimpl\ndef on_mesage_received(hub):\n    pass\n")
    with pytest.raises(PluginLoadError, match="typo"):
        build_plugin_manager(discover([tmp_path]))


async def test_call_helpers_await_isolate_and_order(tmp_path: Path) -> None:
    for name, answer in (("first", None), ("second", "from second"), ("third", "from third")):
        (tmp_path / f"{name}.py").write_text(ORDER_PLUGIN.format(name=name, answer=answer))
    (tmp_path / "zfails.py").write_text(
        "from hub import hookimpl\n@hookimpl\nasync def contact_context(hub, contact):\n    raise RuntimeError('boom')\n"
    )
    pm, _ = build_plugin_manager(discover([tmp_path]))
    caller = HookCaller(pm)
    sections = await caller.call_all("contact_context", hub=None, contact=None)
    # Async implementations are awaited; the failing one is skipped and counted.
    assert sorted(s.title for s in sections) == ["first", "second", "third"]
    # (Built-in plugins are loaded too and are handed hub=None here: only this test's plugins are judged.)
    assert {name: caller.failures[name] for name in ("first", "second", "third", "zfails")} == {
        "first": 0, "second": 0, "third": 0, "zfails": 1,
    }
    # Last registered runs first (pluggy's order); the first non-None answer wins and stops the rest.
    assert await caller.call_first("respond_to_message", hub=None, conversation=None, message=None) == "from third"


def test_unknown_plugin_table_is_a_config_error(sqlite_url: str) -> None:
    config = make_config(sqlite_url, plugins={"nosuch": {"x": 1}})
    with pytest.raises(Exception, match=r"test-config.toml: plugins.nosuch: no plugin of that name is loaded"):
        Hub.build(config)


def test_plugin_without_its_required_settings_is_loaded_but_not_configured(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "needy.py").write_text(
        "from hub import PluginSettings, hookimpl\n"
        "class S(PluginSettings):\n    api_url: str\n"
        "@hookimpl\ndef register_settings():\n    return S\n"
    )
    document = config_document(sqlite_url, hub={"plugin_dirs": [str(tmp_path)]})
    hub = Hub.build(parse_config(document, "c.toml", {}))
    assert hub.plugins["needy"].configured is False and hub.settings_for("needy") is None
    document["plugins"] = {"needy": {}}
    with pytest.raises(Exception, match=r"c.toml: plugins.needy.api_url: required key is missing"):
        Hub.build(parse_config(document, "c.toml", {}))
