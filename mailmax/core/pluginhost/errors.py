"""The error of the plugin platform."""

from __future__ import annotations


class PluginError(Exception):
    """A plugin could not be loaded or refused its configuration."""
