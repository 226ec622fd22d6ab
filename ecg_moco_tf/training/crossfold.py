"""Cross-fold testing: every fold of the labelled data is the test split once.

For test fold k, the next fold (in sorted order, the last wrapping to the first) is valid2 and
the remaining folds are the training folds. ``proposed`` and ``baseline_unpretrained``
fine-tune on a label-stratified patient subsample of the training folds (``train2_fraction``,
the paper's 28 %), ``baseline_full_labels`` on all of them (the rest of the training folds is
``train1`` in the fold's manifest, so the paper's experiment views apply unchanged). One
encoder, pretrained on ECGs of no downstream patient, serves every fold. Test predictions of
all folds are pooled (one prediction per labelled ECG and model) for Table 2; per-fold AUCs
show how wide a single fold's interval is.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..data.splits import check_patient_disjoint
from .experiments import subsample_patients, summarize

DEFAULT_FOLD_COLUMNS = ("strat_fold", "fold")


def fold_column(df, name=None):
    """The manifest's fold column: ``name``, else strat_fold or fold; ``ValueError`` naming
    the columns when there is none, or when a labelled ECG has no whole-number fold."""
    names = [name] if name else [c for c in DEFAULT_FOLD_COLUMNS if c in df]
    if not names or names[0] not in df:
        raise ValueError(f"cross-fold testing needs a fold column ({name or 'strat_fold or fold'}"
                         f"); the manifest's columns are {[c for c in df.columns if c != 'split']}: add one "
                         "or name it with --fold_column")
    col = names[0]
    lab = df[df["label"].notna()]
    folds = pd.to_numeric(lab[col], errors="coerce")
    bad = lab.loc[folds.isna() | (folds != folds.round()), "record"]
    if len(bad):
        raise ValueError(f"{len(bad)} labelled ECGs have no whole-number {col} (first: "
                         f"{bad.iloc[0]}): give every labelled ECG its fold")
    return col


def fold_plan(df, column, n_folds, test_folds=None):
    """[(test fold, valid2 fold)] for the labelled ECGs' folds; ``ValueError`` when the data
    has another number of folds than ``n_folds`` or ``test_folds`` names an unknown fold."""
    folds = sorted(int(f) for f in pd.to_numeric(df.loc[df["label"].notna(), column]).unique())
    if len(folds) != n_folds:
        raise ValueError(f"--cv_folds={n_folds} but the labelled ECGs' {column} has "
                         f"{len(folds)} folds ({folds}): pass --cv_folds={len(folds)}, or "
                         "name another fold column with --fold_column")
    plan = [(k, folds[(i + 1) % len(folds)]) for i, k in enumerate(folds)]
    if test_folds:
        unknown = sorted(set(test_folds) - set(folds))
        if unknown:
            raise ValueError(f"--cv_test_folds {unknown}: not folds of the data ({folds}); "
                             "choose among them, or leave it empty (every fold)")
        plan = [(k, v) for k, v in plan if k in test_folds]
    return plan


def fold_manifest(df, column, test_fold, valid_fold, train2_fraction, seed):
    """The labelled ECGs with this fold's splits: test, valid2, train2 (a patient subsample
    of the training folds at ``train2_fraction``, stratified by label; 1.0: all of them) and
    train1 (the rest of the training folds, used by full labels only)."""
    lab = df[df["label"].notna()].copy()
    fold = pd.to_numeric(lab[column]).astype(int)
    split = fold.groupby(lab["patient_id"].astype(str)).nunique()
    if (split > 1).any():
        raise ValueError(f"patient {split.index[split > 1][0]} has ECGs in more than one "
                         f"{column} ({int((split > 1).sum())} such patients): folds must keep "
                         "each patient whole (--fold_column)")
    lab["split"] = np.where(fold == test_fold, "test",
                            np.where(fold == valid_fold, "valid2", "train1"))
    train = lab[lab["split"] == "train1"]
    sub = subsample_patients(train, train2_fraction, seed,
                             name=f"the training folds of test fold {test_fold}")
    lab.loc[sub.index, "split"] = "train2"
    check_patient_disjoint(lab)         # a fold column that splits a patient: an error
    lab.attrs = dict(df.attrs)
    return lab


def fold_seed(seed, test_fold):
    """The train2 subsample's seed of one test fold (distinct per fold, fixed by ``seed``)."""
    return int(np.random.SeedSequence([seed, test_fold]).generate_state(1)[0])


