"""Everything a running server tells about itself, in one object the service holds: the event
bus, the event log files, the activity counters, live traces and the Prometheus registry.

Admin channel commands (see :mod:`mailmax.core.admin`): ``stats`` (the activity counters as
JSON), ``metrics-prometheus`` (the Prometheus text) and the stream ``trace FILTER``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from mailmax.core.observe import logfiles
from mailmax.core.observe.activity import FILE_NAME, Activity
from mailmax.core.observe.events import EventBus
from mailmax.core.observe.prom import MailMaxCollector, PrometheusView
from mailmax.core.observe.trace import MAX_TRACES, Trace, TraceRequestError, parse_filter

log = Logger(namespace="mailmax.observe")


class Observability:
    """The event bus, event logs, activity counters, traces and metrics of one server."""

    def __init__(
        self,
        settings: Any,
        reactor: Any,
        *,
        metrics: Callable[[], Any] = lambda: None,
        sessions: Callable[[], dict[str, int]] = dict,
        queue: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.bus = EventBus(clock=reactor.seconds)
        self.activity = Activity(clock=reactor.seconds, enabled=settings.activity.enabled)
        self.prometheus = PrometheusView(MailMaxCollector(self.activity, metrics, sessions, queue))
        self.logs: list[logfiles.EventLog] = []
        self.traces: set[Trace] = set()
        self._saver: task.LoopingCall | None = None

    @property
    def activity_path(self) -> Any:
        """Where the activity counters are saved."""
        return self.settings.data_dir / FILE_NAME

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Read the saved activity, open the event logs, save the activity now and then."""
        self.activity.load(self.activity_path)
        self._open_logs(self.settings)
        self._saver = task.LoopingCall(self.save_activity)
        self._saver.clock = self.reactor
        self._saver.start(self.settings.activity.save_seconds, now=False)

    def check(self, settings: Any) -> None:
        """Raise OSError when the event log folder of ``settings`` cannot be written."""
        if settings.log.files != "off":
            folder = settings.path(settings.log.directory)
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".mailmax-write-test"
            probe.write_text("")
            probe.unlink()

    def reconfigure(self, settings: Any) -> None:
        """Apply ``settings``: reopen the event logs (after a rotation by another tool too)
        with the new choices, switch the activity counters on or off."""
        self.settings = settings
        self.activity.enabled = settings.activity.enabled
        self._close_logs()
        self._open_logs(settings)

    def stop(self) -> None:
        """Save the activity, stop the traces, close the event logs."""
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        self.save_activity()
        for trace in list(self.traces):
            trace.stop()
        self._close_logs()

    def save_activity(self) -> None:
        """Save the activity counters (a failure is logged; counting goes on)."""
        try:
            self.activity.save(self.activity_path)
        except OSError as exc:
            log.warn("activity counters not saved: {e}", e=str(exc))

    def _open_logs(self, settings: Any) -> None:
        self.logs = logfiles.open_logs(settings, self.bus, clock=self.reactor.seconds)
        if self.logs and any(
            "data" in settings.log.categories_of(s) for s in settings.log.service_names()
        ):
            log.warn(
                "the event logs record message contents (category data): they hold private"
                " mail; switch it off when no longer needed"
            )

    def _close_logs(self) -> None:
        for event_log in self.logs:
            event_log.detach(self.bus)
        self.logs = []

    # ------------------------------------------------------------------ admin channel
    def stats_json(self) -> str:
        """The activity counters (``mailmax stats``)."""
        return json.dumps(self.activity.summary())

    def start_trace(
        self,
        request: str,
        transport: Any,
        write: Any = None,
        domains: frozenset[str] = frozenset(),
    ) -> Trace:
        """Start a trace of the events ``request`` (JSON filter) asks for on ``transport``;
        raises TraceRequestError when the request is bad or too many traces run."""
        event_filter = parse_filter(request, domains)
        if len(self.traces) >= MAX_TRACES:
            raise TraceRequestError(f"{MAX_TRACES} traces are running already; stop one first")
        trace = Trace(self.bus, event_filter, transport, write)
        self.traces.add(trace)
        return trace

    def end_trace(self, trace: Trace) -> None:
        """Stop ``trace`` and forget it."""
        trace.stop()
        self.traces.discard(trace)

    def admin_commands(self) -> dict[str, Callable[[], Any]]:
        """The admin channel commands without argument."""
        return {
            "stats": self.stats_json,
            # the text as one JSON string: the channel answers one line
            "metrics-prometheus": lambda: json.dumps(self.prometheus.text()),
        }

    def admin_streams(self) -> dict[str, Callable[[str, Any], None]]:
        """The admin channel stream commands: ``trace FILTER``."""
        from mailmax.core.admin import AdminError

        def trace(argument: str, protocol: Any) -> None:
            try:
                running = self.start_trace(argument, protocol.transport)
            except TraceRequestError as exc:
                raise AdminError(str(exc)) from None
            protocol.sendLine(b"OK tracing")
            protocol.on_close = lambda: self.end_trace(running)

        return {"trace": trace}
