"""The paper's protocol (Table 3) on any manifest, plus label efficiency.

- ``proposed``: MoCo on train1/valid1, then fine-tune on train2/valid2;
- ``baseline_unpretrained``: supervised on train2/valid2 from random weights (never sees a
  pretrained weight);
- ``baseline_full_labels``: supervised on train1+train2 / valid1+valid2 from random weights.

All are tested on ``test``. Results: per-ECG test predictions, each model's metrics with
patient-level bootstrap CIs, and DeLong p-values of proposed vs each baseline.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from ..data.splits import EXPERIMENTS, experiment_view
from ..evaluation import bootstrap_auc_difference, delong_test, evaluate
from ..models import load_model, single_input_graph
from ..provenance import prob_column, write_provenance
from .finetune import FinetuneConfig, finetune, predict


class Stages:
    """Visible stage headers with the time elapsed since the first one."""

    def __init__(self):
        self.t0 = None

    def __call__(self, msg):
        self.t0 = self.t0 or time.time()
        print(f"\n=== [{time.time() - self.t0:7.0f} s] {msg}", flush=True)


stage = Stages()


def check_encoder(name, encoder):
    """Only ``proposed`` starts from a pretrained encoder: it needs one, and a baseline given
    one is refused (its results would carry a wrong name). ``ValueError`` saying so."""
    if name == "proposed" and not encoder:
        raise ValueError("--experiment=proposed needs --encoder=<pretrained encoder.keras>")
    if name != "proposed" and encoder:
        raise ValueError(f"--experiment={name} starts from random weights; it takes no "
                         f"--encoder (given: {encoder}). Fine-tuning a pretrained encoder is "
                         "--experiment=proposed")


def load_encoder(path):
    """The pretrained encoder at ``path`` (.keras), refused with a ``ValueError`` naming what
    it is when it is a MoCo model or a fine-tuned classifier instead."""
    model = load_model(path)
    if not single_input_graph(model) or len(model.outputs) != 1:
        raise ValueError(f"--encoder={path} is a {type(model).__name__} model, not an encoder: "
                         "give the encoder.keras that `ecg-moco pretrain` wrote beside it "
                         "(or a shipped name: ptbxl-pool)")
    if model.outputs[0].shape[-1] == 1 or "head_logit" in [lay.name for lay in model.layers]:
        raise ValueError(f"--encoder={path} is a fine-tuned classifier (one probability per "
                         "ECG), not an encoder: give the encoder.keras of `ecg-moco pretrain` "
                         "(or ptbxl-pool); to score ECGs with this classifier, use "
                         "`ecg-moco predict`")
    return model


def run_experiment(df, name, out_dir, finetune_cfg=FinetuneConfig(), encoder_path=None,
                   encoder_kwargs=None, task_name="positive", strategy=None):
    """Fine-tune and test one experiment; returns (test predictions, sweep table).

    ``encoder_path`` (the pretrained encoder): required by ``proposed``, refused by the
    baselines (see :func:`check_encoder`). Writes ``test_predictions.csv`` (probability column
    ``p_<task_name>``) and ``provenance.json``. ``strategy``: see
    :func:`~ecg_moco_tf.training.finetune.finetune`.
    """
    check_encoder(name, encoder_path)
    view = experiment_view(df, name, require=("train", "valid", "test"))
    encoder = load_encoder(encoder_path) if encoder_path else None   # None: random init
    res = finetune(view["train"], view["valid"], encoder, finetune_cfg,
                   out_dir=os.path.join(out_dir, name), encoder_kwargs=encoder_kwargs,
                   strategy=strategy)
    pred = predict(res.model, view["test"], options=finetune_cfg.read_options)
    save_predictions(pred, os.path.join(out_dir, name, "test_predictions.csv"), task_name)
    write_provenance(os.path.join(out_dir, name), name, task_name,
                     encoder_path if name == "proposed" else None)
    return pred, res.sweep


def save_predictions(pred, path, task_name="positive"):
    """Write ``predict``'s table with the probability column named ``p_<task_name>``."""
    pred.rename(columns={"probability": prob_column(task_name)}).to_csv(path, index=False)


