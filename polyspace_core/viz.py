"""Figure helpers shared by the studies' plotting modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A constrained-layout Figure made through pyplot and closed at once.

    Going through pyplot is what, in a kernel, sets up the inline PNG display of figures: a bare
    `matplotlib.figure.Figure()` in a kernel that never touched pyplot shows as the text
    "<Figure size ...>" and the headless report has no picture. Closing it at once keeps the
    inline backend from showing it a second time at the end of the cell."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


class FigureList(list):
    """Several matplotlib figures as one notebook cell result, each shown in turn (a plain list
    would show its repr). Headless reports embed each as a static PNG."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for fig in self:
            display(fig)
