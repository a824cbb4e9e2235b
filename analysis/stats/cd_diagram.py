"""Critical-difference diagram (Demšar 2006, Fig. 1) drawn from a Nemenyi table."""

import pandas as pd
from matplotlib.figure import Figure

from analysis.stats.nemenyi import cd_cliques

ROW_IN, CLIQUE_IN = 0.3, 0.12  # vertical spacing (inches) of method rows and of clique bars


def cd_diagram(ranks: pd.DataFrame, title: str | None = None, fontsize: float = 11) -> Figure:
    """Average-rank axis (best on the left), each method joined to its rank, bars joining CD cliques.

    ``ranks`` is :func:`analysis.stats.nemenyi_critical_difference`'s table. A thick bar joins methods
    whose average ranks differ by less than CD (not significantly different by Nemenyi). Returns a
    ``matplotlib.figure.Figure`` (no pyplot state), sized in inches so the text stays at ``fontsize``.
    """
    avg = ranks.set_index("method")["avg_rank"].sort_values()
    cd, k = float(ranks["cd"].iat[0]), len(avg)
    cliques = cd_cliques(avg, cd)
    labels = {m: f"{m} ({r:.2f})" for m, r in avg.items()}
    label_in = 0.6 * fontsize / 72 * max(map(len, labels.values())) + 0.45
    axis_in = max(4.0, 0.6 * (k - 1))
    per_in = (k - 1) / axis_in  # rank units per inch
    n_left = (k + 1) // 2
    first_row = 0.25 + CLIQUE_IN * len(cliques) + 0.2
    bottom = first_row + ROW_IN * (max(n_left, k - n_left) - 1) + 0.3
    top = -1.1 if title else -0.8

    fig = Figure(figsize=(axis_in + 2 * label_in, bottom - top))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(1 - label_in * per_in, k + label_in * per_in)
    ax.set_ylim(bottom, top)  # y grows downwards, in inches
    ax.axis("off")
    line = {"color": "black", "lw": 1.0, "clip_on": False}

    ax.plot([1, k], [0, 0], **line)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, -0.1], **line)
        ax.text(t, -0.13, str(t), ha="center", va="bottom", fontsize=fontsize)
        if t < k:
            ax.plot([t + 0.5, t + 0.5], [0, -0.05], **line)
    ax.plot([1, 1 + cd], [-0.55, -0.55], color="black", lw=1.5, clip_on=False)
    for x in (1, 1 + cd):
        ax.plot([x, x], [-0.5, -0.6], **line)
    ax.text(1 + cd / 2, -0.6, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=fontsize)
    if title:
        ax.text((1 + k) / 2, -0.85, title, ha="center", va="bottom", fontsize=fontsize + 1, weight="bold")

    left, right = list(avg.index[:n_left]), list(avg.index[n_left:])[::-1]
    for side, methods, edge in (("right", left, 1 - 0.25 * per_in), ("left", right, k + 0.25 * per_in)):
        for row, m in enumerate(methods):
            y = first_row + ROW_IN * row
            ax.plot([avg[m], avg[m], edge], [0, y, y], **line)
            gap = 0.05 * per_in * (-1 if side == "right" else 1)
            ax.text(edge + gap, y, labels[m], ha=side, va="center", fontsize=fontsize)
    for j, clique in enumerate(cliques):
        y = 0.25 + CLIQUE_IN * j
        ax.plot(
            [avg[clique[0]] - 0.03, avg[clique[-1]] + 0.03],
            [y, y],
            color="black",
            lw=4,
            clip_on=False,
            solid_capstyle="round",
            gid="clique",
        )
    return fig
