"""The package layout: areas import each other one way only."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if 'mailmax' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_plugin_discovery_does_not_import_the_hook_runner():
    assert "mailmax.core.hooks" not in _loaded_after_import("mailmax.core.pluginhost.discovery")


def test_plugin_recipient_resolution_does_not_import_the_smtp_server():
    loaded = _loaded_after_import("mailmax.core.pluginhost.recipients")
    assert not any(name.startswith("mailmax.core.smtp") for name in loaded)


def test_the_smtp_factory_the_service_runs_lives_with_smtp():
    from mailmax.core import service
    from mailmax.core.smtp.factory import PluginSMTPFactory

    assert service.PluginSMTPFactory is PluginSMTPFactory
