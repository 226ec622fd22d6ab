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

from .records import (ReadOptions, RecordError, derived_note, lead_consistency, plausibility,
                      read_record)

REQUIRED = ("record", "patient_id")
SPLITS = ("train1", "valid1", "train2", "valid2", "test")


class ManifestError(ValueError):
    """The manifest itself is malformed (missing columns, bad ids or labels)."""


def read_manifest(path, required=REQUIRED):
    """Read a CSV/Parquet manifest, check it, and remember its folder in ``df.attrs['root']``.

    A file that is not a table, has no rows or lacks the ``required`` columns is a
    :class:`ManifestError` saying so; ``required=("record",)`` accepts a manifest without
    ``patient_id`` (scoring only)."""
    if not os.path.exists(path):
        raise ManifestError(f"manifest {path} not found")
    try:
        df = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(
            path, dtype={"record": str, "patient_id": str, "split": str, "leads": str})
    except pd.errors.EmptyDataError:
        raise ManifestError(f"manifest {path} is an empty file") from None
    except (ValueError, OSError) as e:         # binary or malformed files, bad Parquet
        raise ManifestError(f"{path} is not a CSV/Parquet manifest ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    df.attrs["root"] = os.path.dirname(os.path.abspath(path))
    df = check_manifest(df, source=path, required=required)
    if not len(df):
        raise ManifestError(f"manifest {path} has no rows (columns only): add one row per ECG")
    return df


def write_manifest(df, path):
    """Write a manifest as CSV or Parquet (by extension).

    Paths in ``record`` (and ``mask``) are relative to the manifest's folder: when the manifest
    was read from another folder (``df.attrs['root']``) they are rewritten to stay valid.
    """
    if os.path.isdir(path) or str(path).endswith(("/", os.sep)):
        raise ValueError(f"{path} is a folder; a manifest is a file: give a name such as "
                         f"{os.path.join(path, 'manifest.csv')}")
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


_YES_NO = {"yes", "no", "y", "n", "true", "false", "pos", "neg", "positive", "negative"}


def check_manifest(df, source="manifest", max_listed=10, required=REQUIRED):
    """Validate the documented columns; raise ManifestError naming the bad rows (the first
    ``max_listed`` of each kind, and how many). ``required``: the columns that must be there
    (``patient_id`` is checked when present)."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {missing}; found {list(df.columns)[:20]}; a manifest "
            f"needs {list(required)}, optional 'label' (0/1), 'split', 'fs', 'leads' "
            "(docs/data.md: The manifest)")
    df = df.copy() if "label" in df.columns and "split" in df.columns else df.assign(
        **{c: np.nan for c in ("label", "split") if c not in df.columns})
    problems = []

    def rows(mask, what):
        idx = np.where(mask)[0]
        listed = [f"row {i} (record '{df['record'].iloc[i]}'): {what(i)}"
                  for i in idx[:max_listed]]
        problems.extend(listed + ([f"... and {len(idx) - max_listed} more row(s) like these"]
                                  if len(idx) > max_listed else []))

    pid = (df["patient_id"] if "patient_id" in df else pd.Series(["-"] * len(df), index=df.index,
                                                                 dtype=object)
           ).astype("string").str.strip()
    rows(pid.isna() | (pid == ""), lambda i: "no patient_id")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = (df["label"].notna() & ~labels.isin([0, 1])).to_numpy()
    rows(bad, lambda i: f"label {str(df['label'].iloc[i])!r} is not 0/1 (leave empty if "
                        "unknown)")
    words = sorted({str(v).strip() for v in df["label"][bad]})
    if bad.any() and {w.lower() for w in words} <= _YES_NO:
        to = {w: int(w.lower() in ("yes", "y", "true", "pos", "positive")) for w in words}
        problems.append(f"labels {words} must be mapped to 1/0, e.g. in pandas: "
                        f"df['label'] = df['label'].map({to})")
    split = df["split"].astype("string")
    rows((split.notna() & ~split.isin(SPLITS)).to_numpy(),
         lambda i: f"split {split.iloc[i]!r} not in {list(SPLITS)}")
    dup = df["record"][df["record"].duplicated()].unique()
    problems += [f"record '{r}' is listed twice" for r in dup[:max_listed]]
    if len(dup) > max_listed:
        problems.append(f"... and {len(dup) - max_listed} more duplicated record(s)")
    if problems:
        raise ManifestError(f"{source}: " + "; ".join(problems))
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


def read_row(df, row, options=ReadOptions(), info=None):
    """Read one manifest row into the standard (12, 5000) array (``info``: see
    :func:`~ecg_moco_tf.data.records.standardize`)."""
    fs, leads = _row_hints(row)
    return read_record(record_path(df, row), fs=fs, leads=leads, options=options,
                       record=row["record"], info=info)


class UnreadableRecords(RecordError):
    """Records that cannot be used, all at once: ``problems`` (a DataFrame: record, problem);
    the message gives the count, the first five and the ``on_error='skip'`` way out."""

    def __init__(self, problems, total, verb="used"):
        listed = "; ".join(f"{r}: {p.replace(' -> ', ': ', 1)}" for r, p in problems.values[:5])
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        self.problems = problems
        self.record, self.problem = f"{len(problems)} of {total} records", (
            f"cannot be {verb}: {listed}{more}")
        self.fix = ("fix them, or set on_error='skip' to leave them out, listed in "
                    "problems.csv")
        ValueError.__init__(self, f"{self.record} {self.problem} -> {self.fix}")


def check_records(df, options=ReadOptions(), max_p2p_mv=10.0, min_fs=250.0, progress=True):
    """Read every record and say what reading it does and what looks wrong, one row per record:
    ``record``, ``status`` (ok / warning / error), ``fs``, ``seconds`` (as stored), ``actions``
    (resample, crop, zero-pad, drop extra leads), ``message`` (the error, or the warnings of
    :func:`~ecg_moco_tf.data.records.plausibility`)."""
    rows = []
    for _, row in tqdm(df.iterrows(), total=len(df), desc="checking ECGs", disable=not progress,
                       unit="ecg"):
        info = {}
        try:
            x = read_row(df, row, options, info=info)
        except RecordError as e:
            rows.append({"record": e.record, "status": "error", "message": e.detail})
            continue
        warnings = plausibility(x, info["fs"], max_p2p_mv, min_fs) + lead_consistency(x)
        rows.append({"record": str(row["record"]), "status": "warning" if warnings else "ok",
                     "fs": info["fs"], "seconds": info["seconds"],
                     "actions": "; ".join(info["actions"]), "message": "; ".join(warnings)})
    cols = ["record", "status", "fs", "seconds", "actions", "message"]
    return pd.DataFrame(rows, columns=cols).fillna({"actions": "", "message": ""})


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
    signals, keep, problems, derived = [], [], [], 0
    for i, (_, row) in enumerate(tqdm(df.iterrows(), total=len(df), desc="reading ECGs",
                                      disable=not progress, unit="ecg")):
        try:
            info = {}
            x = read_row(df, row, options, info=info)
            derived += bool(info.get("derived_limb_leads"))
            if keep_signals:
                signals.append(x)
            keep.append(i)
        except RecordError as e:
            problems.append({"record": e.record, "problem": e.detail})
    if derived:
        print(derived_note(derived, len(df)))
    problems = pd.DataFrame(problems, columns=["record", "problem"])
    if len(problems) and on_error == "raise":
        raise UnreadableRecords(problems, len(df))
    good = df.iloc[keep].reset_index(drop=True)
    good.attrs = dict(df.attrs)
    arr = np.stack(signals) if signals else np.zeros((0, 12, options.num_samples), np.float32)
    return LoadResult(arr, good, problems)
