"""Finding, loading and calling plugins.

Plugins come from three places, in this order: the built-in `plugins`
package (every module or package in it), installed distributions that expose
the entry-point group `hub`, and every `*.py` file in the folders named by
`plugin_dirs` (loaded by path under a private module name, never by putting
the folder on sys.path). Hooks are only ever called through `HookCaller`
below, because pluggy neither awaits async implementations nor isolates a
failing one. How an event hook is called (the first non-None result wins, or
every implementation runs) is declared on its spec (`firstresult=True`), not
chosen by the caller: `HookCaller.call` reads it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from hub import hookspecs
from hub.errors import PluginLoadError

hookimpl = pluggy.HookimplMarker("hub")

BUILTIN_PACKAGE = "plugins"
ENTRY_POINT_GROUP = "hub"


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin will come from, known before it is imported (so it can be disabled)."""

    name: str
    origin: str
    """"builtin", "entry point <dist>", or the file path of a dropped-in plugin."""
    load: Any = field(compare=False, repr=False)
    """A zero-argument callable that imports and returns the plugin object."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, origin and the hooks it implements."""

    name: str
    origin: str
    hooks: tuple[str, ...]


def discover(plugin_dirs: Iterable[Path]) -> list[PluginSource]:
    """List every plugin the hub could load, without importing any."""
    sources: list[PluginSource] = []
    builtin = importlib.import_module(BUILTIN_PACKAGE)
    for module in sorted(pkgutil.iter_modules(builtin.__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        qualified = f"{BUILTIN_PACKAGE}.{module.name}"
        sources.append(PluginSource(module.name, "builtin", lambda q=qualified: importlib.import_module(q)))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        sources.append(PluginSource(ep.name, f"entry point {dist}", ep.load))
    for folder in plugin_dirs:
        if not folder.is_dir():
            raise PluginLoadError(f"plugin_dirs: {folder} is not a folder")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            sources.append(PluginSource(path.stem, str(path), lambda p=path: _import_path(p)))
    return sources


def _import_path(path: Path) -> ModuleType:
    # A private, path-derived module name: two folders may both hold "reminders.py".
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_hub_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def build_plugin_manager(
    sources: Iterable[PluginSource], disabled: Iterable[str] = ()
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Make a fresh plugin manager with every source loaded except the disabled ones."""
    sources = list(sources)
    known = {s.name for s in sources}
    for name in disabled:
        if name not in known:
            raise PluginLoadError(f"hub.disabled: unknown plugin {name!r} (known: {', '.join(sorted(known))})")
    pm = pluggy.PluginManager("hub")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    skip = set(disabled)
    for source in sources:
        if source.name in skip:
            continue
        if pm.has_plugin(source.name):
            raise PluginLoadError(f"plugin {source.name!r} from {source.origin} has the same name as one already loaded")
        try:
            plugin = source.load()
            pm.register(plugin, name=source.name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {source.name!r} ({source.origin}): {exc}") from None
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {source.name!r} ({source.origin}) failed to import: {type(exc).__name__}: {exc}"
            ) from None
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(source.name, source.origin, hooks))
    try:
        # A hookimpl whose name matches no spec is almost always a typo that would never run.
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = (pm.get_name(exc.plugin) if exc.plugin is not None else None) or "?"
        raise PluginLoadError(f"plugin {name!r}: {exc}") from None
    return pm, infos


class HookCaller:
    """Calls hooks: awaits async implementations and isolates failing plugins."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: Counter[str] = Counter()
        import structlog  # here, not at the top: `import hub` (every plugin's first line) stays light

        self._log = structlog.get_logger("hub.plugins")

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        # pluggy runs implementations last-registered first, tryfirst before trylast.
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    async def _call(self, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> Any:
        result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        if inspect.isawaitable(result):
            result = await result
        return result

    def _failed(self, hook: str, impl: pluggy.HookImpl, exc: BaseException) -> None:
        self.failures[impl.plugin_name] += 1
        self._log.error("plugin_hook_failed", plugin=impl.plugin_name, hook=hook, error=f"{type(exc).__name__}: {exc}")

    async def call_all_named(self, hook: str, /, **kwargs: Any) -> list[tuple[str, Any]]:
        """Run every implementation; return (plugin name, result) for those that returned non-None."""
        results: list[tuple[str, Any]] = []
        for impl in self._impls(hook):
            try:
                result = await self._call(impl, kwargs)
            except Exception as exc:
                self._failed(hook, impl, exc)
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    async def call_all(self, hook: str, /, **kwargs: Any) -> list[Any]:
        """Run every implementation; return the non-None results in call order."""
        return [result for _, result in await self.call_all_named(hook, **kwargs)]

    def convention(self, hook: str) -> str:
        """How a hook is called, as its spec declares: "once" (registration), "first" or "all"."""
        spec = getattr(self.pm.hook, hook).spec
        if spec is None:
            raise KeyError(f"no hook spec {hook!r}")
        if getattr(spec.function, hookspecs.ONCE_ATTRIBUTE, False):
            return "once"
        return "first" if spec.opts.get("firstresult") else "all"

    async def call(self, hook: str, /, **kwargs: Any) -> Any:
        """Call an event hook as its spec declares: the first non-None result, or the list of results."""
        convention = self.convention(hook)
        if convention == "once":
            raise TypeError(f"{hook} is a registration hook: it runs once at start-up through call_sync")
        if convention == "first":
            return await self.call_first(hook, **kwargs)
        return await self.call_all(hook, **kwargs)

    async def call_first(self, hook: str, /, **kwargs: Any) -> Any:
        """Run implementations in order until one returns non-None; return it (or None)."""
        for impl in self._impls(hook):
            try:
                result = await self._call(impl, kwargs)
            except Exception as exc:
                self._failed(hook, impl, exc)
                continue
            if result is not None:
                return result
        return None

    def call_sync(self, hook: str, /, **kwargs: Any) -> list[tuple[str, Any]]:
        """Run a registration hook (`register_*`) once at start-up; a failure stops start-up.

        Unlike event hooks, a plugin that cannot register is not half-loaded:
        the error names it, and the operator fixes or disables it.
        """
        results: list[tuple[str, Any]] = []
        for impl in self._impls(hook):
            try:
                result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                raise PluginLoadError(f"plugin {impl.plugin_name!r}: {hook} failed: {type(exc).__name__}: {exc}") from None
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise PluginLoadError(f"plugin {impl.plugin_name!r}: {hook} must be a plain def, not async")
            if result is not None:
                results.append((impl.plugin_name, result))
        return results
