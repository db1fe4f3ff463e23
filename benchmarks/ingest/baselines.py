"""Same-work baselines for the ingest benchmark: logscan's per-step ``gen_*`` metrics of a
logscan run's generations file (train split), written as a user would write them without logscan
— once as one lazy Polars query, once with pandas. Stand-alone on purpose: nothing is imported
from ``analyzer`` or ``trainer_hooks`` (except by ``polars_metrics(tuned=True)``, the fastest
version, which borrows logscan's word-count kernel); tests/test_bench_baselines.py checks all three
give logscan's numbers.

Input: ``generations.jsonl`` or ``generations.csv`` as trainer_hooks writes them (JSONL: a
``rewards`` object per line; CSV: one ``<name>_reward`` column per reward function; both with
``split`` and ``group_id``; non-finite values as the strings ``"NaN"``/``"Infinity"``).
Output: one row per train-split step, a ``step`` column then ``columns(reward_names)``.

The definitions (docs/metrics.md), per step of the train split (a missing split counts as train):

- reward statistics over the finite total rewards (sample std; linear-interpolated quantiles);
  ``gen_reward_nonfinite`` the share of completions whose total reward is NaN or ±inf; the same
  statistics for each reward function;
- lengths of ``model_output`` in characters and in whitespace-separated words (``\\S+``);
- accuracy: exact match of ``model_answer`` and ``ground_truth_answer`` after normalising (strip,
  lower-case, drop trailing full stops); numbers (a leading ``$`` and thousands separators removed)
  compare as numbers with relative tolerance 1e-9; no ground truth → not counted; no answer → wrong;
- format_ok: ``<reasoning>…</reasoning>`` then ``<answer>…</answer>``; null for every step when no
  completion of the file contains either opening tag;
- Pearson correlation of the finite total reward with the length in characters (null when
  undefined);
- zero-spread groups: per step, the GRPO groups (``group_id``, else ``question_id``) of ≥ 2
  completions whose total rewards are all finite and equal, and among all such groups the shares
  that are zero-spread and all correct / all wrong (by accuracy when every member has a ground
  truth, else by the reward being the split's highest / lowest finite reward of the whole file);
- repeated 4-gram rate ``1 - unique / all`` word 4-grams per completion (null below 4 words),
  averaged over the first 64 completions of each step in file order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

NGRAM_N = 4
NGRAM_SAMPLE = 64  # completions per step for the repeated-n-gram rate (the first, in file order)
FORMAT_RE = r"(?s)<reasoning>.*?</reasoning>.*?<answer>.*?</answer>"
OPEN_TAGS = ("<reasoning>", "<answer>")
NUMBER_RE = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"  # a whole-string number
THOUSANDS_RE = r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?"  # "1,000", "12,345.5"
STATS = ("mean", "std", "min", "max")


def columns(reward_names: list[str]) -> list[str]:
    """The metric columns both baselines return (after ``step``), in order."""
    per_reward = [f"gen_reward/{n}_{s}" for n in reward_names for s in (*STATS, "p50")]
    return [
        "gen_count",
        *(f"gen_reward_{s}" for s in (*STATS, "p10", "p50", "p90", "nonfinite")),
        *per_reward,
        "gen_length_chars_mean",
        "gen_length_tokens_mean",
        "gen_accuracy",
        "gen_answer_coverage",
        "gen_format_ok",
        "gen_reward_length_corr",
        "gen_frac_zero_spread_groups",
        "gen_frac_zero_spread_all_correct",
        "gen_frac_zero_spread_all_wrong",
        "gen_repeated_ngram_rate",
    ]


def jsonl_reward_names(path: Path) -> list[str]:
    """The reward functions' names: the keys of the first line's ``rewards`` object."""
    with path.open(encoding="utf-8") as fh:
        return list(json.loads(fh.readline())["rewards"])


def csv_reward_names(header: list[str]) -> list[str]:
    return [c.removesuffix("_reward") for c in header if c.endswith("_reward") and c != "total_reward"]


# --- Polars -------------------------------------------------------------------------------------
def _pl_number(e: pl.Expr) -> pl.Expr:
    """Text → Float64; ``"NaN"``/``"Infinity"`` become NaN/inf, anything else unparsable null."""
    return e.str.strip_chars().cast(pl.Float64, strict=False)


def _pl_normalise(e: pl.Expr) -> pl.Expr:
    return e.str.strip_chars().str.to_lowercase().str.strip_chars_end(".").str.strip_chars()


def _pl_as_number(normalised: pl.Expr) -> pl.Expr:
    s = normalised.str.strip_chars_start("$").str.strip_chars()
    s = pl.when(s.str.contains(f"^{THOUSANDS_RE}$")).then(s.str.replace_all(",", "", literal=True)).otherwise(s)
    return pl.when(s.str.contains(f"^{NUMBER_RE}$")).then(s.cast(pl.Float64, strict=False))


def polars_metrics(path: Path, *, tuned: bool = False) -> pl.DataFrame:
    """logscan's train-split ``gen_*`` columns of one generations file, as one lazy Polars query.

    ``tuned=True`` is the fastest single-query version written for the benchmark — not what a user
    writes: word counts by logscan's numpy kernel (``analyzer.metrics.
    whitespace_token_counts``; a regex match per word costs ~0.8 s on a million completions),
    finite-only values as columns (aggregated without a per-group filter), and "does the run use
    the tags" as a per-step aggregate instead of a whole-column window (which makes Polars hold
    every completion's text). No validation, resume handling or canonical frame, as above.
    """
    if path.suffix == ".jsonl":
        names = jsonl_reward_names(path)
        # Every number read as text: the "NaN" strings among numbers would fail schema inference.
        schema = {
            "global_step": pl.Int64(), "split": pl.String(), "question_id": pl.String(), "group_id": pl.String(),
            "ground_truth_answer": pl.String(), "model_output": pl.String(), "model_answer": pl.String(),
            "total_reward": pl.String(), "rewards": pl.Struct({n: pl.String() for n in names}),
        }  # fmt: skip
        lf = pl.scan_ndjson(path, schema=schema)
        step = pl.col("global_step")
        reward_text = {n: pl.col("rewards").struct.field(n) for n in names}
    else:
        lf = pl.scan_csv(path, infer_schema=False)  # all text, cast below
        names = csv_reward_names(lf.collect_schema().names())
        step = pl.col("global_step").str.strip_chars().cast(pl.Int64, strict=False)
        reward_text = {n: pl.col(f"{n}_reward") for n in names}

    output = pl.col("model_output")
    tagged = output.str.contains(OPEN_TAGS[0], literal=True) | output.str.contains(OPEN_TAGS[1], literal=True)
    r = pl.col("reward")
    finite_r = pl.when(r.is_finite()).then(r)
    a, t, an, tn = pl.col("a"), pl.col("t"), pl.col("an"), pl.col("tn")

    rows = (
        lf.select(
            step.alias("step"),
            pl.col("split").fill_null("train"),
            _pl_number(pl.col("total_reward")).alias("reward"),
            *[_pl_number(e).alias(f"reward/{n}") for n, e in reward_text.items()],
            output,
            output.str.len_chars().alias("len_chars"),
            _word_counts(output, tuned).alias("len_tokens"),
            # null for the whole run when no completion (of any split) uses the tags
            (
                output.str.contains(FORMAT_RE).cast(pl.Float64)
                if tuned  # decided after the query, from the per-step "tagged" aggregate
                else pl.when(tagged.any()).then(output.str.contains(FORMAT_RE).cast(pl.Float64))
            ).alias("format_ok"),
            tagged.alias("tagged"),
            pl.coalesce("group_id", "question_id").alias("group"),
            _pl_normalise(pl.col("model_answer")).alias("a"),
            (pl.col("model_answer").str.strip_chars().fill_null("") != "").alias("has_answer"),
            _pl_normalise(pl.col("ground_truth_answer")).alias("t"),
        )
        .filter(pl.col("step").is_not_null() & (pl.col("split") == "train"))
        .with_columns(_pl_as_number(a).alias("an"), _pl_as_number(t).alias("tn"))
        .with_columns(
            pl.when(t.is_null() | (t == ""))
            .then(None)
            .when(a.is_null())
            .then(0.0)
            .otherwise(  # numbers when both sides are, else text
                pl.coalesce((an - tn).abs() <= pl.max_horizontal(1.0, tn.abs()) * 1e-9, a == t).cast(pl.Float64)
            )
            .alias("correct")
        )
    )

    if tuned:
        rows = rows.with_columns(
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(f"finite:{c}")
            for c in ("reward", *(f"reward/{n}" for n in names))
        )

    def finite_stats(v: pl.Expr, base: str, quantiles: tuple[float, ...]) -> list[pl.Expr]:
        fv = pl.col(f"finite:{v.meta.output_name()}") if tuned else v.filter(v.is_finite())
        return [
            fv.mean().alias(f"{base}_mean"),
            fv.std().alias(f"{base}_std"),
            fv.min().alias(f"{base}_min"),
            fv.max().alias(f"{base}_max"),
            *[fv.quantile(q, interpolation="linear").alias(f"{base}_p{round(q * 100)}") for q in quantiles],
        ]

    per_step = rows.group_by("step").agg(
        pl.len().cast(pl.Int64).alias("gen_count"),
        *finite_stats(r, "gen_reward", (0.1, 0.5, 0.9)),
        (r.is_not_null() & ~r.is_finite()).mean().alias("gen_reward_nonfinite"),
        *[s for n in names for s in finite_stats(pl.col(f"reward/{n}"), f"gen_reward/{n}", (0.5,))],
        pl.col("len_chars").mean().alias("gen_length_chars_mean"),
        pl.col("len_tokens").mean().alias("gen_length_tokens_mean"),
        pl.col("correct").mean().alias("gen_accuracy"),
        # the accuracy's coverage: of the completions with a ground truth, the share with an answer
        pl.col("has_answer").filter(pl.col("correct").is_not_null()).cast(pl.Float64).mean().alias("gen_answer_coverage"),
        pl.col("format_ok").mean().alias("gen_format_ok"),
        pl.corr(finite_r, pl.col("len_chars").cast(pl.Float64)).fill_nan(None).alias("gen_reward_length_corr"),
        pl.col("tagged").any().alias("tagged"),
    )

    n, acc = pl.col("n"), pl.col("n_acc")
    split_max, split_min = pl.col("split_max"), pl.col("split_min")
    varies = split_max > split_min
    zero_spread = (
        rows.filter(pl.col("group").is_not_null())
        .with_columns(finite_r.max().alias("split_max"), finite_r.min().alias("split_min"))
        .group_by("step", "group")
        .agg(
            pl.len().alias("n"),
            finite_r.min().alias("rmin"),
            finite_r.max().alias("rmax"),
            r.is_finite().sum().alias("n_finite"),
            pl.col("correct").min().alias("amin"),
            pl.col("correct").max().alias("amax"),
            pl.col("correct").is_not_null().sum().alias("n_acc"),
            split_max.first(),
            split_min.first(),
        )
        .filter(n >= 2)
        .with_columns(zero=(pl.col("n_finite") == n) & (pl.col("rmin") == pl.col("rmax")))
        .group_by("step")
        .agg(
            pl.col("zero").cast(pl.Float64).mean().alias("gen_frac_zero_spread_groups"),
            (pl.col("zero") & pl.when(acc == n).then(pl.col("amin") == 1.0).otherwise((pl.col("rmax") >= split_max) & varies))
            .cast(pl.Float64).mean().alias("gen_frac_zero_spread_all_correct"),
            (pl.col("zero") & pl.when(acc == n).then(pl.col("amax") == 0.0).otherwise((pl.col("rmin") <= split_min) & varies))
            .cast(pl.Float64).mean().alias("gen_frac_zero_spread_all_wrong"),
        )
    )  # fmt: skip

    grams = output.str.extract_all(r"\S+").list.eval(
        pl.concat_str([pl.element().shift(-k) for k in range(NGRAM_N)], separator=" ")
    ).list.drop_nulls()  # the word 4-grams of each completion
    ngram = (
        rows.filter(pl.int_range(pl.len()).over("step") < NGRAM_SAMPLE)  # first 64 of each step
        .group_by("step")
        .agg(
            pl.when(grams.list.len() > 0)
            .then(1.0 - grams.list.n_unique() / grams.list.len())
            .mean()
            .alias("gen_repeated_ngram_rate")
        )
    )
    out = (
        per_step.join(zero_spread, on="step", how="left")
        .join(ngram, on="step", how="left")
        .select("step", *columns(names), "tagged")
        .sort("step")
        .collect()
    )
    if tuned and not out["tagged"].any():  # the run never uses the tags: no format to comply with
        out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias("gen_format_ok"))
    return out.drop("tagged")


def _word_counts(output: pl.Expr, tuned: bool) -> pl.Expr:
    if not tuned:
        return output.str.count_matches(r"\S+")
    # the tuned version borrows logscan's kernel
    from analyzer.metrics import whitespace_token_counts

    return output.map_batches(whitespace_token_counts, return_dtype=pl.UInt32, is_elementwise=True)


# --- pandas -------------------------------------------------------------------------------------
def _pd_normalise(s: pd.Series) -> pd.Series:
    return s.astype("string").str.strip().str.lower().str.rstrip(".").str.strip()


def _pd_as_number(normalised: pd.Series) -> pd.Series:
    s = normalised.str.lstrip("$").str.strip()
    s = s.where(~s.str.fullmatch(THOUSANDS_RE).fillna(False), s.str.replace(",", "", regex=False))
    return pd.to_numeric(s.where(s.str.fullmatch(NUMBER_RE).fillna(False)), errors="coerce").astype(float)


def _ngram_rate(text: str) -> float:
    words = text.split()
    grams = list(zip(*(words[k:] for k in range(NGRAM_N)), strict=False))
    return 1.0 - len(set(grams)) / len(grams) if grams else math.nan


def pandas_metrics(path: Path) -> pd.DataFrame:
    """The same metrics as ``polars_metrics``, as a pandas user would write them."""
    if path.suffix == ".jsonl":
        df = pd.read_json(path, lines=True)
        rewards = pd.DataFrame(df.pop("rewards").tolist(), index=df.index)
    else:
        df = pd.read_csv(path)
        names = csv_reward_names(list(df.columns))
        rewards = df[[f"{n}_reward" for n in names]].set_axis(names, axis=1)
    names = list(rewards.columns)
    rewards = rewards.apply(pd.to_numeric, errors="coerce")  # "NaN"/"Infinity" strings → floats

    output = df["model_output"]
    tagged = (output.str.contains(OPEN_TAGS[0], regex=False) | output.str.contains(OPEN_TAGS[1], regex=False)).any()
    df = df.assign(step=df["global_step"], split=df["split"].fillna("train"))
    keep = df["step"].notna() & (df["split"] == "train")
    df, rewards = df[keep], rewards[keep]

    d = pd.DataFrame({"step": df["step"].astype("int64")})
    d["reward"] = pd.to_numeric(df["total_reward"], errors="coerce").astype(float)
    d["finite_reward"] = d["reward"].where(np.isfinite(d["reward"]))
    for n in names:
        d[f"reward/{n}"] = rewards[n].where(np.isfinite(rewards[n]))  # finite values only
    d["len_chars"] = df["model_output"].str.len()
    d["len_tokens"] = df["model_output"].str.count(r"\S+")
    d["format_ok"] = df["model_output"].str.contains(FORMAT_RE).astype(float) if tagged else math.nan
    d["group"] = df["group_id"].fillna(df["question_id"])

    a, t = _pd_normalise(df["model_answer"]), _pd_normalise(df["ground_truth_answer"])
    an, tn = _pd_as_number(a), _pd_as_number(t)
    numbers_equal = (an - tn).abs() <= np.maximum(1.0, tn.abs()) * 1e-9
    texts_equal = (a == t).fillna(False).to_numpy(bool)
    d["correct"] = np.where(an.notna() & tn.notna(), numbers_equal, texts_equal).astype(float)
    d.loc[a.isna(), "correct"] = 0.0
    d.loc[(t.isna() | (t == "")).fillna(True), "correct"] = math.nan
    has_answer = df["model_answer"].astype("string").str.strip().fillna("") != ""
    d["has_answer"] = has_answer.astype(float).where(d["correct"].notna())

    g = d.groupby("step")
    out = pd.DataFrame({"gen_count": g.size()})
    for base, col, quantiles in [
        ("gen_reward", "finite_reward", (0.1, 0.5, 0.9)),
        *[(f"gen_reward/{n}", f"reward/{n}", (0.5,)) for n in names],
    ]:
        for stat in STATS:
            out[f"{base}_{stat}"] = g[col].agg(stat)
        for q in quantiles:
            out[f"{base}_p{round(q * 100)}"] = g[col].quantile(q)
    # pandas has one NaN for "NaN" and for missing: both count as non-finite here
    out["gen_reward_nonfinite"] = (~np.isfinite(d["reward"])).groupby(d["step"]).mean()
    out["gen_length_chars_mean"] = g["len_chars"].mean()
    out["gen_length_tokens_mean"] = g["len_tokens"].mean()
    out["gen_accuracy"] = g["correct"].mean()
    out["gen_answer_coverage"] = g["has_answer"].mean()
    out["gen_format_ok"] = g["format_ok"].mean()
    out["gen_reward_length_corr"] = g[["finite_reward", "len_chars"]].corr().xs("finite_reward", level=1)["len_chars"]

    grouped = d[d["group"].notna()]
    split_max, split_min = grouped["finite_reward"].max(), grouped["finite_reward"].min()
    groups = grouped.groupby(["step", "group"]).agg(
        n=("reward", "size"),
        rmin=("finite_reward", "min"),
        rmax=("finite_reward", "max"),
        n_finite=("finite_reward", "count"),
        amin=("correct", "min"),
        amax=("correct", "max"),
        n_acc=("correct", "count"),
    )
    groups = groups[groups["n"] >= 2]
    zero = (groups["n_finite"] == groups["n"]) & (groups["rmin"] == groups["rmax"])
    by_accuracy = groups["n_acc"] == groups["n"]
    varies = split_max > split_min
    all_correct = zero & np.where(by_accuracy, groups["amin"] == 1.0, (groups["rmax"] >= split_max) & varies)
    all_wrong = zero & np.where(by_accuracy, groups["amax"] == 0.0, (groups["rmin"] <= split_min) & varies)
    spread = pd.DataFrame({
        "gen_frac_zero_spread_groups": zero, "gen_frac_zero_spread_all_correct": all_correct,
        "gen_frac_zero_spread_all_wrong": all_wrong,
    }).astype(float).groupby(level="step").mean()  # fmt: skip
    out = out.join(spread)

    sample = df["model_output"].groupby(d["step"]).head(NGRAM_SAMPLE)  # first 64 of each step
    out["gen_repeated_ngram_rate"] = sample.map(_ngram_rate, na_action="ignore").groupby(d["step"]).mean()
    return out.reset_index()[["step", *columns(names)]].sort_values("step", ignore_index=True)
