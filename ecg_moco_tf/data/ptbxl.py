"""PTB-XL layout (ptbxl_database.csv + scp_statements.csv + records100/records500) to a manifest."""
from __future__ import annotations

import ast
import glob
import os

import pandas as pd

from .manifest import ManifestError, check_manifest

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")


def _find_database(root):
    for name in ("ptbxl_database.csv", *sorted(glob.glob(os.path.join(root, "ptbxl_database*.csv")))):
        path = os.path.join(root, os.path.basename(name))
        if os.path.exists(path):
            return path
    raise ManifestError(f"{root}: no ptbxl_database.csv (the PTB-XL metadata table) found")


def superclasses(scp_codes, statements):
    """Diagnostic superclasses of one ``scp_codes`` string (no likelihood threshold)."""
    codes = ast.literal_eval(scp_codes) if isinstance(scp_codes, str) else dict(scp_codes)
    return sorted({statements[c] for c in codes if c in statements})


def ptbxl_manifest(root, label="MI", sampling_rate=500, database=None):
    """Build a manifest from a PTB-XL folder.

    Args:
        root: folder holding ``ptbxl_database.csv`` (or ``ptbxl_database*.csv``),
            ``scp_statements.csv`` and ``records500/``/``records100/``.
        label: a diagnostic superclass (NORM, MI, STTC, CD, HYP) or SCP code; ``label`` is 1 when
            the ECG carries it, else 0. ``None`` leaves labels empty.
        sampling_rate: 500 (``filename_hr``) or 100 (``filename_lr``).

    The manifest keeps ``ecg_id``, ``strat_fold`` and one column per superclass; ``split`` is
    left empty (use ``splits.assign_splits``) or see ``folds_to_splits`` for the official folds.
    """
    db = pd.read_csv(database or _find_database(root))
    st = pd.read_csv(os.path.join(root, "scp_statements.csv"), index_col=0)
    diag = st[st.get("diagnostic", 0) == 1]["diagnostic_class"].dropna().to_dict()
    col = {500: "filename_hr", 100: "filename_lr"}[int(sampling_rate)]
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


def folds_to_splits(df, pretrain_folds=(), valid_fold=9, test_fold=10):
    """Assign splits from PTB-XL's official ``strat_fold`` (patient-disjoint by construction).

    Folds in ``pretrain_folds`` become train1/valid1 (the last of them valid1); the remaining
    folds below ``valid_fold`` are train2; ``valid_fold`` is valid2; ``test_fold`` is test.
    """
    df = df.copy()
    pretrain = list(pretrain_folds)
    fold = df["strat_fold"].astype(int)
    df["split"] = "train2"
    if pretrain:
        df.loc[fold.isin(pretrain[:-1] or pretrain), "split"] = "train1"
        if len(pretrain) > 1:
            df.loc[fold == pretrain[-1], "split"] = "valid1"
    df.loc[fold == valid_fold, "split"] = "valid2"
    df.loc[fold == test_fold, "split"] = "test"
    return df
