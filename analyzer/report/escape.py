"""Escaping of untrusted text (model output, prompts, reward names, file names) for every place it is
shown: Markdown (inline, tables, code spans, fences), raw HTML inside Markdown, JSON inside a
``<script>`` block, and the terminal. Every view of the report package renders text through these.
"""

from __future__ import annotations

import json
import re
from typing import Any

from analyzer.values import terminal_safe

__all__ = ["excerpt", "md_code", "md_escape", "md_fence", "md_html", "script_json", "terminal_safe", "terminal_text"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NEWLINES = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")
# Markdown punctuation that can start emphasis, code, links, tables, strikethrough or HTML.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(value: Any) -> str:
    """Text safe inside a GFM paragraph, list item or table cell: no formatting, links, HTML,
    table breaks or @-mentions; newlines become ``<br>``."""
    if value is None:
        return ""
    text = _CONTROL.sub("", str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # A zero-width space after @ keeps model text from pinging people in a PR comment.
    text = text.replace("@", "@\u200b")
    return "<br>".join(
        "\\" + line if line.startswith("#") else line for line in _NEWLINES.split(text)
    )


def md_html(value: Any) -> str:
    """Text inside a raw-HTML line of a Markdown file (e.g. ``<summary>``): Markdown is not
    parsed there, so HTML-escape it instead, on one line."""
    import html

    if value is None:
        return ""
    text = _NEWLINES.sub(" ", _CONTROL.sub("", str(value)))
    return html.escape(text, quote=True).replace("@", "@\u200b")


def md_code(value: Any) -> str:
    """An inline code span that no backtick run or pipe in ``value`` can end or split."""
    text = _NEWLINES.sub(" ", _CONTROL.sub("", str(value)))
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(value: Any, info: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run in the text."""
    text = _CONTROL.sub("", str(value if value is not None else ""))
    text = _NEWLINES.sub("\n", text).rstrip("\n")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def excerpt(value: Any, limit: int = 160) -> str:
    """One line of at most ``limit`` characters (newlines shown as ⏎)."""
    if value is None:
        return ""
    text = _NEWLINES.sub(" ⏎ ", _CONTROL.sub("", str(value))).strip()
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def script_json(data: Any) -> str:
    """JSON that can sit inside ``<script type="application/json">``: ``</script>``, ``<!--``,
    ``&`` and the JS line separators can't end the block or confuse a parser."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )




def terminal_text(value: object) -> str:
    """One terminal line of untrusted text: control sequences removed, newlines shown as ⏎."""
    return terminal_safe(str(value)).replace("\n", "⏎")
