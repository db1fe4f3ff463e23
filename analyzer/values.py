"""Small helpers on values read from the logs that stages of different layers share.

They live here, below every stage, so that no stage reaches sideways into another for them (the
layers contract in pyproject.toml, docs/architecture.md "Layers"): a number or None, text that is
safe to print on a terminal, and the unit a run logs its KL in.
"""

from __future__ import annotations

import math
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.model import RunData


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float, or None when it is not a finite number (None, text, NaN, ±inf)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def terminal_safe(text: str) -> str:
    """Model output is untrusted: control characters (ANSI escapes, \\r, bells) would rewrite the
    terminal, and lone surrogates cannot be printed. Show them as escapes / U+FFFD instead."""
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if ch in "\n\t":
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\u200d":  # keep ZWJ (emoji sequences)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def kl_unit(run: RunData, configured: str = "auto") -> str:
    """``token`` or ``sequence``: configured, else ``run.info['kl_unit']``, else from the source.

    TRL's PPO (and RLOO before TRL 0.20) log ``objective/kl``, summed per sequence; ingest marks
    such logs as algorithm ``ppo`` (they carry ``objective/*`` keys). GRPO, today's RLOO (``kl``)
    and verl (``actor/kl_loss``, ``actor/reward_kl_penalty``) log a per-token mean.
    """
    if configured in ("token", "sequence"):
        return configured
    unit = str(run.info.get("kl_unit") or "").lower()
    if unit in ("token", "sequence"):
        return unit
    algo = str(run.info.get("algorithm") or "").lower()
    source = (run.report.source_kind or "").lower()
    if source.startswith("verl"):
        return "token"
    if algo == "ppo" or any(c.startswith("objective/") for c in run.steps.columns):
        return "sequence"
    return "token"
