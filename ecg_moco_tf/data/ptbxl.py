"""PTB-XL layout (ptbxl_database.csv + scp_statements.csv + records100/records500) to a manifest.

Also reads a folder whose metadata is a ``labels.csv`` with a ``record`` column (the layout of
``../shared/data/ptbxl-pool``), and ``add_pretraining_pool`` appends such a pool to a manifest
as unlabelled pretraining data, keeping every patient on one side.
"""
from __future__ import annotations

import ast
import glob
import os

import numpy as np
import pandas as pd

from .manifest import ManifestError, check_manifest
from .splits import _stratified, check_patient_disjoint

PRETRAIN_SPLITS = ("train1", "valid1")
DOWNSTREAM_SPLITS = ("train2", "valid2", "test")

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")


def _find_database(root):
    for name in ("ptbxl_database.csv", *sorted(glob.glob(os.path.join(root, "ptbxl_database*.csv")))):
        path = os.path.join(root, os.path.basename(name))
        if os.path.exists(path):
            return path
    raise ManifestError(f"{root}: no ptbxl_database.csv (the PTB-XL metadata table) found")


def _find_metadata(root):
    """``ptbxl_database*.csv``, else a ``labels.csv`` with a ``record`` column (pool layout)."""
    try:
        return _find_database(root)
    except ManifestError:
        path = os.path.join(root, "labels.csv")
        if os.path.exists(path) and "record" in pd.read_csv(path, nrows=0).columns:
            return path
    raise ManifestError(f"{root}: neither ptbxl_database.csv (the PTB-XL metadata table) nor a "
                        "labels.csv with a 'record' column found")


def superclasses(scp_codes, statements):
    """Diagnostic superclasses of one ``scp_codes`` string (no likelihood threshold)."""
    codes = ast.literal_eval(scp_codes) if isinstance(scp_codes, str) else dict(scp_codes)
    return sorted({statements[c] for c in codes if c in statements})


def ptbxl_manifest(root, label="MI", sampling_rate=500, database=None):
    """Build a manifest from a PTB-XL folder.

    Args:
        root: folder holding ``ptbxl_database.csv`` (or ``ptbxl_database*.csv``),
            ``scp_statements.csv`` and ``records500/``/``records100/``. Without a
            ``ptbxl_database*.csv``, a ``labels.csv`` with ``record`` (path without extension),
            ``patient_id``, ``ecg_id``, ``strat_fold`` and ``scp_codes`` columns is read instead
            (the layout of ``../shared/data/ptbxl-pool``; its ``fs`` must match ``sampling_rate``).
        label: a diagnostic superclass (NORM, MI, STTC, CD, HYP) or SCP code; ``label`` is 1 when
            the ECG carries it, else 0. ``None`` leaves labels empty.
        sampling_rate: 500 (``filename_hr``) or 100 (``filename_lr``).

    The manifest keeps ``ecg_id``, ``strat_fold`` and one column per superclass; ``split`` is
    left empty (use ``splits.assign_splits``) or see ``folds_to_splits`` for the official folds.
    """
    path = database or _find_metadata(root)
    db = pd.read_csv(path)
    st = pd.read_csv(os.path.join(root, "scp_statements.csv"), index_col=0)
    diag = st[st.get("diagnostic", 0) == 1]["diagnostic_class"].dropna().to_dict()
    col = {500: "filename_hr", 100: "filename_lr"}[int(sampling_rate)]
    if col not in db.columns and "record" in db.columns:       # labels.csv (pool layout)
        col = "record"
        fs = set(pd.to_numeric(db["fs"], errors="coerce").dropna()) if "fs" in db else set()
        if fs - {int(sampling_rate)}:
            raise ManifestError(f"{path}: records are at {sorted(fs)} Hz, not {sampling_rate}")
    elif col not in db.columns:
        raise ManifestError(f"{path}: no '{col}' (or 'record') column")
    supers = db["scp_codes"].map(lambda s: superclasses(s, diag))
    df = pd.DataFrame({
        "record": db[col].astype(str),
        "patient_id": db["patient_id"].map(lambda v: str(int(v)) if pd.notna(v) else ""),
        "ecg_id": db["ecg_id"],
        "strat_fold": db["strat_fold"],
    })
    for sc in SUPERCLASSES:
        df[sc] = supers.map(lambda s, sc=sc: int(sc in s))
    if label is None:
        df["label"] = pd.NA
    elif label in SUPERCLASSES:
        df["label"] = df[label]
    else:
        if label not in st.index:
            raise ManifestError(f"label '{label}' is neither a superclass {SUPERCLASSES} "
                                "nor an SCP code in scp_statements.csv")
        df["label"] = db["scp_codes"].map(lambda s: int(label in ast.literal_eval(s)))
    df["split"] = None
    df.attrs["root"] = os.path.abspath(root)
    return check_manifest(df, source=root)


