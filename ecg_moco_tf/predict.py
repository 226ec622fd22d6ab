"""Batch inference over records with the training readers and validation.

Inputs: one record file, a folder (WFDB ``*.hea``, ``*.npz``, ``*.h5``/``*.hdf5``, searched
recursively) or a manifest (``.csv``/``.parquet``). Every record gets a row: its probability
and decision at the threshold, or the reason it could not be read (never silently skipped).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data.manifest import check_manifest, read_manifest, read_row
from .data.records import ReadOptions, RecordError
from .export import Predictor, check_input

RECORD_PATTERNS = ("*.hea", "*.npz", "*.h5", "*.hdf5")


def record_table(path):
    """A manifest for a file, folder or manifest path (record paths relative to
    ``attrs['root']``; records outside a manifest are unlabelled, patient_id = record name)."""
    if path.endswith((".csv", ".parquet")):
        return read_manifest(path)
    if os.path.isdir(path):
        files = sorted({f for pat in RECORD_PATTERNS
                        for f in glob.glob(os.path.join(path, "**", pat), recursive=True)})
        if not files:
            raise FileNotFoundError(f"no records ({', '.join(RECORD_PATTERNS)}) under {path}")
        root = path
    elif os.path.exists(path) or os.path.exists(path + ".hea"):
        root, files = os.path.dirname(os.path.abspath(path)), [os.path.abspath(path)]
    else:
        raise FileNotFoundError(f"{path} not found")
    names = [os.path.relpath(f[:-4] if f.endswith(".hea") else f, root) for f in files]
    df = pd.DataFrame({"record": names, "patient_id": names})
    df.attrs["root"] = os.path.abspath(root)
    return check_manifest(df, source=path)


def _sources(path):
    """(display name, reader) pairs for a file, folder or manifest."""
    df = record_table(path)
    return [(row["record"], (lambda row=row, o=None: read_row(df, row, o)))
            for _, row in df.iterrows()]


def predict_records(model_path, input_path, threshold=0.5, batch_size=32,
                    options=ReadOptions(), progress=True):
    """Score every record; returns a DataFrame (record, probability, decision, error)."""
    predictor = Predictor(model_path)
    rows, batch, names = [], [], []

    def flush():
        if batch:
            for n, p in zip(names, predictor(np.stack(batch), batch_size)):
                rows.append({"record": n, "probability": float(p),
                             "decision": int(p >= threshold), "error": ""})
            batch.clear()
            names.clear()

    for name, read in tqdm(_sources(input_path), desc="scoring", unit="ecg",
                           disable=not progress):
        try:
            x = read(o=options)
            check_input(x, predictor.input_shape)      # e.g. microvolts stored as mV
        except RecordError as e:
            rows.append({"record": name, "probability": np.nan, "decision": pd.NA,
                         "error": e.problem + (f" -> {e.fix}" if e.fix else "")})
            continue
        except ValueError as e:
            rows.append({"record": name, "probability": np.nan, "decision": pd.NA,
                         "error": str(e)})
            continue
        batch.append(x)
        names.append(name)
        if len(batch) == batch_size:
            flush()
    flush()
    return pd.DataFrame(rows, columns=["record", "probability", "decision", "error"])
