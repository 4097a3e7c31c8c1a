"""The Prometheus view of a running server: one registry holding the activity counters, the
plugins' and host's counters and gauges (:class:`~mailmax.core.pluginhost.metrics.Metrics`),
queue length by state, sessions open per service, deliveries by result, plugin verdicts by
plugin and the spool's commit latency.

Everything but the commit latency is read when the registry is collected; the hot paths only
update the counters they already have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mailmax.core.observe.activity import KINDS, Activity

#: Host metric prefixes with labels of their own: deliveries by result, verdicts by plugin.
DELIVERIES = "mailmax.deliveries."
VERDICTS = "mailmax.verdicts."
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name: str) -> str:
    """A host metric name (``antivirus.scanned``) as a Prometheus name
    (``mailmax_plugin_antivirus_scanned``)."""
    return "mailmax_plugin_" + _UNSAFE.sub("_", name)


class MailMaxCollector:
    """Collects the server's numbers for a :class:`CollectorRegistry`."""

    def __init__(
        self,
        activity: Activity,
        metrics: Callable[[], Any],
        sessions: Callable[[], dict[str, int]],
        queue: Callable[[], dict[str, int]],
    ) -> None:
        self.activity = activity
        self.metrics = metrics
        self.sessions = sessions
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now."""
        families = {
            kind: CounterMetricFamily(
                f"mailmax_{kind}",
                f"{kind.replace('_', ' ').capitalize()} per service since start.",
                labels=["service"],
            )
            for kind in KINDS
        }
        for (service, kind), value in sorted(self.activity.totals.items()):
            families[kind].add_metric([service], value)
        yield from families.values()
        sessions = GaugeMetricFamily(
            "mailmax_sessions_open", "Client sessions open per service.", labels=["service"]
        )
        for service, count in sorted(self.sessions().items()):
            sessions.add_metric([service], count)
        yield sessions
        queue = GaugeMetricFamily(
            "mailmax_queue_messages", "Queued messages by state.", labels=["state"]
        )
        for state, count in sorted(self.queue().items()):
            queue.add_metric([state], count)
        yield queue
        yield from self._host_metrics()

    def _host_metrics(self) -> Iterator[Metric]:
        metrics = self.metrics()
        if metrics is None:
            return
        snapshot = metrics.snapshot()
        deliveries = CounterMetricFamily(
            "mailmax_deliveries", "Deliveries by result since start.", labels=["result"]
        )
        verdicts = CounterMetricFamily(
            "mailmax_plugin_verdicts",
            "Decisive plugin verdicts by plugin and action since start.",
            labels=["plugin", "verdict"],
        )
        for name, value in snapshot["counters"].items():
            if name.startswith(DELIVERIES):
                deliveries.add_metric([name[len(DELIVERIES) :]], value)
            elif name.startswith(VERDICTS):
                plugin, _, action = name[len(VERDICTS) :].rpartition(".")
                verdicts.add_metric([plugin, action], value)
            else:
                family = CounterMetricFamily(metric_name(name), f"Counter {name}.")
                family.add_metric([], value)
                yield family
        for name, value in snapshot["gauges"].items():
            gauge = GaugeMetricFamily(metric_name(name), f"Gauge {name}.")
            gauge.add_metric([], value)
            yield gauge
        yield deliveries
        yield verdicts


class PrometheusView:
    """The server's one Prometheus registry and the commit-latency histogram it holds."""

    def __init__(self, collector: MailMaxCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        self.commit_seconds = Histogram(
            "mailmax_spool_commit_seconds",
            "Seconds from the end of DATA to the message being durable in the spool.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def text(self) -> str:
        """The exposition text (what ``/metrics`` serves)."""
        return generate_latest(self.registry).decode()
