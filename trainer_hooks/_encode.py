"""The encoders: records → JSONL lines and CSV rows, with logscan's safe JSON.

Pure functions (and one small per-logger :class:`GenerationEncoder`) run on the writer thread;
nothing here touches a file. Non-finite floats (NaN, ±inf) have no JSON literal; they are written
as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (``schema.NONFINITE_STRINGS``)
everywhere, in CSV cells too. ``schema.decode_float`` maps them back. Keys JSON would repeat
(``1`` and ``"1"``) are renamed, unknown objects (tensors, numpy scalars, enums, paths) become
JSON, and nesting deeper than ``_MAX_DEPTH`` is cut.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import schema
from ._records import EventRecord, GenFields, GenRecord

QUESTION_ID_HEX_CHARS = 16


def question_id_for(question: str, answer: str | None = None) -> str:
    """A stable id for a prompt: the first 16 hex digits of sha256(question + "\\x1f" + answer).

    Same input, same id, in any process and any Python version (no ``hash()`` randomisation).
    ``answer=None`` hashes as the empty string.
    """
    data = f"{question}\x1f{'' if answer is None else answer}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:QUESTION_ID_HEX_CHARS]


def event_dict(rec: EventRecord, rank: int) -> dict[str, Any]:
    """The ``events.jsonl`` record (``TrainingEvent.to_dict`` and :func:`event_line` both use it)."""
    phase, metrics, meta = rec.phase, rec.metrics, rec.meta
    return {
        schema.E_TIME: rec.time,
        schema.E_STEP: rec.step,
        schema.E_PHASE: phase.value if isinstance(phase, enum.Enum) else str(phase),
        schema.E_SPLIT: rec.split,
        schema.E_METRICS: dict(metrics) if metrics else {},
        schema.E_META: dict(meta) if meta else {},
        schema.E_RANK: rank,
    }


# --- JSON encoding -------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    """Turn what training code typically logs (tensors, numpy scalars, enums, paths) into JSON."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception:  # fall through to the generic forms
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    tolist = getattr(obj, "tolist", None)  # numpy arrays/scalars, torch tensors
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    if hasattr(obj, "__float__"):
        try:
            return float(obj)
        except Exception:
            pass
    return str(obj)


def _nonfinite(f: float) -> str:
    """The NONFINITE string of a NaN/±inf float."""
    return schema.NAN if math.isnan(f) else (schema.POS_INF if f > 0 else schema.NEG_INF)


_MAX_DEPTH = 100
TOO_DEEP = "<nested too deep>"


def _only_str_keys(d: Mapping[Any, Any]) -> bool:
    """Whether every key of ``d`` is a str (else JSON would turn 1 and "1" into one key twice)."""
    try:
        "".join(d)  # C speed: a TypeError at the first key that is not a str
    except TypeError:
        return False
    return True


def _only_str_keys_deep(obj: Any, depth: int = 0) -> bool:
    """``_only_str_keys`` for every dict inside ``obj``; False (take the slow path) when too deep."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(obj, dict):
        if not _only_str_keys(obj):
            return False
        values: Iterable[Any] = obj.values()
    elif isinstance(obj, list | tuple):
        values = obj
    else:
        return True
    return all(
        _only_str_keys_deep(v, depth + 1) for v in values if isinstance(v, dict | list | tuple)
    )


def _str_keyed(d: dict[Any, Any]) -> dict[Any, Any]:
    """``d`` with every key a str, in order. A key that is not a str takes its text, and when that
    text is already a key, its type too (``{1: a, "1": b}`` → ``{"1 (int)": a, "1": b}``): a JSON
    object must not repeat a key, and neither value may be lost."""
    if _only_str_keys(d):
        return d
    taken = {k for k in d if isinstance(k, str)}
    out: dict[Any, Any] = {}
    for k, v in d.items():
        if not isinstance(k, str):
            try:
                base = str(k.value if isinstance(k, enum.Enum) else k)
            except Exception:
                base = f"<{type(k).__name__} key>"
            name, n = base, 1
            while name in taken:
                name = f"{base} ({type(k).__name__}{'' if n == 1 else f' {n}'})"
                n += 1
            taken.add(name)
            k = name
        out[k] = v
    return out


def sanitize(obj: Any, depth: int = 0) -> Any:
    """The slow path: non-finite floats → NONFINITE strings, odd keys → str, unknown objects → JSON.

    Nesting deeper than ``_MAX_DEPTH`` is cut: a container there becomes ``TOO_DEEP`` (JSON encoders
    and readers have recursion limits, and ``str()`` of a 5,000-deep list raises).
    """
    if depth > _MAX_DEPTH:
        if isinstance(obj, str | int | float) or obj is None:
            return sanitize(obj, 0)
        return TOO_DEEP
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _nonfinite(obj)
    if obj is None or isinstance(obj, str | int):
        return obj.value if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, dict):
        return {k: sanitize(v, depth + 1) for k, v in _str_keyed(obj).items()}
    if isinstance(obj, list | tuple):
        return [sanitize(v, depth + 1) for v in obj]
    return sanitize(_json_default(obj), depth + 1)


_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
).encode
try:  # the C encoder built once: JSONEncoder.encode rebuilds it on every call
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is None or c_encode_basestring is None:
        raise ImportError
    _c_iterencode = c_make_encoder(
        None, _json_default, c_encode_basestring, None, ":", ",", False, False, False
    )

    def _fast_dumps(obj: Any) -> str:
        return "".join(_c_iterencode(obj, 0))

except ImportError:  # pragma: no cover - CPython always has the C accelerator
    _fast_dumps = _dumps  # type: ignore[assignment]
_dumps_ascii = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_json_default
).encode


def encode_json(obj: Any) -> str:
    """One record as compact JSON, with logscan's NaN encoding. Never contains a raw newline."""
    try:
        return _fast_dumps(obj)
    except (ValueError, TypeError, RecursionError):
        # NaN/inf, odd keys, cycles: rare, so pay for a full walk only then
        return _dumps(sanitize(obj))


