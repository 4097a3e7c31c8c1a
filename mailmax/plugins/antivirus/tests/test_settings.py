"""The antivirus settings: a system-only key is refused per domain."""

from __future__ import annotations

import pytest

import mailmax.plugins.antivirus as antivirus
from mailmax.core.hooks import PluginError
from mailmax.plugin import Scope
from mailmax.testing import PluginHarness


def test_a_domain_override_of_a_system_only_key_is_refused() -> None:
    """Like `mailmax plugin set --domain`, the harness refuses the override, saying why."""
    overrides = {Scope(domain="example.test"): {"update_command": "rm -rf /"}}
    with pytest.raises(PluginError, match="update_command can only be set system-wide"):
        PluginHarness(antivirus, {}, overrides=overrides)


def test_the_same_key_is_accepted_system_wide() -> None:
    """System settings may name the command (it is checked: the program must exist)."""
    harness = PluginHarness(antivirus, {"update_command": "true", "update_every_hours": 6})
    harness.close()
