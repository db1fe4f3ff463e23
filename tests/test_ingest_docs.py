"""docs/formats.md stays in sync with the code: the key mapping table, the source kinds, the
issue kinds."""

from __future__ import annotations

from pathlib import Path

from analyzer.ingest import SOURCE_KINDS
from analyzer.ingest.keymap import markdown_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats.md"


def test_keymap_table_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("<!-- keymap:start -->\n") + len("<!-- keymap:start -->\n")
    end = text.index("<!-- keymap:end -->")
    assert text[start:end] == markdown_table(), (
        "docs/formats.md's key table is stale: paste the output of `python -m analyzer.ingest.keymap` "
        "between the keymap markers"
    )


def test_every_source_and_issue_kind_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in SOURCE_KINDS:
        assert f"| `{kind}` |" in text, kind
    for kind in ("torn_line", "malformed", "not_object", "not_utf8", "wrong_type", "empty", "dropped", "truncated_report"):
        assert f"`{kind}`" in text, kind
