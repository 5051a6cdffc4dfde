"""Bar charts as inline SVG, drawn on the server: no plotting library in the page and nothing fetched.
Only numbers and fixed labels go into the markup, and the templates autoescape it all the same."""

from dataclasses import dataclass

WIDTH = 360
HEIGHT = 90


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    low: str
    high: str


def bar_chart(counts: list[int], low: float, high: float, unit: str = "") -> Chart:
    """Bars of `counts` over equal bins of [low, high]; each bar's title says its bin and count."""
    peak = max(counts, default=0) or 1
    step = (high - low) / max(1, len(counts))
    width = WIDTH / max(1, len(counts))
    bars = []
    for index, count in enumerate(counts):
        height = (HEIGHT - 2) * count / peak
        bars.append(Bar(index * width + 0.5, HEIGHT - height, max(width - 1, 0.5), height,
                        f"{low + index * step:.3g}-{low + (index + 1) * step:.3g}{unit}: {count:,}"))
    return Chart(bars, WIDTH, HEIGHT, f"{low:.3g}", f"{high:.3g}")


@dataclass(frozen=True)
class EffectBar:
    label: str
    x: float
    width: float
    y: float
    positive: bool
    title: str


def effect_bars(effects: list[tuple[str, float | None]], row: int = 14) -> dict:
    """Horizontal bars of effects on [-1, 1] (shares of a gap) around a centre line, one row each."""
    half = WIDTH / 2
    bars = []
    for index, (label, value) in enumerate(effects):
        if value is None:
            continue
        clipped = max(-1.0, min(1.0, value))
        bars.append(EffectBar(label, half if clipped >= 0 else half + clipped * half, abs(clipped) * half,
                              index * row + 2, clipped >= 0, f"{label}: {value:+.0%}"))
    return {"bars": bars, "width": WIDTH, "height": max(1, len(effects)) * row + 4, "centre": half, "row": row}
