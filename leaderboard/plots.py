"""The leaderboard's figures: Altair charts (interactive) and the critical-difference diagram (matplotlib).

The pages draw a chart from its cached Vega-Lite spec (:func:`heatmap_spec`, :func:`scatter_spec`): building
and validating an Altair chart costs more than everything else on its page."""

import io
import threading

import altair as alt
import pandas as pd
import streamlit as st
from matplotlib.figure import Figure


def _axis_format(percent: bool) -> str:
    return ".0%" if percent else ".2f"


def heatmap(frame: pd.DataFrame, label: str, higher_is_better: bool, percent: bool,
            method_order: list[str], task_order: list[str] | None = None) -> alt.Chart:
    """Method × task heatmap of ``frame`` (``method, task, value``); darker = worse for security metrics."""
    scheme = "blues" if higher_is_better else "reds"
    fmt = ".1%" if percent else ".3f"
    base = alt.Chart(frame).encode(
        x=alt.X("task:N", sort=task_order, title="task", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("method:N", sort=method_order, title=None, axis=alt.Axis(labelLimit=260)),
    )
    n_rows = frame["method"].nunique()
    mid = float(frame["value"].min() + frame["value"].max()) / 2
    rect = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("value:Q", title=label, scale=alt.Scale(scheme=scheme),
                        legend=alt.Legend(format=_axis_format(percent), orient="right",
                                          gradientLength=max(60, 30 * n_rows - 30))),
        tooltip=["method:N", "task:N", alt.Tooltip("value:Q", title=label, format=fmt)],
    )
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text("value:Q", format=".0%" if percent else ".2f"),
        color=alt.condition(alt.datum.value > mid, alt.value("white"), alt.value("black")),
    )
    return (rect + text).properties(height=alt.Step(30))


def scatter(frame: pd.DataFrame, x: str, y: str, x_label: str, y_label: str) -> alt.Chart:
    """One labelled point per method (``frame``: ``method`` and columns ``x``, ``y``, both rates)."""
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:Q", title=x_label, scale=alt.Scale(zero=False, padding=24), axis=alt.Axis(format=".0%")),
        y=alt.Y(f"{y}:Q", title=y_label, scale=alt.Scale(zero=False), axis=alt.Axis(format=".0%")),
        tooltip=["method:N", alt.Tooltip(f"{x}:Q", title=x_label, format=".1%"),
                 alt.Tooltip(f"{y}:Q", title=y_label, format=".1%")],
    )
    points = base.mark_circle(size=140, opacity=0.85)
    labels = base.mark_text(align="left", dx=9, dy=-6, fontSize=12).encode(text="method:N")
    return (points + labels).properties(height=420)


_THEME = threading.Lock()  # Altair's theme is global state


def vega_lite(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec, data inline, as `st.altair_chart` builds it: without Altair's default
    theme (its fixed 300 px view sizes are not for Streamlit's layout)."""
    with _THEME, alt.theme.enable("none"):
        return chart.to_dict()


@st.cache_data(show_spinner=False, max_entries=64)
def heatmap_spec(frame: pd.DataFrame, label: str, higher_is_better: bool, percent: bool,
                 method_order: list[str]) -> dict:
    """:func:`vega_lite` of :func:`heatmap`, cached on its inputs (draw it with `st.vega_lite_chart`)."""
    return vega_lite(heatmap(frame, label, higher_is_better, percent, method_order))


@st.cache_data(show_spinner=False, max_entries=64)
def scatter_spec(frame: pd.DataFrame, x: str, y: str, x_label: str, y_label: str) -> dict:
    """:func:`vega_lite` of :func:`scatter`, cached on its inputs."""
    return vega_lite(scatter(frame, x, y, x_label, y_label))


def cd_figure(ranks: pd.DataFrame, title: str | None = None) -> Figure:
    """:func:`analysis.stats.cd_diagram` of a Nemenyi table, white background for the dark theme too."""
    from analysis.stats import cd_diagram

    fig = cd_diagram(ranks, title=title, fontsize=11)
    fig.patch.set_facecolor("white")
    return fig


@st.cache_data(show_spinner=False, max_entries=64)
def cd_png(ranks: pd.DataFrame, dpi: int = 160) -> bytes:
    """:func:`cd_figure` as PNG bytes, cached on the Nemenyi table (rendering costs more than the statistics)."""
    buf = io.BytesIO()
    cd_figure(ranks).savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def png_width(png: bytes) -> int:
    """Pixel width from a PNG header."""
    return int.from_bytes(png[16:20], "big")
