"""The leaderboard's figures as PNGs (matplotlib, cached), drawn at the pixel size they are shown at (100
dpi): the critical-difference diagram and the accuracy vs vulnerability scatter. A picture inline in the
page's Markdown costs a new visitor's browser far less than a Vega-Lite chart widget
(``benchmarks/leaderboard.py``), and the values behind each are in the page's download."""

import io

import pandas as pd
import streamlit as st
from matplotlib.figure import Figure


def _png(fig: Figure, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def cd_figure(ranks: pd.DataFrame, p_values: pd.DataFrame, title: str | None = None) -> Figure:
    """:func:`analysis.stats.cd_diagram` of average ranks with bars from ``p_values`` (the ranking's pairwise
    decisions), white background for the dark theme too."""
    from analysis.stats import cd_diagram

    fig = cd_diagram(ranks, title=title, fontsize=11, p_values=p_values)
    fig.patch.set_facecolor("white")
    return fig


@st.cache_data(show_spinner=False, max_entries=64)
def cd_png(ranks: pd.DataFrame, p_values: pd.DataFrame, dpi: int = 100) -> bytes:
    """:func:`cd_figure` as PNG bytes, cached on its inputs (rendering costs more than the statistics)."""
    return _png(cd_figure(ranks, p_values), dpi)


@st.cache_data(show_spinner=False, max_entries=64)
def scatter_png(frame: pd.DataFrame, x: str, y: str, x_label: str, y_label: str, dpi: int = 100) -> bytes:
    """One labelled point per method (``frame``: ``method`` and rate columns ``x``, ``y``) with a least-squares
    line: the report's figure (:func:`analysis.figures.accuracy_vs_vulnerability`) with the page's axis labels
    and no title (the page states the correlations above it, and labels of high points may reach it)."""
    from analysis.figures import accuracy_vs_vulnerability

    per_method = frame.rename(columns={x: "clean_acc", y: f"mean_{y}"})
    fig = accuracy_vs_vulnerability(per_method, y, y_label, pd.DataFrame(columns=["test", "r", "p_val"]))
    fig.axes[0].set_title("")
    fig.axes[0].set_xlabel(f"{x_label} (%)")
    return _png(fig, dpi)
