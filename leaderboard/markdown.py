"""Tables and figures as Markdown/HTML text (no Streamlit calls): what the pages show instead of data grids
and chart widgets, because a new visitor's browser draws one Markdown block in a fraction of the time a
grid or a Vega-Lite chart takes (``benchmarks/leaderboard.py``; measured in the issue 19 notes).

Guarantees: every cell is one line of literal text (``|`` and line breaks escaped) unless it is Markdown
made here (links, badges); untrusted text goes through :func:`leaderboard.ui.md_escape` first.
"""

import html
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


def heatmap_html(grid: pd.DataFrame, higher_is_better: bool, percent: bool) -> str:
    """A method × task table (``grid``: methods as index, tasks as columns) as HTML whose cells are shaded
    by value: darker red = worse for a lower-is-better metric, darker blue = better otherwise. Values print
    in the cells, so the table reads without the colours."""
    values = grid.to_numpy(dtype=float)
    lo, hi = float(pd.Series(values.ravel()).min()), float(pd.Series(values.ravel()).max())
    rgb = (49, 130, 189) if higher_is_better else (222, 45, 38)

    def td(v: float) -> str:
        if pd.isna(v):
            return "<td>–</td>"
        share = 0.0 if hi == lo else (v - lo) / (hi - lo)
        alpha = 0.08 + 0.85 * share
        ink = "#fff" if alpha > 0.55 else "inherit"
        text = f"{100 * v:.0f}%" if percent else f"{v:.2f}"
        return (f'<td style="background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f});color:{ink};'
                f'text-align:center;padding:4px 10px">{text}</td>')

    head = "".join(f'<th style="padding:4px 10px">{html.escape(str(c))}</th>' for c in grid.columns)
    rows = "".join(f'<tr><th style="text-align:left;padding:4px 10px;font-weight:normal">'
                   f"{html.escape(str(m))}</th>{''.join(td(v) for v in row)}</tr>"
                   for m, row in zip(grid.index, values, strict=True))
    return (f'<table style="border-collapse:collapse;font-size:0.9rem"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")