def pooled(frames):
    """{name: predictions of every fold, concatenated in fold order}."""
    names = frames[0].keys()
    return {n: pd.concat([f[n] for f in frames], ignore_index=True) for n in names}


def per_fold_table(fold_summaries):
    """One row per fold and model: AUC, its CI and half-width, test ECGs and positives."""
    rows = []
    for k, summary in fold_summaries.items():
        for name, s in summary.items():
            rows.append({"test_fold": k, "model": name, "auc": s["auc"],
                         "ci_low": s["auc_ci_low"], "ci_high": s["auc_ci_high"],
                         "ci_half_width": (s["auc_ci_high"] - s["auc_ci_low"]) / 2,
                         "n_ecgs": s["n_ecgs"], "n_positive": s["n_positive"]})
    return pd.DataFrame(rows)


def _t_ci(x):
    """Mean of ``x`` with its t 95 % CI (NaN bounds with fewer than 2 values)."""
    from scipy import stats

    x = np.asarray(x, float)
    half = (stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1
            else np.nan)
    return x.mean(), x.mean() - half, x.mean() + half


def fold_mean(table):
    """Per model: mean AUC over folds with a t 95 % CI over folds, the mean single-fold CI
    half-width (what one fold can resolve) and, beside proposed, the per-fold paired
    difference proposed - model with its t CI over folds (which, unlike the pooled patient
    bootstrap, also varies the trained models: each fold trains its own)."""
    wide = table.pivot(index="test_fold", columns="model", values="auc")
    rows = []
    for name, g in table.groupby("model", sort=False):
        mean, lo, hi = _t_ci(g["auc"])
        row = {"model": name, "folds": len(g), "mean_auc": mean, "ci_low": lo, "ci_high": hi,
               "mean_single_fold_half_width": g["ci_half_width"].mean()}
        if "proposed" in wide and name != "proposed":
            d = (wide["proposed"] - wide[name]).dropna()
            row["proposed_minus_model"], row["diff_ci_low"], row["diff_ci_high"] = _t_ci(d)
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_label_efficiency(tables, preds):
    """Label efficiency over several test folds: per fraction, seed and arm the AUC of the
    pooled test predictions (train ECGs: mean over folds). ``tables``/``preds``: the
    per-fold outputs of :func:`~ecg_moco_tf.training.experiments.label_efficiency`, with a
    ``test_fold`` column."""
    from sklearn.metrics import roc_auc_score

    table = pd.concat(tables, ignore_index=True)
    rows = []
    for (frac, seed, init), g in preds.groupby(["fraction", "seed", "init"]):
        t = table[(table["fraction"] == frac) & (table["seed"] == seed) & (table["init"] == init)]
        rows.append({"fraction": frac, "seed": seed, "init": init,
                     "n_train_ecgs": int(round(t["n_train_ecgs"].mean())),
                     "n_train_positive": int(round(t["n_train_positive"].mean())),
                     "auc": roc_auc_score(g["label"].astype(int), g["probability"])})
    return pd.DataFrame(rows)


def summarize_folds(frames, valid_frames, folds, n_boot, seed, population_prevalence=None):
    """(pooled summary, pooled tests, per-fold table, fold means): Table 2 over the pooled
    test predictions (patient bootstrap CIs, DeLong clustered by patient) and each fold's own
    AUC and CI. Operating points: each fold's thresholds are chosen on its own valid2 and
    applied to its test fold; the pooled sensitivity, specificity, PPV and NPV count those
    decisions over all folds (pooling the valid2 predictions instead would choose fold k's
    threshold with the labels of the other test folds)."""
    from ..evaluation.metrics import threshold_metrics

    each = {k: summarize(f, n_boot=n_boot, seed=seed, valid_predictions=v,
                         population_prevalence=population_prevalence)[0]
            for k, f, v in zip(folds, frames, valid_frames)}
    summary, tests = summarize(pooled(frames), n_boot=n_boot, seed=seed,
                               population_prevalence=population_prevalence)
    for name, s in summary.items():
        rules = [r for r in s if r == "youden" or r.startswith("at_sensitivity")]
        y = np.concatenate([f[name]["label"].astype(int) for f in frames])
        for rule in rules:
            cuts = [each[k][name][rule]["threshold"] for k in folds]
            decided = np.concatenate([(f[name]["probability"] >= c).astype(float)
                                      for f, c in zip(frames, cuts)])
            s[rule] = {**threshold_metrics(y, decided, 0.5, population_prevalence),
                       "threshold": float("nan"), "thresholds_per_fold": dict(zip(folds, cuts))}
        s["chosen_on"] = "each fold's own valid2 (the next fold), applied to its test fold"
    table = per_fold_table(each)
    return summary, tests, table, fold_mean(table)