def _num_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else _nonfinite(v)
    if isinstance(v, int):
        return str(v)
    try:
        return _num_cell(float(v))
    except (TypeError, ValueError):
        return str(v)


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else encode_json(v)


def nan_sum(values: Iterable[Any]) -> float | None:
    """Sum like TRL's ``nansum``: NaN/None ignored; all of them missing → NaN; no rewards → None."""
    total = 0.0
    counted = False
    missing = False
    for v in values:
        if v is None:
            missing = True
            continue
        f = float(v)
        if math.isnan(f):
            missing = True
            continue
        total += f
        counted = True
    if counted:
        return total
    return math.nan if missing else None


def _escape_breaks(data: str) -> str:
    """Escape U+2028/U+2029/U+0085 (JSON text, so only inside strings: the value is unchanged).

    ``str.splitlines()`` and some JSON-lines readers treat them as line ends; escaped, each record
    is one physical line for every reader.
    """
    # three substring tests are much faster than one regex character-class scan of a large batch
    if "\u2028" not in data and "\u2029" not in data and "\x85" not in data:
        return data
    return data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


def _is_utf8_safe(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reencode_ascii(line: str) -> str:
    return _dumps_ascii(json.loads(line)) + "\n"


class TagExtractor:
    """Finds the content of the first ``<tag>…</tag>``, stripped, with ``str.find``.

    Same result as the regex ``<tag>(.*?)</tag>`` (DOTALL) but several times faster on long
    completions, which matters on the writer thread.
    """

    __slots__ = ("close", "open")

    def __init__(self, tag: str) -> None:
        self.open = f"<{tag}>"
        self.close = f"</{tag}>"

    def __call__(self, text: str) -> str | None:
        i = text.find(self.open)
        if i < 0:
            return None
        i += len(self.open)
        j = text.find(self.close, i)
        return None if j < 0 else text[i:j].strip()


def extract_tag(text: str, tag: str) -> str | None:
    """The stripped content of the first ``<tag>…</tag>`` in ``text``, or None."""
    return TagExtractor(tag)(text)


_UNSET: Any = object()  # "not passed" (None passed means "none")


# --- records → lines -------------------------------------------------------------------------------
def event_line(rec: EventRecord, rank: int) -> str:
    """One ``events.jsonl`` line (with its newline) for a queued event."""
    record = event_dict(rec, rank)
    metrics, meta = rec.metrics, rec.meta
    if (metrics and not _only_str_keys(metrics)) or (meta and not _only_str_keys_deep(meta)):
        return _dumps(sanitize(record)) + "\n"  # keys JSON would repeat: renamed
    return encode_json(record) + "\n"


def jsonl_payload(lines: list[str]) -> bytes:
    """The bytes of a batch of JSONL lines: U+2028/U+2029/U+0085 escaped, lone surrogates as
    ``\\u`` escapes (still exact JSON)."""
    data = "".join(lines)
    try:
        return _escape_breaks(data).encode("utf-8")
    except UnicodeEncodeError:
        data = "".join(ln if _is_utf8_safe(ln) else _reencode_ascii(ln) for ln in lines)
        return _escape_breaks(data).encode("utf-8")


def generation_dict(f: GenFields, rank: int) -> dict[str, Any]:
    """The ``generations.jsonl`` record of a completion."""
    return {
        schema.G_TIMESTAMP: f.time,
        schema.G_STEP: f.step,
        schema.G_QUESTION_ID: f.question_id,
        schema.G_QUESTION: f.question,
        schema.G_GROUND_TRUTH: f.ground_truth,
        schema.G_OUTPUT: f.model_output,
        schema.G_REASONING: f.reasoning,
        schema.G_ANSWER: f.answer,
        schema.G_TOTAL_REWARD: f.total_reward,
        schema.G_REWARDS: f.rewards,
        schema.G_SPLIT: f.split,
        schema.G_GROUP_ID: f.group_id,
        schema.G_RANK: rank,
        schema.G_EXTRA: f.extra or {},
    }


def csv_payload(
    rows: list[GenFields], header: list[str] | None, names: list[str], in_extra: list[str]
) -> tuple[bytes, Callable[[int], int]]:
    """CSV rows (after ``header`` when given) in the seed's schema: one column per reward in
    ``names``, the rewards in ``in_extra`` inside the extra cell. Returns the bytes and a function
    that says how many whole rows the first ``n`` of those bytes hold (for a write cut short)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header is not None:
        w.writerow(header)
    ends: list[int] = []  # where each row ends in the text, to count a cut batch's whole rows
    for f in rows:
        rewards, extra = f.rewards, f.extra
        if in_extra and any(n in rewards for n in in_extra):
            extra = {
                **(extra or {}),
                **{
                    schema.CSV_EXTRA_REWARD_PREFIX + n: rewards[n] for n in in_extra if n in rewards
                },
            }
        w.writerow(
            (
                _num_cell(f.time),
                "" if f.step is None else str(f.step),
                _text(f.question_id),
                _text(f.question),
                _text(f.ground_truth),
                _text(f.model_output),
                _text(f.reasoning),
                _text(f.answer),
                _num_cell(f.total_reward),
                *(_num_cell(rewards.get(n)) for n in names),
                _text(f.split),
                _text(f.group_id),
                encode_json(extra) if extra else "",
            )
        )
        ends.append(buf.tell())
    data = buf.getvalue()
    errors = "strict"
    try:
        payload = data.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8: keep them visible, escaped
        errors = "backslashreplace"
        payload = data.encode("utf-8", errors)

    def whole_rows(written: int) -> int:
        size, start, whole = 0, 0, 0
        for end in ends:
            size += len(data[start:end].encode("utf-8", errors))
            start = end
            if size > written:
                break
            whole += 1
        return whole

    return payload, whole_rows


class GenerationEncoder:
    """Turns a queued completion into the fields written (one per logger, on the writer thread).

    It derives what the caller did not pass — ``<reasoning>``/``<answer>`` tags, the question id,
    the total reward — and adds each reward name it meets to ``reward_names`` (the logger's own
    list, which run.json publishes).
    """

    def __init__(
        self, tags: tuple[str, str], reward_names: list[str], reward_name_set: set[str]
    ) -> None:
        self._reasoning_tag, self._answer_tag = (TagExtractor(t) for t in tags)
        self._qid_cache: dict[tuple[Any, Any], str] = {}
        self.reward_names = reward_names
        self._reward_name_set = reward_name_set

    def jsonl_line(self, rec: GenRecord, rank: int) -> str:
        return encode_json(generation_dict(self.fields(rec), rank)) + "\n"

    def fields(self, rec: GenRecord) -> GenFields:
        # The writer's hot loop (one call per completion): str.find instead of regexes, a cached
        # question id per prompt (a GRPO group repeats it), a C-level sum in the common case.
        ts, step, question, output, rewards, truth, qid, split, group_id, extra = rec
        # passed explicitly (None included: "there is none") wins over deriving
        if extra:
            reasoning = extra.pop(schema.G_REASONING, _UNSET)
            answer = extra.pop(schema.G_ANSWER, _UNSET)
            total = extra.pop(schema.G_TOTAL_REWARD, _UNSET)
            if not _only_str_keys_deep(extra):
                extra = sanitize(extra)
        else:
            reasoning = answer = total = _UNSET
        if rewards and not _only_str_keys(rewards):
            rewards = _str_keyed(rewards)
        text = _text(output)
        if reasoning is _UNSET:
            reasoning = self._reasoning_tag(text)
        if answer is _UNSET:
            answer = self._answer_tag(text)
        if total is _UNSET:
            total = None
            if rewards:
                try:
                    total = sum(rewards.values())
                    if total != total:  # NaN somewhere: skip NaNs as TRL's nansum does
                        total = nan_sum(rewards.values())
                except TypeError:  # None values
                    total = nan_sum(rewards.values())
        if qid is None:
            key = (question, truth)
            cacheable = True
            try:
                qid = self._qid_cache.get(key)
            except TypeError:  # an unhashable (chat) question
                cacheable = False
            if qid is None:
                qid = question_id_for(_text(question), None if truth is None else _text(truth))
                if cacheable:
                    if len(self._qid_cache) > 4096:
                        self._qid_cache.clear()
                    self._qid_cache[key] = qid
        if not self._reward_name_set.issuperset(rewards):
            for name in rewards:
                if name not in self._reward_name_set:
                    self._reward_name_set.add(name)
                    self.reward_names.append(name)
        return GenFields(
            ts,
            step,
            qid,
            question,
            truth,
            output,
            reasoning,
            answer,
            total,
            rewards,
            split,
            group_id,
            extra,
        )
