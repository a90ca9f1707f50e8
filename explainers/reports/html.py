"""One self-contained HTML file (images inline as data URIs) that opens offline and can be mailed to anyone."""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass

import pandas as pd

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; border: 1px solid #eee; } figure { margin: 0 0 1.5rem; }
figcaption, .note { color: #555; font-size: 0.9rem; }
"""


@dataclass
class Section:
    heading: str
    text: str = ""
    table: pd.DataFrame | None = None
    png: bytes | None = None
    caption: str = ""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_report(title: str, subtitle: str, sections: list[Section]) -> str:
    """The report as one HTML string; every value is escaped, every image embedded."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(subtitle)} · generated {stamp}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p class='note'>{html.escape(section.text)}</p>")
        if section.table is not None:
            parts.append(section.table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, escape=True))
        if section.png is not None:
            parts.append(f"<figure><img alt='{html.escape(section.heading)}' src='{png_data_uri(section.png)}'>"
                         f"<figcaption>{html.escape(section.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