#: strat_folds used for pretraining by default (``ptbxl`` and ``reproduce``): 6-8 are then
#: train2, 9 valid2, 10 test
PRETRAIN_FOLDS = (1, 2, 3, 4, 5)


def folds_to_splits(df, pretrain_folds=(), valid_fold=9, test_fold=10):
    """Assign splits from PTB-XL's official ``strat_fold`` (patient-disjoint by construction).

    Folds in ``pretrain_folds`` become train1/valid1 (the last of them valid1); the remaining
    folds below ``valid_fold`` are train2; ``valid_fold`` is valid2; ``test_fold`` is test.
    """
    pretrain = [int(f) for f in pretrain_folds]
    clash = sorted({valid_fold, test_fold} & set(pretrain))
    if clash:
        raise ValueError(f"pretraining folds {pretrain} include fold(s) {clash}, which are "
                         f"valid2 ({valid_fold}) and test ({test_fold}): choose pretraining "
                         f"folds among 1-{min(valid_fold, test_fold) - 1} (--ptbxl_pretrain_folds)")
    df = df.copy()
    fold = df["strat_fold"].astype(int)
    df["split"] = "train2"
    if pretrain:
        df.loc[fold.isin(pretrain[:-1] or pretrain), "split"] = "train1"
        if len(pretrain) > 1:
            df.loc[fold == pretrain[-1], "split"] = "valid1"
    df.loc[fold == valid_fold, "split"] = "valid2"
    df.loc[fold == test_fold, "split"] = "test"
    return df


def _rebase(df, root):
    """``df``'s record paths made valid from ``root`` (absolute when there is none in common)."""
    src = os.path.abspath(df.attrs.get("root", "."))
    out = df.copy()
    for col in ("record", "mask"):
        if col in out:
            out[col] = [v if not isinstance(v, str) or not v or os.path.isabs(v) else
                        os.path.join(src, v) if root is None else
                        os.path.relpath(os.path.join(src, v), root) for v in out[col]]
    return out


#: PTB-XL's official validation and test folds: never pretrained on by default
HELD_OUT_FOLDS = (9, 10)


