"""Matplotlib figures through its object API, as PNG bytes.

pyplot keeps one global "current figure" per process; the dashboard's sessions
run in threads of one server, so a figure drawn through pyplot could pick up
another session's axes. A ``Figure`` with its own Agg canvas shares nothing.
"""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Matplotlib's marker for each of the registry's point shapes (named as Vega-Lite names them), so a report's
# figure marks a method as the pages' charts do.
MARKERS = {"circle": "o", "square": "s", "triangle-up": "^", "diamond": "D", "cross": "P", "triangle-down": "v",
           "triangle-left": "<", "triangle-right": ">"}


def new_figure(width: float, height: float, dpi: int = 110) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches with one axes, drawn on its own canvas."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def figure_png(figure: Figure) -> bytes:
    """The figure laid out tightly and encoded as PNG."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
