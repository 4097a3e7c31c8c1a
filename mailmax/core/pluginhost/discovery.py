"""Where plugins come from: built-ins, installed packages (entry points), the plugins directory.

A plugin name is looked up in this order, the first match wins:

1. a built-in plugin (``mailmax/plugins/<name>``, listed in :data:`BUILTIN_PLUGINS`);
2. an installed package's entry point named ``<name>`` in the group ``mailmax.plugins``
   (its value is a module, ``package.module``, or an object in one, ``package.module:obj``);
3. ``<name>.py`` or a package ``<name>/`` in the plugins directory (``[plugins] directory``,
   ``plugins`` inside the data directory);
4. any importable module given by its dotted path (``tests.plugins.hold``).

:func:`import_plugin` with ``fresh=True`` drops the plugin's modules from ``sys.modules`` and
imports them again, so a reload runs the code now on disk; objects already holding the old
modules (sessions in flight) keep them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmax.core.pluginhost.errors import PluginError

#: Built-in plugins, by name: the module that implements each (``mailmax/plugins/<name>``).
BUILTIN_PLUGINS: dict[str, str] = {
    "aliases": "mailmax.plugins.aliases",
    "antivirus": "mailmax.plugins.antivirus",
    "bans": "mailmax.plugins.bans",
    "catchall": "mailmax.plugins.catchall",
    "etrn": "mailmax.plugins.etrn",
    "forwarding": "mailmax.plugins.forwarding",
    "limits": "mailmax.plugins.limits",
    "monitor": "mailmax.plugins.monitor",
    "rbl": "mailmax.plugins.rbl",
    "routing": "mailmax.plugins.routing",
    "sendercheck": "mailmax.plugins.sendercheck",
    "spamtrap": "mailmax.plugins.spamtrap",
    "tarpit": "mailmax.plugins.tarpit",
}

#: The entry-point group third-party packages register their plugins in.
ENTRY_POINT_GROUP = "mailmax.plugins"

BUILTIN = "built-in"
PACKAGE = "installed package"
DIRECTORY = "plugins directory"
MODULE = "module"


@dataclass(frozen=True)
class PluginSource:
    """Where one plugin's code is: ``origin`` is one of built-in, installed package,
    plugins directory or module; ``target`` is the module (``pkg.mod`` or ``pkg.mod:obj``);
    ``detail`` says more (the distribution and version, or the file)."""

    name: str
    origin: str
    target: str
    detail: str = ""


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _local_package(plugins_dir: Path) -> str:
    """The package name plugins of ``plugins_dir`` are imported under (one per directory)."""
    digest = hashlib.sha1(str(plugins_dir.resolve()).encode()).hexdigest()[:10]
    name = f"mailmax_local_plugins_{digest}"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(plugins_dir)]
        package.__doc__ = f"Plugins of {plugins_dir}."
        sys.modules[name] = package
    return name


def _local_names(plugins_dir: Path | None) -> dict[str, Path]:
    if plugins_dir is None or not plugins_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(plugins_dir.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.suffix == ".py" and path.is_file():
            found[path.stem] = path
        elif path.is_dir() and (path / "__init__.py").is_file():
            found[path.name] = path
    return found


def discover(plugins_dir: Path | None = None) -> dict[str, PluginSource]:
    """Every plugin that can be enabled by name, first match per name (see the module doc)."""
    found: dict[str, PluginSource] = {}
    for name, module in BUILTIN_PLUGINS.items():
        found[name] = PluginSource(name, BUILTIN, module, f"mailmax/plugins/{name}")
    for ep in _entry_points():
        if ep.name in found:
            continue
        dist = getattr(ep, "dist", None)
        detail = f"{dist.name} {dist.version}" if dist is not None else ""
        found[ep.name] = PluginSource(ep.name, PACKAGE, ep.value, detail)
    if plugins_dir is not None:
        for name, path in _local_names(plugins_dir).items():
            if name not in found and name.isidentifier():
                target = f"{_local_package(plugins_dir)}.{name}"
                found[name] = PluginSource(name, DIRECTORY, target, str(path))
    return found


def find(name: str, plugins_dir: Path | None = None) -> PluginSource:
    """The source of plugin ``name``; a dotted module path is accepted as it is."""
    source = discover(plugins_dir).get(name)
    if source is not None:
        return source
    dotted = all(part.isidentifier() for part in name.split("."))
    if dotted and ("." in name or spec_exists(name)):
        return PluginSource(name, MODULE, name, "")
    raise PluginError(f"plugin {name!r}: no such plugin (not built-in, installed or a module)")


def _forget(module_name: str) -> None:
    """Drop a module and its submodules from ``sys.modules`` so the next import re-reads them."""
    for loaded in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        del sys.modules[loaded]


def import_plugin(source: PluginSource, *, fresh: bool = False) -> Any:
    """Import a plugin's module (or object); ``fresh`` re-reads its code from disk."""
    module_name, _, attr = source.target.partition(":")
    if fresh:
        top = module_name.split(".")[0]
        # A package's plugin may import helpers from its own package: re-read all of it.
        _forget(top if source.origin == PACKAGE and top != "mailmax" else module_name)
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"plugin {source.name!r} cannot be imported ({exc})") from exc
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else source.target
        raise PluginError(f"plugin {source.name!r}: syntax error at {where}: {exc.msg}") from exc
    except Exception as exc:
        raise PluginError(
            f"plugin {source.name!r} failed while importing: {type(exc).__name__}: {exc}"
        ) from exc
    if not attr:
        return module
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise PluginError(
            f"plugin {source.name!r}: {module_name} has no {attr!r} (entry point {source.target})"
        ) from None
    return obj


def module_file(plugin_object: Any) -> str:
    """The file a plugin's code is in (for listings), or ``""``."""
    module = plugin_object
    if not isinstance(module, types.ModuleType):
        module = sys.modules.get(getattr(plugin_object, "__module__", ""), None)
    return str(getattr(module, "__file__", "") or "")


def spec_exists(module_name: str) -> bool:
    """True when ``module_name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False