def summarize(predictions, n_boot=2000, seed=0, sensitivity=0.9):
    """Metrics per experiment and DeLong tests of proposed vs the baselines."""
    summary = {name: evaluate(p["label"].astype(int), p["probability"], p["patient_id"],
                              sensitivity=sensitivity, n_boot=n_boot, seed=seed)
               for name, p in predictions.items()}
    tests = {}
    if "proposed" in predictions:
        ref = predictions["proposed"]
        for name, p in predictions.items():
            if name == "proposed":
                continue
            if list(p["record"]) != list(ref["record"]):
                raise ValueError("DeLong needs both models scored on the same test ECGs")
            tests[f"proposed_vs_{name}"] = {
                **delong_test(ref["label"].astype(int), ref["probability"], p["probability"]),
                "paired_bootstrap": bootstrap_auc_difference(
                    ref["label"].astype(int), ref["probability"], p["probability"],
                    ref["patient_id"], n_boot=n_boot, seed=seed)}
    return summary, tests


def subsample_patients(df, fraction, seed, min_per_class=2, name="train2"):
    """Patient-level, label-stratified subsample of a labelled manifest.

    Each class keeps ``max(1, round(fraction * patients of the class))`` whole patients (a
    patient is positive if any of its ECGs is). Fewer than ``min_per_class`` patients of
    either class is a ValueError naming the fraction, the seed and the counts (``name``: what
    the subset is of, for the message).
    """
    plab = df.groupby("patient_id")["label"].max().astype(int)
    if fraction >= 1:
        keep = list(plab.index)
    else:
        rng = np.random.default_rng(seed)
        keep = []
        for _, ids in plab.groupby(plab):
            ids = np.sort(ids.index.to_numpy())
            k = max(1, int(round(fraction * len(ids))))
            keep.extend(rng.choice(ids, k, replace=False))
    pos = int(plab.loc[keep].sum())
    neg = len(keep) - pos
    if min(pos, neg) < min_per_class:
        raise ValueError(f"label fraction {fraction:g} (seed {seed}) leaves {pos} positive and "
                         f"{neg} negative patients in {name}; use a larger fraction (at least "
                         f"{min_per_class} of each class)")
    return df if fraction >= 1 else df[df["patient_id"].isin(keep)]


def label_subsets(df, fractions, seeds):
    """Every label-efficiency subset of train2, {(fraction, seed): manifest}; raises the
    ValueError of :func:`subsample_patients` for the first one with < 2 patients of a class.
    Cheap (no records are read): call it before any training."""
    train = experiment_view(df, "proposed")["train"]
    return {(frac, seed): subsample_patients(train, frac, seed)
            for frac in fractions for seed in seeds}


def label_efficiency(df, encoder_path, out_dir, fractions=(0.01, 0.05, 0.1, 0.28, 0.5, 1.0),
                     seeds=(0, 1, 2), finetune_cfg=FinetuneConfig(), encoder_kwargs=None,
                     task_name="positive", strategy=None):
    """Test AUC vs share of train2 labels, pretrained vs from scratch, over seeds.

    valid2 and test stay whole. Every fraction x seed subset is drawn before any training: one
    with fewer than 2 positive or 2 negative patients is a ValueError (see
    :func:`subsample_patients`). Writes ``label_efficiency.csv`` and ``label_efficiency.png``.
    """
    from ..evaluation.plots import plot_label_efficiency
    from sklearn.metrics import roc_auc_score

    view = experiment_view(df, "proposed")
    subsets = label_subsets(df, fractions, seeds)          # all of them, before any training
    rows = []
    for frac in fractions:
        for seed in seeds:
            train = subsets[(frac, seed)]
            for init in ("pretrained", "scratch"):
                stage(f"label efficiency: {frac:.0%} of labels ({len(train)} ECGs), seed {seed}"
                      f", {init}")
                enc = load_encoder(encoder_path) if init == "pretrained" else None
                cfg = replace(finetune_cfg, seed=seed)
                res = finetune(train, view["valid"], enc, cfg, encoder_kwargs=encoder_kwargs,
                               strategy=strategy)
                pred = predict(res.model, view["test"], options=cfg.read_options)
                rows.append({"fraction": frac, "seed": seed, "init": init,
                             "n_train_ecgs": len(train),
                             "n_train_positive": int(train["label"].sum()),
                             "auc": roc_auc_score(pred["label"].astype(int),
                                                  pred["probability"])})
    table = pd.DataFrame(rows)
    os.makedirs(out_dir, exist_ok=True)
    table.to_csv(os.path.join(out_dir, "label_efficiency.csv"), index=False)
    label_efficiency_summary(table).round(6).to_csv(
        os.path.join(out_dir, "label_efficiency_summary.csv"), index=False)
    plot_label_efficiency(table, os.path.join(out_dir, "label_efficiency.png"), task_name)
    return table


