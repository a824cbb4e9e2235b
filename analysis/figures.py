"""The report's figures, as matplotlib ``Figure`` objects (no pyplot state): large fonts, labelled axes.

:func:`save` writes one as a 150-dpi PNG. Every function takes tidy DataFrames.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

FONT = 13
_RC = {
    "font.size": FONT,
    "axes.titlesize": FONT + 1,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT - 1,
    "ytick.labelsize": FONT - 1,
    "legend.fontsize": FONT - 1,
}


def _styled(fn):
    """Run a figure builder under the report's font sizes (a local rc context, no global state)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi; the figures size themselves, so no second "tight" layout pass)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, facecolor="white")
    return path


@_styled
def heatmap(
    long: pd.DataFrame, metric: str, label: str, task_order: list[str] | None = None, surrogate: str | None = None
) -> Figure:
    """Method × task heatmap of ``metric`` (mean over the task's other setting columns), in %, most vulnerable
    method on top; each cell annotated; the title names ``surrogate`` when given."""
    table = long.pivot_table(index="method", columns="task", values=metric, aggfunc="mean")
    if task_order:
        table = table[
            [t for t in task_order if t in table.columns] + [t for t in table.columns if t not in task_order]
        ]
    table["mean"] = table.mean(axis=1)
    table = table.sort_values("mean", ascending=False)
    values = 100 * table.to_numpy()
    n_rows, n_cols = values.shape
    fig = _figure(max(6.5, 1.1 * n_cols + 3.5), max(3.5, 0.5 * n_rows + 1.8))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 1, vmax + 1
    im = ax.imshow(values, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(n_cols), [*table.columns[:-1], "MEAN"], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), table.index)
    ax.axvline(n_cols - 1.5, color="white", lw=3)
    mid = (vmin + vmax) / 2
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.0f}" if abs(v) >= 99.5 or n_cols > 8 else f"{v:.1f}",
                    ha="center",
                    va="center",
                    fontsize=FONT - 2,
                    color="black" if v > mid else "white",
                )
    ax.set_xlabel("task")
    ax.set_ylabel("merging method")
    ax.set_title(f"{label} (%) by method and task" + (f", surrogate {surrogate}" if surrogate else ""))
    fig.colorbar(im, ax=ax, label=f"{label} (%)", shrink=0.9)
    return fig


def _label_lifts(ax, x: np.ndarray, y: np.ndarray, labels: list[str], right: np.ndarray) -> list[float]:
    """Vertical offsets (points) that keep point labels off each other and off the other points: labels are
    placed bottom-up, each lifted above whatever placed label or marker its box would cover (boxes estimated
    from the text length at the annotation font size). `right`: the label stands right of its point. The
    axes limits must be set first."""
    size, marker = FONT - 2, 6.0
    xy = ax.transData.transform(np.column_stack([x, y])) * 72 / ax.figure.dpi if len(x) else np.zeros((0, 2))
    boxes = [(px - marker, px + marker, py - marker, py + marker) for px, py in xy]  # left, right, bottom, top
    lifts = [0.0] * len(labels)
    for i in np.argsort(y, kind="stable"):
        width, height = 0.62 * size * len(labels[i]), 1.3 * size
        left = xy[i, 0] + 7 if right[i] else xy[i, 0] - 7 - width
        bottom = xy[i, 1] + 5
        others = [b for j, b in enumerate(boxes) if j != i]
        for bl, br, bb, bt in sorted(others, key=lambda b: b[2]):
            if left < br and bl < left + width and bottom < bt and bb < bottom + height:
                bottom = bt
        lifts[i] = bottom - (xy[i, 1] + 5)
        boxes.append((left, left + width, bottom, bottom + height))
    return lifts


