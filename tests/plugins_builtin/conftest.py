"""Fixtures of the built-in plugin tests: the plugin authors' real-server fixture."""

from mailmax.testing import mailmax_server as mailmax_server
