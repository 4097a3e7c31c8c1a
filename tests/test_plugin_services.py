"""The host's services for plugins, below the server: metrics and what ``send`` refuses."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from mailmax.core.config import Settings
from mailmax.core.pluginhost.host import LookupCache
from mailmax.core.pluginhost.metrics import DROPPED, Metrics, PluginMetrics
from mailmax.plugin import PluginHost


def test_counters_and_gauges_are_named_per_plugin() -> None:
    """A plugin's metrics carry its name; counters add up, gauges hold the last value."""
    metrics = Metrics()
    mine = PluginMetrics(metrics, "tally")
    mine.increment("messages")
    mine.increment("messages", 2)
    mine.set_gauge("queue", 7)
    mine.set_gauge("queue", 3)
    PluginMetrics(metrics, "other").increment("messages")
    assert metrics.snapshot("tally.") == {
        "counters": {"tally.messages": 3},
        "gauges": {"tally.queue": 3},
    }
    assert mine.value("messages") == 3
    assert metrics.value("other.messages") == 1


def test_bad_metric_use_is_refused_saying_why() -> None:
    """Bad names, negative increments, and a counter used as a gauge are refused."""
    mine = PluginMetrics(Metrics(), "tally")
    with pytest.raises(ValueError, match="lower-case letters"):
        mine.increment("Bad Name")
    with pytest.raises(ValueError, match="a number >= 0"):
        mine.increment("messages", -1)
    mine.increment("messages")
    with pytest.raises(ValueError, match="is a counter, not a gauge"):
        mine.set_gauge("messages", 1)


def test_the_number_of_metric_names_is_bounded() -> None:
    """Beyond the limit new names are dropped and counted; known names still count."""
    metrics = Metrics(limit=3)
    for name in ("a.one", "a.two", "a.three", "a.four", "a.five"):
        metrics.increment(name)
    metrics.increment("a.one")
    assert metrics.snapshot()["counters"] == {
        "a.one": 2,
        "a.three": 1,
        "a.two": 1,
        DROPPED: 2,
    }


def test_send_refuses_what_cannot_be_queued(tmp_path) -> None:
    """Host.send refuses a message over the size limit, without recipients, or with a
    malformed address, before anything is queued."""
    settings = Settings.model_validate({"smtp": {"max_message_size": 2000}})
    host = PluginHost(data_dir=tmp_path, settings=settings)
    message = EmailMessage()
    message["Subject"] = "notice"
    message.set_content("x" * 3000)
    failures = []
    host.send("", ["postmaster@example.test"], message).addErrback(failures.append)
    host.send("", [], b"Subject: x\r\n\r\nhi\r\n").addErrback(failures.append)
    host.send("", "postmaster@example.test", b"x").addErrback(failures.append)
    host.send("not an address", ["a@example.test"], b"x").addErrback(failures.append)
    reasons = [f.getErrorMessage() for f in failures]
    assert "over [smtp] max_message_size (2000)" in reasons[0]
    assert "1 to 1000 recipients" in reasons[1]
    assert "a list of addresses" in reasons[2]
    assert "'not an address' is not an e-mail address" in reasons[3]
    assert message["Message-ID"] is not None and message["Date"] is not None


class _Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_look_up_in_use_is_read_again_in_the_background_and_never_older_than_its_life() -> None:
    """Past half its life an entry is still answered while one background read runs; the read
    replaces it; an expired entry is read before answering; a read started before a clear()
    is not kept."""
    clock, reads, scheduled = _Clock(), [], []
    cache = LookupCache(1.0, now=clock)

    def read() -> str:
        reads.append(clock.now)
        return f"read at {clock.now}"

    assert cache.get("k", read, scheduled.append) == "read at 0.0"
    clock.now = 0.4
    assert cache.get("k", read, scheduled.append) == "read at 0.0"
    assert scheduled == []
    clock.now = 0.6
    assert cache.get("k", read, scheduled.append) == "read at 0.0"
    clock.now = 0.7
    assert cache.get("k", read, scheduled.append) == "read at 0.0"
    assert len(scheduled) == 1  # one read per key at a time
    scheduled.pop()()
    clock.now = 1.5
    assert cache.get("k", read, scheduled.append) == "read at 0.7"  # fresh until 1.7
    assert reads == [0.0, 0.7]
    clock.now = 3.0  # expired: nobody waits on a value older than its life
    assert cache.get("k", read, scheduled.append) == "read at 3.0"
    clock.now = 3.6
    cache.get("k", read, scheduled.append)
    cache.clear()
    scheduled.pop()()
    assert cache.get("k", read) == "read at 3.6"  # read again after the clear, not kept from before
    assert reads == [0.0, 0.7, 3.0, 3.6, 3.6]
