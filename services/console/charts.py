"""Charts drawn on the server as SVG geometry (no JavaScript): bars for a series, an
optional shaded band (the 15-25% that dunning emails alone recover), and a line. The
template turns the geometry into <svg> elements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 720
HEIGHT = 240
LEFT = 44
BOTTOM = 28
TOP = 12
RIGHT = 8
MAX_AXIS_LABELS = 12


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value_text: str
    # The label under the bar; empty for all but every few bars of a long series.
    axis_label: str


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: bars, ticks on the value axis, an optional band and line."""

    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    band: tuple[float, float] | None = None  # (y of the top, y of the bottom)
    band_text: str = ""
    line: list[tuple[float, float]] = field(default_factory=list)
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    top: float | None = None,
    as_percent: bool = False,
    band: tuple[float, float] | None = None,
    band_text: str = "",
    line: Sequence[float] | None = None,
) -> Chart:
    """Bars of ``values`` (one per label) on an axis from 0 to ``top`` (default: the largest
    value, at least 1); ``band`` (low, high) shades a range of values; ``line`` draws a second
    series on the same axis."""
    highest = max([*values, *(line or []), *(band or ()), 0.0])
    scale_top = top if top is not None else max(highest, 1.0)
    plot_height = HEIGHT - BOTTOM - TOP
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / max(len(values), 1)
    # At most MAX_AXIS_LABELS labels fit under the axis; the last bar always has one.
    every = max(1, math.ceil(len(values) / MAX_AXIS_LABELS))

    def y_of(value: float) -> float:
        return round(TOP + plot_height * (1 - min(value, scale_top) / scale_top), 1)

    def text(value: float) -> str:
        return f"{value * 100:.0f}%" if as_percent else f"{value:g}"

    bars = [
        Bar(
            x=round(LEFT + slot * index + slot * 0.15, 1),
            y=y_of(value),
            width=round(slot * 0.7, 1),
            height=round(HEIGHT - BOTTOM - y_of(value), 1),
            label=label,
            value_text=text(value),
            axis_label=label if (len(values) - 1 - index) % every == 0 else "",
        )
        for index, (label, value) in enumerate(zip(labels, values, strict=True))
    ]
    ticks = [Tick(y_of(scale_top * step / 4), text(scale_top * step / 4)) for step in range(5)]
    points = [
        (round(LEFT + slot * index + slot / 2, 1), y_of(value))
        for index, value in enumerate(line or [])
    ]
    return Chart(
        WIDTH,
        HEIGHT,
        bars,
        ticks,
        band=(y_of(band[1]), y_of(band[0])) if band else None,
        band_text=band_text,
        line=points,
    )
