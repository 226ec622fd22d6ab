"""The manifest: one row per ECG, a pandas DataFrame stored as CSV or Parquet.

Documented columns:

- ``record``: path relative to the manifest's folder (WFDB: without extension);
- ``patient_id``: required, non-empty; all ECGs of one patient stay in one split;
- ``label``: 0/1, or empty where unknown (unlabelled ECGs can only be used for pretraining);
- ``split``: one of ``train1, valid1, train2, valid2, test`` or empty (see ``splits.py``);
- optional ``fs`` and ``leads`` (comma-separated names) for NumPy/HDF5 files that lack them.

Extra columns are kept untouched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .records import ReadOptions, RecordError, read_record

REQUIRED = ("record", "patient_id")
SPLITS = ("train1", "valid1", "train2", "valid2", "test")


class ManifestError(ValueError):
    """The manifest itself is malformed (missing columns, bad ids or labels)."""


def read_manifest(path, required=REQUIRED):
    """Read a CSV/Parquet manifest, check it, and remember its folder in ``df.attrs['root']``.

    ``required=("record",)`` accepts a manifest without ``patient_id`` (scoring only)."""
    if not os.path.exists(path):
        raise ManifestError(f"manifest {path} not found")
    df = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(
        path, dtype={"record": str, "patient_id": str, "split": str, "leads": str})
    df.attrs["root"] = os.path.dirname(os.path.abspath(path))
    return check_manifest(df, source=path, required=required)


def write_manifest(df, path):
    """Write a manifest as CSV or Parquet (by extension).

    Paths in ``record`` (and ``mask``) are relative to the manifest's folder: when the manifest
    was read from another folder (``df.attrs['root']``) they are rewritten to stay valid.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    out = df.copy()
    root = df.attrs.get("root")
    if root and os.path.abspath(root) != folder:
        for col in ("record", "mask"):
            if col in out:
                out[col] = [os.path.relpath(os.path.join(root, str(v)), folder)
                            if isinstance(v, str) and v and not os.path.isabs(v) else v
                            for v in out[col]]
    out.attrs = {}
    if str(path).endswith(".parquet"):
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False)
    return path


def check_manifest(df, source="manifest", required=REQUIRED):
    """Validate the documented columns; raise ManifestError listing every bad row.

    ``required``: the columns that must be there (``patient_id`` is checked when present)."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing column(s) {missing}; required: {list(required)}")
    df = df.copy() if "label" in df.columns and "split" in df.columns else df.assign(
        **{c: np.nan for c in ("label", "split") if c not in df.columns})
    problems = []
    pid = (df["patient_id"] if "patient_id" in df else pd.Series(["-"] * len(df), index=df.index,
                                                                 dtype=object)
           ).astype("string").str.strip()
    for i in np.where(pid.isna() | (pid == ""))[0]:
        problems.append(f"row {i} (record '{df['record'].iloc[i]}'): no patient_id")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = df["label"].notna() & ~labels.isin([0, 1])
    for i in np.where(bad)[0]:
        problems.append(f"row {i} (record '{df['record'].iloc[i]}'): label "
                        f"{str(df['label'].iloc[i])!r} is not 0/1 (leave empty if unknown)")
    split = df["split"].astype("string")
    for i in np.where(split.notna() & ~split.isin(SPLITS))[0]:
        problems.append(f"row {i} (record '{df['record'].iloc[i]}'): split "
                        f"{split.iloc[i]!r} not in {list(SPLITS)}")
    dup = df["record"][df["record"].duplicated()]
    problems += [f"record '{r}' is listed twice" for r in dup.unique()]
    if problems:
        raise ManifestError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    if "patient_id" in df:
        df["patient_id"] = pid.astype(str)
    df["label"] = labels.astype("Int64")
    df["split"] = split.astype(object).where(split.notna(), None)
    return df


def record_path(df, row):
    """Absolute path of a manifest row's record."""
    return os.path.join(df.attrs.get("root", "."), str(row["record"]))


def _row_hints(row):
    fs = row.get("fs")
    fs = float(fs) if fs is not None and pd.notna(fs) else None
    leads = row.get("leads")
    leads = [s.strip() for s in str(leads).split(",")] if leads is not None and pd.notna(
        leads) else None
    return fs, leads


def read_row(df, row, options=ReadOptions()):
    """Read one manifest row into the standard (12, 5000) array."""
    fs, leads = _row_hints(row)
    return read_record(record_path(df, row), fs=fs, leads=leads, options=options,
                       record=row["record"])


@dataclass
class LoadResult:
    """Signals of the records that loaded, their manifest rows, and the problems of the rest."""

    signals: np.ndarray
    manifest: pd.DataFrame
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["record", "problem"]))


def load_records(df, on_error="raise", options=ReadOptions(), progress=True,
                 keep_signals=True):
    """Read every record of a manifest into memory (small sets; use the pipeline for large ones).

    ``on_error='raise'`` reads everything, then raises one RecordError listing all problems;
    ``'skip'`` returns the good records and a problems table (never drops silently).
    ``keep_signals=False`` only checks the records (memory stays flat; ``signals`` is empty).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    signals, keep, problems = [], [], []
    for i, (_, row) in enumerate(tqdm(df.iterrows(), total=len(df), desc="reading ECGs",
                                      disable=not progress, unit="ecg")):
        try:
            x = read_row(df, row, options)
            if keep_signals:
                signals.append(x)
            keep.append(i)
        except RecordError as e:
            problems.append({"record": e.record, "problem": e.problem + (
                f" -> {e.fix}" if e.fix else "")})
    problems = pd.DataFrame(problems, columns=["record", "problem"])
    if len(problems) and on_error == "raise":
        raise RecordError(f"{len(problems)} of {len(df)} records", "could not be read:\n  " +
                          "\n  ".join(f"{r}: {p}" for r, p in problems.values),
                          "fix them, or pass on_error='skip' (--on_error=skip) to leave them out "
                          "with this report")
    good = df.iloc[keep].reset_index(drop=True)
    good.attrs = dict(df.attrs)
    arr = np.stack(signals) if signals else np.zeros((0, 12, options.num_samples), np.float32)
    return LoadResult(arr, good, problems)
