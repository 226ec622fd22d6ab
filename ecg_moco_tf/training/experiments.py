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
from ..evaluation import bootstrap_auc_difference, delong_test, evaluate, youden_threshold
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


def check_encoder(name, encoder, arg="encoder"):
    """Only ``proposed`` starts from a pretrained encoder: it needs one, and a baseline given
    one is refused (its results would carry a wrong name). ``ValueError`` saying so; ``arg``
    is the caller's name for the encoder."""
    if name == "proposed" and not encoder:
        raise ValueError(f"the proposed experiment needs {arg}=<pretrained encoder.keras>")
    if name != "proposed" and encoder:
        raise ValueError(f"experiment {name} starts from random weights; it takes no {arg}= "
                         f"(given: {encoder}). Fine-tuning a pretrained encoder is the "
                         "proposed experiment")


def load_encoder(path):
    """The pretrained encoder at ``path`` (.keras), refused with a ``ValueError`` naming what
    it is when it is a MoCo model or a fine-tuned classifier instead."""
    model = load_model(path)
    if not single_input_graph(model) or len(model.outputs) != 1:
        raise ValueError(f"encoder={path} is a {type(model).__name__} model, not an encoder: "
                         "give the encoder.keras that `ecg-moco pretrain` wrote beside it "
                         "(or a shipped name: ptbxl-pool)")
    if model.outputs[0].shape[-1] == 1 or "head_logit" in [lay.name for lay in model.layers]:
        raise ValueError(f"encoder={path} is a fine-tuned classifier (one probability per "
                         "ECG), not an encoder: give the encoder.keras of `ecg-moco pretrain` "
                         "(or ptbxl-pool); to score ECGs with this classifier, use "
                         "`ecg-moco predict`")
    return model


def run_experiment(df, name, out_dir, finetune_cfg=FinetuneConfig(), encoder_path=None,
                   encoder_kwargs=None, task_name="positive", strategy=None):
    """Fine-tune and test one experiment; returns (test predictions, sweep table, valid
    predictions).

    ``encoder_path`` (the pretrained encoder): required by ``proposed``, refused by the
    baselines (see :func:`check_encoder`). Writes ``test_predictions.csv`` and
    ``valid_predictions.csv`` (probability column ``p_<task_name>``) and ``provenance.json``
    (with the decision threshold chosen on the validation predictions). ``strategy``: see
    :func:`~ecg_moco_tf.training.finetune.finetune`.
    """
    check_encoder(name, encoder_path, "encoder_path")
    view = experiment_view(df, name, require=("train", "valid", "test"))
    encoder = load_encoder(encoder_path) if encoder_path else None   # None: random init
    res = finetune(view["train"], view["valid"], encoder, finetune_cfg,
                   out_dir=os.path.join(out_dir, name), encoder_kwargs=encoder_kwargs,
                   strategy=strategy)
    pred = predict(res.model, view["test"], options=finetune_cfg.read_options)
    valid = res.valid_predictions                    # predicted once, in finetune()
    save_predictions(pred, os.path.join(out_dir, name, "test_predictions.csv"), task_name)
    save_predictions(valid, os.path.join(out_dir, name, "valid_predictions.csv"), task_name)
    write_provenance(os.path.join(out_dir, name), name, task_name,
                     encoder_path if name == "proposed" else None,
                     threshold=decision_threshold(valid))
    return pred, res.sweep, valid


def split_names(pred, default="valid2"):
    """The splits a prediction table covers, e.g. "valid1+valid2" (``default`` without a
    split column)."""
    return "+".join(sorted(pred["split"].dropna().unique())) if "split" in pred else default


def decision_threshold(valid_pred):
    """The classifier's decision threshold: Youden's on its validation predictions (None when
    they hold one class only), with where it was chosen."""
    y = valid_pred["label"].astype(int)
    if y.nunique() < 2:
        return None
    return {"value": youden_threshold(y, valid_pred["probability"]), "rule": "youden",
            "chosen_on": split_names(valid_pred), "n_ecgs": int(len(y))}


#: fewer ECGs of a class than this in valid2 or test: a warning (wide CIs, unstable thresholds)
FEW_OF_A_CLASS = 10


