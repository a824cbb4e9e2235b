"""Tables and figures as Markdown/HTML text (no Streamlit calls): what the pages show instead of data grids
and chart widgets, because a new visitor's browser draws one Markdown block in a fraction of the time a
grid or a Vega-Lite chart takes (``benchmarks/leaderboard.py``; measured in the issue 19 notes).

Guarantees: every cell is one line of literal text (``|`` and line breaks escaped) unless it is Markdown
made here (links, badges); untrusted text goes through :func:`leaderboard.ui.md_escape` first.
"""

import base64
import re
from urllib.parse import quote

import pandas as pd

BADGE_COLORS = {"built-in": "blue", "reproduced": "green"}
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def cell(value: object) -> str:
    """One table cell: ``–`` for missing, else the text with pipes escaped and line breaks as spaces."""
    if value is None or (not isinstance(value, str | list | tuple | dict) and pd.isna(value)):
        return "–"
    return UNESCAPED_PIPE.sub(r"\\|", str(value)).replace("\r", " ").replace("\n", " ")


def table(frame: pd.DataFrame, right: tuple[str, ...] = ()) -> str:
    """``frame`` as a GitHub-flavoured Markdown table (index dropped); columns in ``right`` right-aligned."""
    cols = [str(c) for c in frame.columns]
    head = "| " + " | ".join(cell(c) for c in cols) + " |"
    rule = "|" + "|".join("---:" if c in right else "---" for c in cols) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def code(text: object) -> str:
    """Text as inline code (a command line), or ``–``; single backticks inside it are kept (a double-backtick
    span)."""
    if text is None or text == "" or (not isinstance(text, str) and pd.isna(text)):
        return "–"
    text = str(text).replace("\n", " ")
    return f"`{text}`" if "`" not in text else f"`` {text.replace('``', '` `')} ``"


def link(text: str, url: str | None) -> str:
    """``[text](url)``, or ``–`` without a URL (spaces and parentheses in the URL are %-escaped)."""
    if not url:
        return "–"
    return f"[{text}]({quote(url, safe=':/?&=#%+@,;~')})"


def badge(word: str) -> str:
    """A method's badge (:func:`leaderboard.tables.badge`) as a coloured Streamlit badge: blue built-in,
    green reproduced, red a failed reproduction, gray otherwise."""
    if not word:
        return "–"
    color = BADGE_COLORS.get(word, "red" if word.startswith("reproduction") else "gray")
    return f":{color}-badge[{word.replace(']', '')}]"


def best_worst_table(grid: pd.DataFrame, higher_is_better: bool, percent: bool) -> str:
    """A method × task table (``grid``: methods as index, tasks as columns) as Markdown: each value printed,
    the best cell of each task on a green background and the worst on a red one (ties marked alike)."""
    def text(v: float) -> str:
        return "–" if pd.isna(v) else (f"{100 * v:.1f}%" if percent else f"{v:.3f}")

    best = grid.max() if higher_is_better else grid.min()
    worst = grid.min() if higher_is_better else grid.max()
    shown = pd.DataFrame(index=grid.index)
    for task in grid.columns:
        col = grid[task]
        shown[task] = [f":green-background[{text(v)}]" if v == best[task] and best[task] != worst[task]
                       else f":red-background[{text(v)}]" if v == worst[task] and best[task] != worst[task]
                       else text(v) for v in col]
    return table(shown.rename_axis("method").reset_index(), right=tuple(str(c) for c in grid.columns))


def png_markdown(png: bytes, alt: str) -> str:
    """A PNG as a Markdown image linking to its static file (:func:`leaderboard.static.publish`): no image
    widget for the browser to load, and no image data in the Markdown it parses (a data URI there made the
    transfer page measurably slower for a new visitor on the loaded machine). Shown at its pixel size (at
    most the page's width). Without static serving (:func:`leaderboard.static.enabled`): a data URI."""
    from leaderboard import static

    if not static.enabled():
        return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
    return f"![{alt}]({static.publish(png, 'figure.png')})"