def label_efficiency_summary(table):
    """Per fraction: mean test AUC of each arm over the seeds where both ran and the mean
    pretrained - scratch difference with its seed-paired 95 % CI (t distribution, each seed's
    subset shared by both arms; NaN with fewer than 2 seeds). The CI covers fine-tuning seeds
    and label subsets, for one pretrained encoder and one test split."""
    from scipy import stats

    wide = table.pivot_table(index=["fraction", "seed"], columns="init", values="auc")
    rows = []
    for frac, g in wide.groupby(level="fraction"):
        g = g[["pretrained", "scratch"]].dropna()          # seeds with both arms
        d = g["pretrained"] - g["scratch"]
        k = len(d)
        half = (stats.t.ppf(0.975, k - 1) * d.std(ddof=1) / np.sqrt(k)) if k > 1 else np.nan
        ecgs = table.loc[(table["fraction"] == frac), "n_train_ecgs"]
        rows.append({"fraction": frac, "seeds": k, "train_ecgs_min": int(ecgs.min()),
                     "train_ecgs_max": int(ecgs.max()),
                     "pretrained_auc": g["pretrained"].mean(), "scratch_auc": g["scratch"].mean(),
                     "difference": d.mean(), "ci_low": d.mean() - half,
                     "ci_high": d.mean() + half})
    return pd.DataFrame(rows)


def label_efficiency_markdown(summary):
    """The summary as the README's Markdown table."""
    lines = ["| share of train2 labels (ECGs) | seeds | pretrained | scratch | "
             "pretrained - scratch [95 % t CI over seeds, paired] |", "|---|---|---|---|---|"]
    for r in summary.itertuples():
        ecgs = (f"{r.train_ecgs_min}" if r.train_ecgs_min == r.train_ecgs_max
                else f"{r.train_ecgs_min}-{r.train_ecgs_max}")
        ci = "" if np.isnan(r.ci_low) else f" [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        lines.append(f"| {r.fraction:.0%} ({ecgs}) | {r.seeds} | {r.pretrained_auc:.3f} | "
                     f"{r.scratch_auc:.3f} | {r.difference:+.3f}{ci} |")
    if (summary["seeds"] < 3).any():
        lines += ["", "With fewer than 3 seeds the t interval is very wide (t = 12.7 for 2); "
                  "use 5 or more seeds (`--le_seeds`)."]
    return "\n".join(lines)


def save_results(out_dir, summary, tests, sweeps, settings, label_efficiency=None):
    """Write results.json (every number the report shows; ``label_efficiency``: the table of
    :func:`label_efficiency_summary`)."""
    out = {"summary": summary, "delong": tests,
           "sweeps": {k: v.to_dict(orient="records") for k, v in sweeps.items()},
           "settings": settings}
    if label_efficiency is not None:
        out["label_efficiency"] = label_efficiency.to_dict(orient="records")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    return out


def experiments_settings(finetune_cfg, pretrain_cfg=None):
    return {"finetune": asdict(finetune_cfg),
            "pretrain": asdict(pretrain_cfg) if pretrain_cfg is not None else None,
            "experiments": list(EXPERIMENTS)}
