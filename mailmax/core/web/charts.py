"""The dashboard's activity graphs: horizontal bar charts, laid out here and drawn as inline
SVG by the ``_charts.html`` template (no script, nothing loaded from elsewhere)."""

from __future__ import annotations

import dataclasses
from typing import Any

#: Window name (as the API gives it) -> label on the graph.
WINDOWS = {"hour": "1 h", "12h": "12 h", "24h": "24 h", "week": "week"}
#: Counter name -> graph title.
KINDS = {
    "connections": "Connections",
    "failed_logins": "Failed log-ins",
    "messages": "Messages",
    "bytes": "Bytes",
}
#: Width of the drawing (SVG user units; the browser scales it to the page).
WIDTH = 340
#: Where bars start (the window labels are left of it) and room kept right for the number.
BAR_X = 46
NUMBER_ROOM = 72
BAR_HEIGHT = 11
BAR_STEP = 15
#: Height of a service's (or domain's) name above its bars.
NAME_HEIGHT = 20


@dataclasses.dataclass(frozen=True)
class Bar:
    """One window's count for one service."""

    window: str
    label: str
    value: int
    text: str
    y: int
    width: float


@dataclasses.dataclass(frozen=True)
class Group:
    """A service's (or domain's) bars."""

    name: str
    y: int
    bars: list[Bar]


@dataclasses.dataclass(frozen=True)
class Chart:
    """One counter for every service: what the template draws."""

    kind: str
    title: str
    description: str
    height: int
    groups: list[Group]

    @property
    def bar_x(self) -> int:
        """Where the bars start."""
        return BAR_X

    @property
    def width(self) -> int:
        """The drawing's width."""
        return WIDTH


def count_text(kind: str, value: int) -> str:
    """A count as shown on a graph (bytes in kB, MB, GB)."""
    if kind != "bytes":
        return f"{value:,}"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{value:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def activity_charts(
    stats: dict[str, dict[str, dict[str, int]]], kinds: tuple[str, ...] = tuple(KINDS)
) -> list[Chart]:
    """One chart per counter in ``kinds`` from ``{name: {kind: {window: count}}}`` (what
    ``/api/v1/stats`` answers), each bar scaled to the counter's largest count."""
    charts = []
    for kind in kinds:
        largest = max(
            (stats[name][kind][window] for name in stats for window in WINDOWS), default=0
        )
        span = WIDTH - BAR_X - NUMBER_ROOM
        groups, sentences, y = [], [], 0
        for name in sorted(stats):
            counts = stats[name][kind]
            y += NAME_HEIGHT
            name_y, bars = y - 5, []
            for window, label in WINDOWS.items():
                value = counts[window]
                width = span * value / largest if largest else 0.0
                text = count_text(kind, value)
                bars.append(Bar(window, label, value, text, y, max(width, 1.0 if value else 0)))
                y += BAR_STEP
            groups.append(Group(name, name_y, bars))
            shown = ", ".join(f"{bar.text} in the last {bar.label}" for bar in bars)
            sentences.append(f"{name}: {shown}.")
        description = " ".join(sentences) or "Nothing counted yet."
        charts.append(Chart(kind, KINDS[kind], description, max(y + 4, 24), groups))
    return charts


def stats_of(models: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """The API's answer (pydantic models) as plain ``{name: {kind: {window: count}}}``."""
    return {name: model.model_dump(by_alias=True) for name, model in models.items()}