def check_class_counts(df, name):
    """Before any training: an error (``ValueError``) when the experiment's validation or test
    split has fewer than 2 ECGs of a class (no AUC, no threshold), and the warnings (returned,
    printed) when it has fewer than :data:`FEW_OF_A_CLASS`."""
    labelled = df["label"].dropna().astype(int)
    if labelled.nunique() < 2:
        raise ValueError(f"the manifest's {len(labelled)} labelled ECGs all have label "
                         f"{labelled.iloc[0] if len(labelled) else 'none'}: a classifier "
                         "needs both classes; check which column became the label (ecg-moco "
                         "manifest --label_column) and its values")
    view = experiment_view(df, name, require=("train", "valid", "test"))
    warnings = []
    for key, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        y = view[key]["label"].astype(int)
        n = {c: int((y == c).sum()) for c in (0, 1)}
        where = f"{name}: the {split} split ({'/'.join(_where(name, key))}) has " \
                f"{n[1]} positive and {n[0]} negative ECGs"
        if min(n.values()) < 2:
            raise ValueError(f"{where}; at least 2 of each class are needed (an AUC and a "
                             "threshold need both): assign larger splits (ecg-moco split "
                             "--valid2/--test) or add labelled ECGs")
        if key != "train" and min(n.values()) < FEW_OF_A_CLASS:
            warnings.append(f"{where} (fewer than {FEW_OF_A_CLASS} of a class: its AUC CI and "
                            "thresholds are very uncertain)")
    for w in warnings:
        print(f"warning: {w}")
    return warnings


def _where(name, key):
    full = name == "baseline_full_labels"
    return {"train": ("train1", "train2") if full else ("train2",),
            "valid": ("valid1", "valid2") if full else ("valid2",), "test": ("test",)}[key]


def save_predictions(pred, path, task_name="positive"):
    """Write ``predict``'s table with the probability column named ``p_<task_name>``."""
    pred.rename(columns={"probability": prob_column(task_name)}).to_csv(path, index=False)


def summarize(predictions, n_boot=2000, seed=0, sensitivity=0.9, valid_predictions=None,
              population_prevalence=None):
    """Metrics per experiment and DeLong tests of proposed vs the baselines.
    ``valid_predictions`` ({name: valid2 predictions}): each model's operating
    points are chosen there and applied to its test predictions."""
    valid_predictions = valid_predictions or {}

    def valid(name):
        v = valid_predictions.get(name)
        return None if v is None else (v["label"].astype(int), v["probability"])

    summary = {name: evaluate(p["label"].astype(int), p["probability"], p["patient_id"],
                              sensitivity=sensitivity, n_boot=n_boot, seed=seed,
                              valid=valid(name), population_prevalence=population_prevalence,
                              valid_name=split_names(valid_predictions.get(name, p)))
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
                **delong_test(ref["label"].astype(int), ref["probability"], p["probability"],
                              groups=ref["patient_id"]),
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
                     task_name="positive", strategy=None, allow_unknown_encoder=False,
                     resume=True):
    """Test AUC vs share of train2 labels, pretrained vs from scratch, over seeds.

    valid2 and test stay whole. Every fraction x seed subset is drawn before any training: one
    with fewer than 2 positive or 2 negative patients is a ValueError (see
    :func:`subsample_patients`). An encoder whose epoch was chosen with downstream labels is
    refused, and one without provenance unless ``allow_unknown_encoder``
    (:func:`~ecg_moco_tf.provenance.check_label_efficiency_encoder`). Writes
    ``label_efficiency.csv``, ``label_efficiency_predictions.csv``,
    ``label_efficiency_summary.csv`` and ``label_efficiency.png``, and each run's test
    predictions in ``runs/`` as it finishes (:func:`_finished_runs`: an interrupted study
    picks them up unless ``resume`` is False); returns (table, test predictions of every run).
    """
    from sklearn.metrics import roc_auc_score

    from ..evaluation.plots import plot_label_efficiency
    from ..provenance import check_label_efficiency_encoder

    view = experiment_view(df, "proposed")
    subsets = label_subsets(df, fractions, seeds)          # all of them, before any training
    check_label_efficiency_encoder(encoder_path, allow_unknown_encoder)
    done_dir = _finished_runs(out_dir, finetune_cfg, encoder_kwargs, encoder_path, view, resume)
    rows, preds = [], []
    for frac in fractions:
        for seed in seeds:
            train = subsets[(frac, seed)]
            for init in ("pretrained", "scratch"):
                what = (f"label efficiency: {frac:.0%} of labels ({len(train)} ECGs), seed "
                        f"{seed}, {init}")
                path = os.path.join(done_dir, f"fraction{frac:g}_seed{seed}_{init}.csv")
                if os.path.exists(path):               # finished by an interrupted run
                    stage(f"{what}: reused ({path})")
                    pred = pd.read_csv(path, dtype={"patient_id": str})
                else:
                    stage(what)
                    enc = load_encoder(encoder_path) if init == "pretrained" else None
                    cfg = replace(finetune_cfg, seed=seed)
                    res = finetune(train, view["valid"], enc, cfg,
                                   encoder_kwargs=encoder_kwargs, strategy=strategy)
                    pred = predict(res.model, view["test"], options=cfg.read_options)
                    pred.to_csv(path, index=False)
                rows.append({"fraction": frac, "seed": seed, "init": init,
                             "n_train_ecgs": len(train),
                             "n_train_positive": int(train["label"].sum()),
                             "auc": roc_auc_score(pred["label"].astype(int),
                                                  pred["probability"])})
                preds.append(pred.assign(fraction=frac, seed=seed, init=init))
    table = pd.DataFrame(rows)
    os.makedirs(out_dir, exist_ok=True)
    table.to_csv(os.path.join(out_dir, "label_efficiency.csv"), index=False)
    preds = pd.concat(preds, ignore_index=True)
    preds.to_csv(os.path.join(out_dir, "label_efficiency_predictions.csv"), index=False)
    label_efficiency_summary(table, preds).round(6).to_csv(
        os.path.join(out_dir, "label_efficiency_summary.csv"), index=False)
    plot_label_efficiency(table, os.path.join(out_dir, "label_efficiency.png"), task_name)
    return table, preds