SETTINGS_FILE = "cv_settings.json"


def fold_settings(finetune_cfg, encoder_kwargs, encoder_path, train2_fraction, seed, task,
                  manifest=None):
    """What a fold's results depend on (the encoder by its file's sha256, the fold's
    manifest by a hash of its records, patients, labels and splits), as JSON text."""
    import hashlib
    import json
    from dataclasses import asdict

    from ..provenance import file_sha256

    digest = file_sha256(encoder_path) if encoder_path else None
    data = None if manifest is None else hashlib.sha256("\n".join(sorted(
        "\t".join(map(str, r)) for r in manifest[["record", "patient_id", "label", "split"]]
        .itertuples(index=False))).encode()).hexdigest()
    return json.dumps({"finetune": asdict(finetune_cfg), "encoder_kwargs": encoder_kwargs,
                       "encoder_sha256": digest, "train2_fraction": train2_fraction,
                       "seed": seed, "task_name": task, "fold_data_sha256": data},
                      sort_keys=True, default=str, indent=1)


def check_fold_settings(fold_out, settings, overwrite=False):
    """Create ``fold_out`` (one experiment of one fold) with its :func:`fold_settings`; one
    of an earlier run with other settings is a ``ValueError`` (its results would be reused as
    if they were this run's) unless ``overwrite``."""
    path = os.path.join(fold_out, SETTINGS_FILE)
    if not os.path.exists(path) and done(fold_out) and not overwrite:
        raise ValueError(f"{fold_out} holds finished predictions but no {SETTINGS_FILE} (a run "
                         "of older code, or copied in by hand), so its settings cannot be "
                         "checked: choose another --out (--reuse_from copies only checked "
                         "experiments), or pass --overwrite to run every fold again")
    if os.path.exists(path) and not overwrite:
        with open(path) as f:
            if f.read() != settings:
                raise ValueError(f"{fold_out} holds a fold run with other settings "
                                 f"({SETTINGS_FILE} differs: fine-tuning, encoder, "
                                 "--train2_fraction, --seed or --task_name): choose another "
                                 "--out, or pass --overwrite to run every fold again")
    os.makedirs(fold_out, exist_ok=True)
    with open(path, "w") as f:
        f.write(settings)


def copy_if_same(src, dst, settings):
    """Copy the finished experiment ``src`` of another run to ``dst`` (which holds no
    finished one) when its cv_settings.json is ``settings``; returns 1 if copied, else 0."""
    import shutil

    path = os.path.join(src, SETTINGS_FILE)
    if done(dst) or not done(src) or not os.path.exists(path):
        return 0
    with open(path) as f:
        if f.read() != settings:
            return 0
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return 1


def done(path):
    """A finished experiment of an earlier, interrupted cross-fold run (its predictions)."""
    return all(os.path.exists(os.path.join(path, f))
               for f in ("test_predictions.csv", "valid_predictions.csv", "provenance.json"))


def read_predictions(path, task_name, manifest=None):
    """The test and valid2 predictions an experiment wrote, with ``probability`` again;
    with the fold's ``manifest``, a ``ValueError`` unless their records and labels are its
    test and valid2 ECGs."""
    from ..provenance import prob_column

    test, valid = (pd.read_csv(os.path.join(path, f), dtype={"patient_id": str, "record": str})
                   .rename(columns={prob_column(task_name): "probability"})
                   for f in ("test_predictions.csv", "valid_predictions.csv"))
    for pred, split in ((test, "test"), (valid, "valid2")):
        if manifest is None:
            continue
        want = manifest[manifest["split"] == split]
        if sorted(zip(pred["record"], pred["label"].astype(int))) != sorted(
                zip(want["record"].astype(str), want["label"].astype(int))):
            raise ValueError(f"{path}: its {split} predictions are not of this fold's {split} "
                             "ECGs and labels: pass --overwrite to run the fold again")
    return test, valid
