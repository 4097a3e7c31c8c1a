"""Fixtures of the bans tests: the plugin authors' real-server fixture."""

from mailmax.testing import mailmax_server as mailmax_server