def _finished_runs(out_dir, finetune_cfg, encoder_kwargs, encoder_path, view, resume=True):
    """``<out_dir>/runs``, where each label-efficiency run leaves its test predictions as it
    finishes (an interrupted study resumes from them); emptied when they came from other
    settings (fine-tuning, encoder file, valid2/test records) or ``resume`` is False."""
    import shutil

    from ..provenance import file_sha256

    settings = json.dumps({
        "finetune": asdict(finetune_cfg), "encoder_kwargs": encoder_kwargs,
        "encoder_sha256": file_sha256(encoder_path),
        "valid": sorted(view["valid"]["record"].astype(str)),
        "test": sorted(view["test"]["record"].astype(str))}, sort_keys=True, default=str)
    where = os.path.join(out_dir, "runs")
    stamp = os.path.join(where, "settings.json")
    if os.path.exists(stamp) and (not resume or open(stamp).read() != settings):
        if resume:
            print(f"label efficiency: the finished runs in {where} had other settings; "
                  "running them again")
        shutil.rmtree(where)
    os.makedirs(where, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(settings)
    return where


def seeds_and_patients_ci(preds, n_boot=1000, seed=0, alpha=0.05):
    """95 % CI of the mean (over seeds) pretrained - scratch test AUC that covers both the
    fine-tuning seeds (with their label subsets) and the test patients. Two variances add:
    the seeds' (s^2 / k of the k seed-paired differences on the whole test split) and the test
    patients' (variance of the seed-mean difference over a patient bootstrap of the test
    split, every drawn patient scoring both arms of every seed); the half-width is the t
    quantile (k - 1 degrees of freedom) times the root of their sum, so it is never narrower
    than the seeds-only t interval. ``preds``: one fraction's test predictions with columns
    seed, init, record, patient_id, label, probability. Returns (low, high)."""
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    from ..evaluation.metrics import _patient_resamples

    seeds = sorted(set(preds.loc[preds["init"] == "pretrained", "seed"]) &
                   set(preds.loc[preds["init"] == "scratch", "seed"]))
    if len(seeds) < 2:
        return float("nan"), float("nan")
    ref = preds[(preds["init"] == "pretrained") & (preds["seed"] == seeds[0])]
    order = ref["record"].to_numpy()
    score = {(s, i): g.set_index("record").loc[order, "probability"].to_numpy()
             for (s, i), g in preds.groupby(["seed", "init"])}
    y = ref["label"].astype(int).to_numpy()
    groups = ref["patient_id"].astype(str).to_numpy()

    def mean_difference(idx):
        return [roc_auc_score(y[idx], score[(s, "pretrained")][idx]) -
                roc_auc_score(y[idx], score[(s, "scratch")][idx]) for s in seeds]

    d = np.array(mean_difference(np.arange(len(y))))
    boot = [np.mean(mean_difference(idx)) for idx in _patient_resamples(y, groups, n_boot, seed)]
    k = len(seeds)
    half = stats.t.ppf(1 - alpha / 2, k - 1) * np.sqrt(d.var(ddof=1) / k + np.var(boot, ddof=1))
    return float(d.mean() - half), float(d.mean() + half)


def label_efficiency_summary(table, preds=None, n_boot=1000):
    """Per fraction: mean test AUC of each arm over the seeds where both ran and the mean
    pretrained - scratch difference with its seed-paired 95 % CI (t distribution, each seed's
    subset shared by both arms; NaN with fewer than 2 seeds), which covers fine-tuning seeds
    and label subsets for a fixed test split; with ``preds`` (the test predictions of every
    run) also ``ci_low_sp`` / ``ci_high_sp``, which also covers the test patients
    (:func:`seeds_and_patients_ci`), the interval to quote."""
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
        if preds is not None:
            rows[-1]["ci_low_sp"], rows[-1]["ci_high_sp"] = seeds_and_patients_ci(
                preds[preds["fraction"] == frac], n_boot=n_boot)
    return pd.DataFrame(rows)


def label_efficiency_markdown(summary):
    """The summary as a Markdown table (docs/results.md)."""
    sp = "ci_low_sp" in summary
    lines = ["| share of train2 labels (ECGs) | seeds | pretrained | scratch | "
             "pretrained - scratch [95 % t CI over seeds, paired] |"
             + (" [95 % CI over seeds and test patients] |" if sp else ""),
             "|---|---|---|---|---|" + ("---|" if sp else "")]

    def ci(lo, hi):
        return "" if np.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"

    for r in summary.itertuples():
        ecgs = (f"{r.train_ecgs_min}" if r.train_ecgs_min == r.train_ecgs_max
                else f"{r.train_ecgs_min}-{r.train_ecgs_max}")
        lines.append(f"| {r.fraction:.0%} ({ecgs}) | {r.seeds} | {r.pretrained_auc:.3f} | "
                     f"{r.scratch_auc:.3f} | {r.difference:+.3f} {ci(r.ci_low, r.ci_high)} |"
                     + (f" {ci(r.ci_low_sp, r.ci_high_sp)} |" if sp else ""))
    if (summary["seeds"] < 3).any():
        lines += ["", "With fewer than 3 seeds the t interval is very wide (t = 12.7 for 2); "
                  "use 5 or more seeds (`--le_seeds`)."]
    return "\n".join(lines)


#: where each choice of a reproduction is made (results.json ``chosen_on``)
CHOSEN_ON = {"learning_rate_and_epoch": "validation loss (the experiment's validation splits)",
             "operating_point_thresholds": "each model's validation splits (summary: "
             "chosen_on)", "pretraining_epoch": "see settings: "
             "pretrain select (last: no labels; monitor: train2/valid2 labels)"}


def save_results(out_dir, summary, tests, sweeps, settings, label_efficiency=None, extra=None):
    """Write results.json (every number the report shows; ``label_efficiency``: the table of
    :func:`label_efficiency_summary`; ``extra``: more top-level keys)."""
    from ..provenance import run_info

    out = {"run": run_info(), "summary": summary, "delong": tests, "chosen_on": CHOSEN_ON,
           "sweeps": {k: v.to_dict(orient="records") for k, v in sweeps.items()},
           "settings": settings}
    if label_efficiency is not None:
        out["label_efficiency"] = label_efficiency.to_dict(orient="records")
    out.update(extra or {})
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    return out


def experiments_settings(finetune_cfg, pretrain_cfg=None):
    return {"finetune": asdict(finetune_cfg),
            "pretrain": asdict(pretrain_cfg) if pretrain_cfg is not None else None,
            "experiments": list(EXPERIMENTS)}
