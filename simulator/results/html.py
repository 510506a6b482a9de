"""One self-contained HTML page (report.html) of tables and interactive plotly charts.

Self-contained: plotly.js (from the installed plotly package) is written inline once, with every chart's
data, so the page opens from a folder, an e-mail or an air-gapped machine with nothing fetched. Charts are
plain figure dicts (`{"data": [...], "layout": {...}}`, the plotly.js schema) turned into HTML by
the very fragment `plotly.io.to_html(fig, include_plotlyjs=False, full_html=False, validate=False)` gives
(`figure`, held to it by tests/test_report_html.py), without importing plotly.io (its JSON encoder pulls in
narwhals: ~40 ms of every run); plotly.js is read from the installed plotly package when a page is written.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from pathlib import Path
from typing import Any

Figure = dict[str, Any]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
p.lead { font-size: 1.05em; background: #f6f8fa; border-left: 4px solid #4c72b0; padding: 0.6em 0.9em; }
.chart { margin: 0.8em 0; } .note { color: #555; font-size: 0.9em; }
"""


def figure(fig: Figure, height: int = 420) -> str:
    """A chart as an HTML fragment (a div and the script that draws it; plotly.js itself is in the page)."""
    layout = {"height": height, "margin": {"l": 70, "r": 30, "t": 60, "b": 60}, "hovermode": "closest",
              "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"family": "system-ui, sans-serif"},
              **fig.get("layout", {})}
    for key, value in layout.items():  # light grids, as plotly's "plotly_white" look
        if key.startswith(("xaxis", "yaxis")) and isinstance(value, dict):
            layout[key] = {"gridcolor": "#e5e5e5", "zerolinecolor": "#c8c8c8", "linecolor": "#888", **value}
    # a div id from the chart's content, not plotly's random one, so that the same run writes the same page
    digest = hashlib.sha1(json.dumps(fig, sort_keys=True, default=str).encode()).hexdigest()[:16]
    body = plotly_div({"data": fig["data"], "layout": layout}, {"displaylogo": False, "responsive": True},
                      f"chart-{digest}")
    return f'<div class="chart">{body}</div>'


def plotly_json(value: Any) -> str:
    """JSON as plotly.io's own encoder writes it (its "json" engine): compact, NaN and infinities as null,
    `<`, `>` and `/` escaped so that no text can close the script element."""
    text = json.dumps(value, separators=(",", ":"), default=_plain)
    if "NaN" in text or "Infinity" in text:
        text = json.dumps(json.loads(text, parse_constant=lambda _: None), separators=(",", ":"))
    for unsafe, safe in (("<", "\\u003c"), (">", "\\u003e"), ("/", "\\u002f")):
        text = text.replace(unsafe, safe)
    return text


def _plain(value: Any) -> Any:
    """numpy arrays and scalars as plain lists and numbers (what plotly's encoder makes of them)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def plotly_div(fig: Figure, config: dict[str, Any], div_id: str) -> str:
    """`plotly.io.to_html(fig, config=config, include_plotlyjs=False, full_html=False, validate=False,
    div_id=div_id)`, character for character."""
    layout = fig.get("layout", {})
    template = layout.get("template", {}).get("layout", {})
    width, height = (_css(layout.get(key, template.get(key, "100%"))) for key in ("width", "height"))
    config = {**config}
    config.setdefault("responsive", True)
    if not config.get("showSendToCloud", False):
        config.pop("plotlyServerURL", None)
    data, layout_json = plotly_json(fig.get("data", [])), plotly_json(layout)
    pad = " " * 4  # plotly's template is indented in steps of 4 spaces, its line breaks escaped
    script = (f'{pad * 4}if (document.getElementById("{div_id}")) {{{pad * 5}Plotly.newPlot({pad * 6}"{div_id}",'
              f"{pad * 6}{data},{pad * 6}{layout_json},{pad * 6}{json.dumps(config)}{pad * 5}){pad * 4}}}")
    return (f'<div style="height:{height}; width:{width};">{pad * 7}<div id="{div_id}" class="plotly-graph-div" '
            f'style="height:100%; width:100%;"></div>{pad * 3}<script>{pad * 4}window.PLOTLYENV=window.PLOTLYENV '
            f"|| {{}};{pad * 4}{script};{pad * 3}</script>{pad * 2}</div>")


def _css(size: Any) -> str:
    """A div's width or height: a number in pixels, else as given ("100%")."""
    try:
        float(size)
    except (ValueError, TypeError):
        return str(size)
    return f"{size}px"


def axis(title: str, **more: Any) -> dict[str, Any]:
    """An axis with its title (every axis of every chart has one: what it shows and its unit)."""
    return {"title": {"text": title}, "automargin": True, "showgrid": True, **more}


def title(text: str) -> dict[str, Any]:
    return {"text": text, "x": 0.01, "xanchor": "left"}


def cell(value: Any, digits: int = 4) -> str:
    """A table cell's text: numbers to `digits` significant digits, missing values as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def heading(text: str) -> str:
    return f"<h2>{html.escape(text)}</h2>"


def paragraph(text: str, css: str = "") -> str:
    return f'<p class="{css}">{html.escape(text)}</p>' if css else f"<p>{html.escape(text)}</p>"


def document(page_title: str, parts: list[str]) -> str:
    """The whole page: plotly.js inline in the head, then `parts` (fragments from the functions above)."""
    import plotly
    import plotly.offline

    script = plotly.offline.get_plotlyjs()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(page_title)}</title><style>{_STYLE}</style>"
            f"<script type=\"text/javascript\">/* plotly.js {plotly.__version__}, MIT licence */{script}</script>"
            f"</head><body><h1>{html.escape(page_title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def write(path: Path, page_title: str, parts: list[str]) -> None:
    path.write_text(document(page_title, parts), encoding="utf-8")