def add_pretraining_pool(df, pool_df, seed=0, valid_fraction=0.2, verbose=True,
                         exclude_folds=HELD_OUT_FOLDS):
    """Append a pool of ECGs to a split manifest as unlabelled pretraining data.

    Args:
        df: manifest with ``split`` filled in (e.g. from ``folds_to_splits``).
        pool_df: manifest of the pool (e.g. ``ptbxl_manifest(pool_root)``); labels are dropped.
        seed, valid_fraction: the pool's own patients are split train1/valid1 by patient.
        exclude_folds: pool ECGs whose ``strat_fold`` is one of these are dropped: PTB-XL's
            own validation and test folds (9, 10) by default, so that an encoder pretrained on
            the pool can be evaluated on them.

    Pool ECGs of ``exclude_folds`` are dropped first. Patients stay on one side: pool ECGs whose patient has ECGs in ``df``'s downstream splits
    (train2/valid2/test) are dropped; those whose patient is in ``df``'s train1/valid1 go to
    that same split; pool ECGs already in ``df`` (same ``ecg_id``) are dropped too. The result
    has ``label`` empty for pool rows, a ``pretraining_pool`` column (1 for pool rows), a
    ``source`` column (each folder's name, unless ``df`` has one), record
    paths valid from one root (the two roots' common parent), and the counts in
    ``attrs['pool_summary']`` (also printed in one line when ``verbose``).
    """
    if df["split"].isna().any():
        raise ValueError("add_pretraining_pool: assign the manifest's splits first "
                         f"({int(df['split'].isna().sum())} rows have no split)")
    pool = pool_df.copy()
    pool["patient_id"] = pool["patient_id"].astype(str)
    check_patient_disjoint(df)
    where = df.assign(patient_id=df["patient_id"].astype(str)).drop_duplicates(
        "patient_id").set_index("patient_id")["split"]
    side = pool["patient_id"].map(where)
    dup = (pool["ecg_id"].isin(df["ecg_id"]) if "ecg_id" in pool and "ecg_id" in df
           else pd.Series(False, index=pool.index))
    if len(exclude_folds) and "strat_fold" not in pool:
        raise ValueError("the pretraining pool has no strat_fold column, so its ECGs of "
                         f"strat_fold {'/'.join(map(str, exclude_folds))} cannot be dropped: "
                         "give a PTB-XL pool with its ptbxl_database.csv, or pass "
                         "--ptbxl_pool_exclude_folds= (empty) to pretrain on all of it")
    if not len(exclude_folds):
        import sys

        print("warning: no pool fold is held out (--ptbxl_pool_exclude_folds is empty): an "
              "encoder pretrained on it has seen PTB-XL's validation and test folds 9 and 10",
              file=sys.stderr)
    if len(exclude_folds) and pd.to_numeric(pool["strat_fold"], errors="coerce").isna().any():
        bad = pool.loc[pd.to_numeric(pool["strat_fold"], errors="coerce").isna(), "record"]
        raise ValueError(f"{len(bad)} pool ECGs have no strat_fold (first: {bad.iloc[0]}), so "
                         "it is unknown whether they belong to the held-out folds: fix the "
                         "pool's strat_fold, or pass --ptbxl_pool_exclude_folds= (empty)")
    held = (pd.to_numeric(pool["strat_fold"], errors="coerce").isin(
        [int(f) for f in exclude_folds]) & ~dup if len(exclude_folds)
        else pd.Series(False, pool.index))
    down = side.isin(DOWNSTREAM_SPLITS) & ~dup & ~held
    same = side.isin(PRETRAIN_SPLITS) & ~dup & ~held
    keep = ~dup & ~down & ~held
    fresh = np.sort(pool.loc[keep & ~same, "patient_id"].unique())
    train, valid = _stratified(fresh, np.zeros(len(fresh)), valid_fraction, seed)
    new = dict.fromkeys(train, "train1") | dict.fromkeys(valid, "valid1")
    pool["split"] = side.where(same, pool["patient_id"].map(new))
    pool["label"] = pd.array([pd.NA] * len(pool), dtype="Int64")
    pool = pool[keep]

    roots = [os.path.abspath(d.attrs.get("root", ".")) for d in (df, pool_df)]
    try:
        root = os.path.commonpath(roots)
    except ValueError:                                   # e.g. two drives: absolute paths
        root = None
    def folder(d):
        return os.path.basename(os.path.normpath(d.attrs.get("root", ".")))

    labelled = df if "source" in df else df.assign(source=folder(df))
    out = pd.concat([_rebase(labelled, root).assign(pretraining_pool=0),
                     _rebase(pool, root).assign(pretraining_pool=1, source=folder(pool_df))],
                    ignore_index=True)
    out.attrs = {k: v for k, v in df.attrs.items() if k != "root"}
    out.attrs["root"] = root or os.path.abspath(os.sep)
    out = check_manifest(out, source="manifest with pretraining pool")
    check_patient_disjoint(out)
    counts = pool["split"].value_counts()
    summary = {"pool": len(pool_df), "kept": int(keep.sum()),
               "train1": int(counts.get("train1", 0)), "valid1": int(counts.get("valid1", 0)),
               "joined_pretraining_patient": int(same.sum()),
               "dropped_downstream_patient": int(down.sum()),
               "dropped_duplicate_ecg": int(dup.sum()),
               "dropped_held_out_fold": int(held.sum()),
               "held_out_folds": [int(f) for f in exclude_folds]}
    out.attrs["pool_summary"] = summary
    if verbose:
        print(f"pretraining pool {roots[1]}: {summary['pool']} ECGs, {summary['kept']} kept "
              f"unlabelled (train1 {summary['train1']}, valid1 {summary['valid1']}; "
              f"{summary['joined_pretraining_patient']} join their patient's pretraining "
              f"split), dropped {summary['dropped_held_out_fold']} of strat_fold "
              f"{'/'.join(map(str, summary['held_out_folds'])) or '-'} (PTB-XL's validation "
              f"and test folds), {summary['dropped_downstream_patient']} whose patient is in "
              f"train2/valid2/test and {summary['dropped_duplicate_ecg']} already in the "
              "manifest (same ecg_id)")
    return out