@_styled
def accuracy_vs_vulnerability(
    per_method: pd.DataFrame, metric: str, label: str, corr: pd.DataFrame
) -> Figure:
    """Scatter of clean merged accuracy (x) vs mean ``metric`` (y) per method, labelled points, the rank
    correlations in the title."""
    fig = _figure(8.5, 6.0)
    ax = fig.add_subplot()
    x, y = 100 * per_method.clean_acc.to_numpy(), 100 * per_method[f"mean_{metric}"].to_numpy()
    ax.scatter(x, y, s=70, color="tab:red", edgecolor="black", zorder=3)
    pad_x = max(1.0, 0.06 * np.ptp(x)) if len(x) else 1.0
    pad_y = max(0.2, 0.08 * np.ptp(y)) if len(y) else 0.2
    if len(x):
        ax.set_xlim(x.min() - pad_x, x.max() + pad_x)
        ax.set_ylim(y.min() - pad_y, y.max() + pad_y)
    right = x <= (x.min() + x.max()) / 2 if len(x) else np.zeros(0, bool)  # labels point inwards, never off
    labels = list(per_method.method)
    for xi, yi, m, r, dy in zip(x, y, labels, right, _label_lifts(ax, x, y, labels, right), strict=True):
        ax.annotate(m, (xi, yi), xytext=(7 if r else -7, 5 + dy), textcoords="offset points",
                    ha="left" if r else "right", fontsize=FONT - 2,
                    arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.6} if dy else None)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + icpt, color="gray", ls="--", lw=1.2, label="least-squares line")
        ax.legend(loc="best")
    ax.set_xlabel("clean merged accuracy (%)")
    ax.set_ylabel(f"mean {label} (%)")
    parts = [
        f"{'Spearman ρ' if c.test == 'spearman' else 'Kendall τ'} = {c.r:.2f} ({_p(c.p_val)})"
        for c in corr.itertuples()
    ]
    ax.set_title("Accuracy vs vulnerability\n" + ", ".join(parts) if parts else "Accuracy vs vulnerability")
    ax.grid(alpha=0.3)
    return fig


@_styled
def backdoor_bars(table: pd.DataFrame) -> Figure:
    """Mean backdoor ASR (95% CI error bars) per method, one bar per defense, one panel per attack/variant.

    ``table``: ``attack_variant, method, defense, backdoor_asr, ci_low, ci_high``.
    """
    panels = sorted(table.attack_variant.unique())
    defenses = sorted(table.defense.unique(), key=lambda d: (d != "none", d))
    methods = sorted(table.method.unique())
    width_in = min(14.0, max(8.0, 0.3 * len(methods) * len(defenses) + 3.0))  # stays readable when scaled
    fig = _figure(width_in, 3.2 * len(panels) + 1.2)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    bar_w = 0.8 / len(defenses)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for ax, panel in zip(axes, panels, strict=True):
        sub = table[table.attack_variant == panel]
        for j, d in enumerate(defenses):
            s = sub[sub.defense == d].set_index("method").reindex(methods)
            xs = np.arange(len(methods)) + (j - (len(defenses) - 1) / 2) * bar_w
            mean = 100 * s.backdoor_asr.to_numpy()
            err = np.vstack([mean - 100 * s.ci_low.to_numpy(), 100 * s.ci_high.to_numpy() - mean])
            err = np.where(np.isfinite(err), np.clip(err, 0, None), 0)
            ax.bar(
                xs,
                mean,
                bar_w,
                yerr=err,
                capsize=3,
                color=colors[j % len(colors)],
                edgecolor="black",
                label=f"defense: {d}",
            )
        ax.set_ylim(0, 105)
        ax.set_ylabel("backdoor ASR (%)")
        ax.set_title(f"attack: {panel}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(4, len(defenses)))
    axes[-1].set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes[-1].set_xlabel("merging method")
    return fig


def cd(ranks: pd.DataFrame, title: str, p_values: pd.DataFrame | None = None) -> Figure:
    """:func:`analysis.stats.cd_diagram` at the report's font size; bars from ``p_values`` when given."""
    from analysis.stats import cd_diagram

    return cd_diagram(ranks, title=title, fontsize=FONT, p_values=p_values)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
