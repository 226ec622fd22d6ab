"""A manifest from a folder of records: ``ecg-moco manifest --root=DIR``.

Records are found recursively by extension (WFDB ``*.hea``, which also covers the Challenge's
``.mat`` + ``.hea`` pairs; ``*.npz``; HDF5 ``*.h5`` / ``*.hdf5``, a stacked 3-D ``signal``
dataset giving one row ``file.h5#i`` per ECG). ``patient_id`` comes from a column of the labels
CSV, from a regular expression on the record name, or (the default, said in the summary) one
patient per record. Labels and any other columns are joined from a CSV.
"""
from __future__ import annotations

import glob
import os
import re

import pandas as pd

from .manifest import ManifestError, check_manifest

RECORD_PATTERNS = ("*.hea", "*.npz", "*.h5", "*.hdf5")
# the CSV's columns of these names are used only through id_column / label_column /
# patient_column; its others (split, fs, leads, mask included) are joined as they are
RESERVED = ("record", "patient_id", "label")


def find_records(root):
    """Record names under ``root`` (relative paths; WFDB without extension), sorted.

    Raises FileNotFoundError (one line) when the folder is missing or holds no record."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a folder")
    files = sorted({f for pat in RECORD_PATTERNS
                    for f in glob.glob(os.path.join(root, "**", pat), recursive=True)})
    if not files:
        raise FileNotFoundError(f"no records ({', '.join(RECORD_PATTERNS)}) under {root}: "
                                "give the folder that holds them")
    names = []
    for f in files:
        rel = os.path.relpath(f, root)
        if f.endswith(".hea"):
            names.append(rel[:-4])
        elif f.endswith((".h5", ".hdf5")):
            names += _hdf5_rows(f, rel)
        else:
            names.append(rel)
    return names


def _hdf5_rows(path, rel):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            ds = f.get("signal")
            n = ds.shape[0] if ds is not None and ds.ndim == 3 else None
    except OSError:
        n = None                      # unreadable: one row, `validate` names the problem
    return [rel] if n is None else [f"{rel}#{i}" for i in range(n)]


def _stem(name):
    return os.path.splitext(os.path.basename(name.partition("#")[0]))[0]


def _join_labels(df, labels, id_column, label_column, patient_column, patient_regex=None):
    """Left-join the labels CSV on the record name (full relative path, else file stem)."""
    table = pd.read_csv(labels, dtype=str, keep_default_na=False, na_values=[""])
    wanted = [c for c in (id_column, label_column, patient_column) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ManifestError(f"{labels}: no column(s) {missing}; its columns are "
                            f"{list(table.columns)} (choose id_column=, label_column=, "
                            "patient_column= among them)")
    ids = table[id_column].astype(str).str.strip()
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise ManifestError(f"{labels}: id(s) {list(dup[:5])} in id_column={id_column} are "
                            "listed more than once; one row per record is needed")
    exact = set(ids)
    by_name = ids if df["record"].isin(exact).any() else ids.map(_stem)
    key = df["record"] if df["record"].isin(exact).any() else df["record"].map(_stem)
    if by_name.duplicated().any():
        raise ManifestError(f"{labels}: id_column={id_column} values are not unique by file "
                            "name; give ids as record paths relative to root=")
    table = table.assign(_key=by_name.values)
    keep = [c for c in table.columns if c not in RESERVED and c not in (id_column, "_key")]
    dropped = [c for c in table.columns if c in RESERVED and c not in wanted]
    cols = {"_key": "_key"}
    if label_column:
        cols[label_column] = "label"
    if patient_column:
        cols[patient_column] = "patient_id"
    part = table[list(cols) + [c for c in keep if c not in cols]].rename(columns=cols)
    if label_column and label_column in keep:       # keep the original column too
        part[label_column] = table[label_column].values
    out = df.assign(_key=key.values).merge(part, on="_key", how="left").drop(columns="_key")
    matched = int(key.isin(set(by_name)).sum())
    if not matched:
        raise ManifestError(
            f"{labels}: none of its {len(table)} id_column={id_column} values matches a record "
            f"under the root (CSV e.g. {list(ids[:3])}; records e.g. {list(df['record'][:3])}): "
            "give ids as record paths relative to root= or as file names, or choose the "
            "right id_column=")
    note = (f"{labels}: {matched} of {len(df)} records matched by "
            f"{'path' if by_name is ids else 'file name'} ({len(table) - matched} CSV rows "
            "without a record)")
    if dropped:
        why = {"record": f"records are matched on --id_column={id_column}",
               "label": f"--label_column={label_column} gives the label",
               "patient_id": "--patient_regex gives the patient" if patient_regex else
               f"--patient_column={patient_column} gives the patient"}
        note += "; not copied: " + "; ".join(f"{c!r} ({why[c]})" for c in dropped)
    return out, note


def _labels_01(values, column):
    """Booleans and 0/1 as 0/1; anything else is left for check_manifest to name."""
    mapping = {"true": 1, "false": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}
    return [v if pd.isna(v) else mapping.get(str(v).strip().lower(), v) for v in values]


def manifest_from_folder(root, patient_regex=None, labels=None, id_column="record",
                         label_column=None, patient_column=None):
    """A checked manifest of every record under ``root`` and a list of lines saying how it
    was made (patient ids, label join), for the caller to print.

    Args:
        root: folder searched recursively (see :data:`RECORD_PATTERNS`).
        patient_regex: regular expression searched in each record name; its first group (or
            the whole match) is the patient id. A record it does not match is an error.
        labels: CSV joined on ``id_column`` (record path relative to ``root``, or file name).
        label_column: its 0/1 (or True/False) column that becomes ``label``.
        patient_column: its column that becomes ``patient_id``.
    """
    if patient_regex and patient_column:
        raise ValueError("give patient_regex= or patient_column=, not both")
    if (label_column or patient_column) and not labels:
        raise ValueError("label_column= / patient_column= need labels=CSV")
    df = pd.DataFrame({"record": find_records(root)})
    notes = [f"{len(df)} records under {root}"]
    own = []
    if labels:
        header = set(pd.read_csv(labels, nrows=0).columns)
        # the CSV's own label / patient_id columns (the manifest's names): joined
        if label_column is None and "label" in header:
            label_column = "label"
            own.append("label")
        if patient_column is None and patient_regex is None and "patient_id" in header:
            patient_column = "patient_id"
            own.append("patient_id")
        if own:
            notes.append(f"{labels}: its {' and '.join(repr(c) for c in own)} column(s) "
                         "carry the manifest's names and are used as such (the CSV's values)")
        df, note = _join_labels(df, labels, id_column, label_column, patient_column,
                                patient_regex)
        notes.append(note)
        if label_column:
            df["label"] = _labels_01(df["label"], label_column)
    if patient_column:
        empty = df["patient_id"].isna()
        if empty.any() and "patient_id" in own:     # the CSV's own column, not asked for
            df.loc[empty, "patient_id"] = df.loc[empty, "record"]
            notes.append(f"{int(empty.sum())} record(s) not in {labels}'s patient_id column: "
                         "one patient per record for them")
        elif empty.any():
            raise ManifestError(f"{empty.sum()} record(s) have no {patient_column!r} in "
                                f"{labels} (e.g. {df['record'][empty].iloc[0]!r}; a record "
                                "missing from the CSV, or an empty cell): fill it, or use "
                                "patient_regex= or one patient per record")
        notes.append(f"patient_id: column {patient_column!r} of {labels}")
    elif patient_regex:
        rx = re.compile(patient_regex)
        ids = []
        for r in df["record"]:
            m = rx.search(r)
            if not m:
                raise ManifestError(f"patient_regex={patient_regex!r} does not match record "
                                    f"{r!r}: fix the expression (its first group is the id)")
            ids.append(m.group(1) if rx.groups else m.group(0))
        df["patient_id"] = ids
        notes.append(f"patient_id: --patient_regex={patient_regex!r} on the record name")
    else:
        df["patient_id"] = df["record"]
        notes.append("patient_id: one patient per record (the record name); ECGs of one patient "
                     "could land in different splits: give --patient_column or --patient_regex "
                     "if patients have several ECGs")
    front = ["record", "patient_id"] + (["label"] if "label" in df else [])
    df = df[front + [c for c in df.columns if c not in front]]
    df.attrs["root"] = os.path.abspath(root)
    df = check_manifest(df, source=f"manifest of {root}")
    if label_column:
        y = df["label"]
        notes.append(f"label: {label_column!r}, {int((y == 1).sum())} positive, "
                     f"{int((y == 0).sum())} negative, {int(y.isna().sum())} without a label "
                     "(pretraining only)")
    notes.append(f"{df['patient_id'].nunique()} patients")
    return df, notes
