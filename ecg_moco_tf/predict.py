"""Batch inference over records with the training readers and validation.

Inputs: one record file, a folder (WFDB ``*.hea``, ``*.npz``, ``*.h5``/``*.hdf5``, searched
recursively) or a manifest (``.csv``/``.parquet``). Every record gets a row: its probability
and decision at the threshold, or the reason it could not be read (never silently skipped).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data.folder import find_records
from .data.manifest import REQUIRED, check_manifest, read_manifest, read_row
from .data.records import (ReadOptions, RecordError, derived_note, lead_consistency,
                           plausibility)
from .export import Predictor, check_input

MANIFEST_COLUMNS = ("patient_id", "label", "split")   # copied to predict's output, in front


def record_table(path, required=REQUIRED):
    """A manifest for a file, folder or manifest path (record paths relative to
    ``attrs['root']``; records outside a manifest are unlabelled, patient_id = record name).
    ``required``: the columns a manifest must have (see :func:`read_manifest`)."""
    if path.endswith((".csv", ".parquet")):
        return read_manifest(path, required=required)
    if os.path.isdir(path):
        names, root = find_records(path), path
    elif os.path.exists(path) or os.path.exists(path + ".hea"):
        root = os.path.dirname(os.path.abspath(path))
        name = os.path.basename(path)
        names = [name[:-4] if name.endswith(".hea") else name]
    else:
        raise FileNotFoundError(f"{path} not found")
    df = pd.DataFrame({"record": names, "patient_id": names})
    df.attrs["root"] = os.path.abspath(root)
    return check_manifest(df, source=path)


def input_table(path, split=None):
    """The records to score and the manifest columns to copy to the output.

    A manifest needs only ``record``; its ``patient_id``, ``label`` and ``split`` (when it has
    them) and every other column are kept. ``split``: only its rows (None: all rows)."""
    df = record_table(path, required=("record",))
    is_manifest = path.endswith((".csv", ".parquet"))
    if split:
        if not is_manifest:
            raise ValueError(f"--split={split} needs a manifest as --input, not {path}")
        root = df.attrs["root"]
        df = df[df["split"] == split].reset_index(drop=True)
        df.attrs["root"] = root
        if not len(df):
            raise ValueError(f"{path} has no rows with split {split!r}: choose another --split "
                             "or leave it empty to score every row")
    if not is_manifest:
        return df, []
    keep = [c for c in df.columns if c != "record" and not (c in ("label", "split")
                                                           and df[c].isna().all())]
    keep = [c for c in MANIFEST_COLUMNS if c in keep] + [c for c in keep
                                                          if c not in MANIFEST_COLUMNS]
    return df, keep


def predict_records(model_path, input_path, threshold=None, batch_size=32,
                    options=ReadOptions(), progress=True, split=None, column="probability"):
    """Score every record; returns a DataFrame: record, the manifest's own columns (when the
    input is a manifest: patient_id, label, split, then the others), ``column`` (the
    probability), decision, warning (what ``validate`` would warn about: implausible lead
    amplitudes, limb leads breaking Einthoven's law; the ECG is still scored), error.
    ``split``: score only that split's rows. ``threshold``: default the one stored with the
    model (:func:`~ecg_moco_tf.provenance.stored_threshold`: its card's, or the validation
    threshold of fine-tuning), else 0.5."""
    from .provenance import stored_threshold

    predictor = Predictor(model_path)               # a missing model first, before any reading
    if threshold is None:
        threshold, _ = stored_threshold(model_path)
    df, keep = input_table(input_path, split)
    prob = np.full(len(df), np.nan)
    errors, warnings = [""] * len(df), [""] * len(df)
    derived = 0
    batch, idx = [], []

    def flush():
        if batch:
            prob[idx] = predictor(np.stack(batch), batch_size)
            batch.clear()
            idx.clear()

    for i, (_, row) in enumerate(tqdm(df.iterrows(), total=len(df), desc="scoring",
                                      unit="ecg", disable=not progress)):
        info = {}
        try:
            x = read_row(df, row, options, info=info)
            check_input(x, predictor.input_shape)      # e.g. microvolts stored as mV
        except RecordError as e:
            errors[i] = e.detail
            continue
        except ValueError as e:
            errors[i] = str(e)
            continue
        derived += bool(info.get("derived_limb_leads"))
        warnings[i] = "; ".join(plausibility(x, info["fs"]) + lead_consistency(x))
        batch.append(x)
        idx.append(i)
        if len(batch) == batch_size:
            flush()
    flush()
    if derived:
        print(derived_note(derived, len(df)))
    clash = [c for c in keep if c in (column, "decision", "warning", "error")]
    if clash:
        print(f"warning: the input's column(s) {', '.join(clash)} are named like predict's "
              f"output: kept as {', '.join('manifest_' + c for c in clash)}", file=sys.stderr)
    out = df[["record"] + keep].rename(columns={c: f"manifest_{c}" for c in clash})
    out = out.reset_index(drop=True)
    out[column] = prob
    out["decision"] = pd.array([pd.NA if np.isnan(p) else int(p >= threshold) for p in prob],
                               dtype="Int64")
    out["warning"] = warnings
    out["error"] = errors
    return out
