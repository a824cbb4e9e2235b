"""Critical-difference diagram (Demšar 2006, Fig. 1), drawn by scikit-posthocs from a p-value matrix."""

import pandas as pd
import scikit_posthocs as sp
from matplotlib.figure import Figure

ROW_IN = 0.3  # vertical space (inches) per method row


def cd_diagram(
    ranks: pd.DataFrame, title: str | None = None, fontsize: float = 11, p_values: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> Figure:
    """Average-rank axis (best on the left), each method hung from its rank, bars joining methods that do
    not differ at ``alpha``.

    ``ranks`` is :func:`analysis.stats.nemenyi_critical_difference`'s table. ``p_values`` (methods ×
    methods) is the matrix whose decisions the bars show: pass the ranking's
    (:func:`analysis.stats.decisions.p_value_matrix`) so the diagram and the letters agree; without it the
    Nemenyi p-values in ``ranks.attrs["p_values"]`` are used. Drawn by
    ``scikit_posthocs.critical_difference_diagram`` on a ``matplotlib.figure.Figure`` (no pyplot state).
    """
    avg = ranks.set_index("method")["avg_rank"].sort_values()
    matrix = p_values if p_values is not None else pd.DataFrame(ranks.attrs["p_values"])
    matrix = matrix.loc[avg.index, avg.index]
    # the method labels hang outside the rank axis, left and right: leave them room so none is cut off
    label_in = 0.6 * fontsize / 72 * (max(len(str(m)) for m in avg.index) + 8)
    width, height = max(6.0, 0.55 * len(avg)) + 2 * label_in, 1.2 + ROW_IN * (len(avg) + 1) / 2
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=label_in / width, right=1 - label_in / width, top=1 - 0.45 / height, bottom=0.02)
    ax = fig.add_subplot()
    sp.critical_difference_diagram(
        avg, matrix, alpha=alpha, ax=ax, label_props={"fontsize": fontsize},
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
    )
    if title:
        ax.set_title(title, fontsize=fontsize + 1, weight="bold")
    return fig
