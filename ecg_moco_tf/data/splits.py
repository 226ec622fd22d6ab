"""Patient-wise splits following the paper (Table 1) and the three experiment views (Table 3).

Assignment (``assign_splits``), all at the patient level so that no patient is in two splits:

1. A patient is positive if any of their ECGs is labelled 1, negative if all labelled ECGs are 0,
   unlabelled if none is labelled.
2. Downstream pool (train2/valid2/test): every positive patient (the paper keeps all positives
   downstream) and a ``downstream_negative_fraction`` of the negative patients.
3. Pretraining pool (train1/valid1): the other negative patients and every unlabelled patient.
   Labels of this pool are never used by pretraining.
4. Each pool is split by patient with scikit-learn's ``train_test_split`` on the table of unique
   patients, stratified by patient label, so a patient's ECGs never straddle two splits.

Default fractions reproduce the paper's proportions (Table 1): 22.6 % of negative ECGs
downstream; train1:valid1 = 79.6:20.4; train2:valid2:test = 70.5:14.6:14.9.

That is the ``paper`` design (:data:`DESIGNS`). ``finetune`` sends every labelled patient
downstream (train2/valid2/test at the data's own prevalence, no train1/valid1; unlabelled
ECGs get no split): for fine-tuning a pretrained encoder on all of one's labels. ``pretrain``
sends every patient to train1/valid1 (an unlabelled pool; labels ignored).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

EXPERIMENTS = ("proposed", "baseline_unpretrained", "baseline_full_labels")
DESIGNS = ("paper", "finetune", "pretrain")


class SplitLeakageError(ValueError):
    """A patient id appears in more than one split."""


@dataclass(frozen=True)
class SplitFractions:
    """Shares of patients (< 1) per split; ``test`` may also be a number of patients (>= 1),
    e.g. a large test split for narrow confidence intervals. ``valid2`` is a share of the whole
    downstream pool either way."""
    downstream_negative_fraction: float = 7606 / 33602
    valid1: float = 5303 / 25996
    valid2: float = 1622 / 11107
    test: float = 1652 / 11107

    def __post_init__(self):
        for name, value in vars(self).items():
            if not math.isfinite(value):
                raise ValueError(f"{name}={value}: a share of patients in [0, 1)"
                                 + (" or a whole number of patients" if name == "test" else ""))
        if not 0 <= self.downstream_negative_fraction <= 1:
            raise ValueError(f"downstream_negative_fraction={self.downstream_negative_fraction}"
                             ": a share of negative patients in [0, 1]")
        for name in ("valid1", "valid2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: a share of patients in [0, 1)")
        if self.test < 0 or (self.test >= 1 and self.test != int(self.test)):
            raise ValueError(f"test={self.test}: a share of patients in [0, 1) or a whole "
                             "number of patients")
        if self.test == 1:
            raise ValueError("test=1 means one test patient (a number >= 1 counts patients; "
                             "a share is below 1): give a share such as 0.15 or a number of "
                             "patients >= 2")
        if self.test < 1 and self.valid2 + self.test >= 1:
            raise ValueError(f"valid2 + test = {self.valid2 + self.test:g}: leaves no train2; "
                             "lower valid2= or test=")


def _count(size, n):
    """Patients a split of ``size`` takes from ``n``: a share (< 1) or a number, at most n."""
    return min(n, int(round(size * n)) if size < 1 else int(size))


def _stratified(ids, y, size, seed):
    if size <= 0 or len(ids) == 0:
        return ids, ids[:0]
    n_take = _count(size, len(ids))
    if n_take == 0:
        return ids, ids[:0]
    if n_take >= len(ids):
        return ids[:0], ids
    counts = np.unique(y, return_counts=True)[1]
    strat = y if len(counts) > 1 and counts.min() >= 2 and n_take >= len(counts) else None
    a, b = train_test_split(ids, test_size=n_take, random_state=seed, stratify=strat)
    return np.sort(a), np.sort(b)


def patient_labels(df):
    """Per-patient label: 1 if any ECG is 1, 0 if all labelled ECGs are 0, NaN if none labelled."""
    return pd.to_numeric(df["label"], errors="coerce").groupby(df["patient_id"]).max()


def assign_splits(df, seed=0, fractions=SplitFractions(), design="paper"):
    """Return a copy of the manifest with ``split`` filled in (see module docstring);
    ``design``: one of :data:`DESIGNS` (``finetune`` ignores ``downstream_negative_fraction``
    and ``valid1``, ``pretrain`` all but ``valid1``)."""
    if design not in DESIGNS:
        raise ValueError(f"design={design!r}: choose from {', '.join(DESIGNS)}")
    plab = patient_labels(df)
    if design == "pretrain":
        plab = plab * np.nan                              # labels play no part
    pos = plab.index[plab == 1].to_numpy()
    neg = plab.index[plab == 0].to_numpy()
    unl = plab.index[plab.isna()].to_numpy()
    share = fractions.downstream_negative_fraction
    if design == "finetune" or share == 1:
        share = len(neg)                                  # all of them (a count, not a share)
    neg_pre, neg_down = _stratified(np.sort(neg), np.zeros(len(neg)), share, seed)
    if design == "finetune":
        unl = unl[:0]                                     # no pretraining splits
    down = np.concatenate([pos, neg_down])
    y_down = plab.loc[down].to_numpy()
    rest, test = _stratified(down, y_down, fractions.test, seed + 1)
    test_share = fractions.test if fractions.test < 1 else len(test) / max(1, len(down))
    valid2_share = fractions.valid2 / max(1e-9, 1 - test_share)
    n_valid2 = _count(valid2_share, len(rest)) if valid2_share < 1 else len(rest)
    if len(down) and len(rest) - n_valid2 < 2:
        raise ValueError(f"test={fractions.test:g} and valid2={fractions.valid2:g} leave "
                         f"{max(0, len(rest) - n_valid2)} of the {len(down)} downstream patients "
                         "for train2 (at least 2 needed): lower test= or valid2=, or add "
                         "patients")
    train2, valid2 = _stratified(rest, plab.loc[rest].to_numpy(), valid2_share, seed + 2)
    pre = np.sort(np.concatenate([neg_pre, unl]))
    y_pre = plab.loc[pre].fillna(-1).to_numpy()
    train1, valid1 = _stratified(pre, y_pre, fractions.valid1, seed + 3)
    where = {}
    for name, ids in (("train1", train1), ("valid1", valid1), ("train2", train2),
                      ("valid2", valid2), ("test", test)):
        where.update(dict.fromkeys(ids, name))
    out = df.copy()
    out["split"] = out["patient_id"].map(where)
    check_patient_disjoint(out)
    return out


def check_patient_disjoint(df):
    """Raise SplitLeakageError naming every patient whose ECGs fall in more than one split."""
    sub = df[df["split"].notna()]
    n = sub.groupby("patient_id")["split"].nunique()
    leaked = n[n > 1]
    if len(leaked):
        detail = sub[sub["patient_id"].isin(leaked.index)].groupby("patient_id")["split"].unique()
        lines = [f"patient {p}: {sorted(s)}" for p, s in detail.head(20).items()]
        raise SplitLeakageError(f"{len(leaked)} patient(s) appear in more than one split "
                                "(data leakage):\n  " + "\n  ".join(lines))
    return True


_VIEW_SPLITS = {"pretrain_train": ("train1",), "pretrain_valid": ("valid1",),
                "test": ("test",)}


def experiment_view(df, name, require=()):
    """The splits one experiment uses (paper Table 3), as manifest subsets.

    Returns a dict with ``pretrain_train``/``pretrain_valid`` (None when the experiment does not
    pretrain) and ``train``/``valid``/``test``. Downstream subsets keep labelled ECGs only.
    ``require``: keys that must not be empty; a ``ValueError`` names the empty splits and the
    command that assigns them.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{name}'; choose from {EXPERIMENTS}")
    check_patient_disjoint(df)

    def pick(*splits, labelled=True):
        sub = df[df["split"].isin(splits)]
        return sub[sub["label"].notna()] if labelled else sub

    full = name == "baseline_full_labels"
    where = {**_VIEW_SPLITS, "train": ("train1", "train2") if full else ("train2",),
             "valid": ("valid1", "valid2") if full else ("valid2",)}
    view = {"pretrain_train": None, "pretrain_valid": None, "test": pick(*where["test"])}
    if name == "proposed":
        view.update(pretrain_train=pick(*where["pretrain_train"], labelled=False),
                    pretrain_valid=pick(*where["pretrain_valid"], labelled=False))
    view.update(train=pick(*where["train"]), valid=pick(*where["valid"]))
    empty = [k for k in require if view[k] is None or not len(view[k])]
    if empty:
        what = " and ".join("/".join(where[k]) for k in empty)
        labelled = "" if all(k.startswith("pretrain") for k in empty) else "labelled "
        counts = df["split"].fillna("(none)").value_counts().to_dict()
        raise ValueError(f"{name} needs {labelled}{what} ECGs and the manifest has none "
                         f"(ECGs per split: {counts}); assign splits with `ecg-moco split "
                         "--manifest=...` (it writes <name>_splits.csv; use that) or give the "
                         "manifest a 'split' column")
    return view


def split_summary(df):
    """ECGs, positives, negatives, unlabelled and unique patients per split (paper Table 1)."""
    lab = pd.to_numeric(df["label"], errors="coerce")
    g = df.assign(pos=lab == 1, neg=lab == 0, unl=lab.isna()).groupby(
        df["split"].fillna("(none)"))
    table = pd.DataFrame({"negative": g["neg"].sum(), "positive": g["pos"].sum(),
                          "unlabelled": g["unl"].sum(), "total": g.size(),
                          "patients": g["patient_id"].nunique()})
    order = [s for s in ("train1", "valid1", "train2", "valid2", "test", "(none)")
             if s in table.index]
    return table.loc[order].astype(int)
