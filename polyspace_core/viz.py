"""Figure helpers shared by the studies' plotting modules."""

from __future__ import annotations


class FigureList(list):
    """Several matplotlib figures as one notebook cell result, each shown in turn (a plain list
    would show its repr). Headless reports embed each as a static PNG."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for fig in self:
            display(fig)
