"""The task's name and where a classifier came from, for CSV columns, figures and model cards.

``--task_name`` (default "positive") names what the classifier detects ("MI", "LVSD"): the
probability column is ``p_<task>``, figures say ``P(<task>)``, and the model card states it.
Fine-tuning writes ``provenance.json`` beside ``classifier.keras`` (task, experiment, the
pretrained encoder and how it was chosen); ``export`` copies it into ``model_card.json``, and
``predict`` / ``explain`` read the task from either.
"""
from __future__ import annotations

import json
import os
import re

DEFAULT_TASK = "positive"
FILE = "provenance.json"


def check_task_name(name):
    """``name`` if it is a usable column/file name part (letters, digits, ``_ . -``)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", str(name or "")):
        raise ValueError(f"task_name={name!r}: use letters, digits, '_', '.' or '-' (at most "
                         "40), e.g. task_name=MI")
    return name


def prob_column(task_name):
    """The probability column of a task: ``p_<task>``."""
    return f"p_{task_name}"


def encoder_provenance(path):
    """What is known about a pretrained encoder file: the shipped name, its pretraining
    settings and how the epoch was chosen (``pretrain_config.json`` beside it)."""
    from .pretrained import HERE, SHIPPED

    info = {"path": os.path.abspath(path)}
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.dirname(folder) == HERE and os.path.basename(folder) in SHIPPED:
        info["shipped_name"] = os.path.basename(folder)
        info["card"] = "ecg_moco_tf/pretrained/" + os.path.basename(folder) + "/MODEL_CARD.md"
    cfg = os.path.join(folder, "pretrain_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            info["pretrain_config"] = json.load(f)
    info["selection"] = read_encoder_provenance(path)
    return info


def write_provenance(out_dir, experiment, task_name, encoder_path=None, threshold=None):
    """``<out_dir>/provenance.json`` for the classifier saved there (``threshold``: its
    decision threshold and where it was chosen, e.g. ``{"value": 0.41, "rule": "youden",
    "chosen_on": "valid2"}``)."""
    from . import __version__

    prov = {"task_name": task_name, "experiment": experiment, "ecg_moco_tf": __version__,
            "pretrained_encoder": encoder_provenance(encoder_path) if encoder_path else None,
            "decision_threshold": threshold}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, FILE), "w") as f:
        json.dump(prov, f, indent=1)
    return prov


def read_provenance(model_path):
    """The provenance of a model file or folder: ``provenance.json`` beside a ``.keras`` file,
    or the ``model_card.json`` of an export (beside a ``.tflite``, above ``savedmodel/``);
    {} when there is none."""
    folder = os.path.dirname(os.path.abspath(model_path).rstrip(os.sep))
    for name in (FILE, "model_card.json"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path) as f:
                d = json.load(f)
            if name == "model_card.json":
                d = {**(d.get("pretraining") or {}), "task_name": d.get("task", {}).get("name")}
            return {k: v for k, v in d.items() if v is not None}
    return {}


def stored_threshold(model_path):
    """(value, where it comes from) of the decision threshold stored with a model: the
    ``model_card.json`` of an export (beside a ``.tflite``, above ``savedmodel/``), else the
    validation threshold fine-tuning wrote to ``provenance.json`` beside a ``.keras``; (0.5,
    the reason) when there is none."""
    folder = os.path.dirname(os.path.abspath(model_path).rstrip(os.sep))
    card = os.path.join(folder, "model_card.json")
    if os.path.exists(card):
        with open(card) as f:
            t = json.load(f).get("threshold") or {}
        if t.get("value") is not None:
            return float(t["value"]), f"model_card.json: {t.get('set_by', 'set at export')}"
    t = (read_provenance(model_path).get("decision_threshold") or {})
    if t.get("value") is not None:
        return float(t["value"]), (f"stored at fine-tuning: {t.get('rule', '')} on "
                                   f"{t.get('chosen_on', 'validation')}, {FILE}")
    return 0.5, "0.5: no threshold is stored with the model"


def task_of(model_path, given=None):
    """``given`` (a --task_name) or the task recorded with the model, else "positive"."""
    return check_task_name(given or read_provenance(model_path).get("task_name") or
                           DEFAULT_TASK)


# --- pretrained encoders: how they were chosen and what they saw -------------------------------
#: the member of an encoder's ``.keras`` zip that holds its provenance (Keras ignores it)
ENCODER_MEMBER = "ecg_moco_provenance.json"
RECORDS_FILE = "pretrain_records.csv"
#: labels an encoder-selection rule reads (the representation monitor: probe fitted on train2,
#: scored on valid2)
LABELS_SEEN = {"monitor": ["train2", "valid2"], "last": [], "val_loss": []}


def manifest_hash(df):
    """sha256 of a manifest's (record, patient_id, split) rows, order-independent."""
    return hashlib_of(sorted(f"{r}\t{p}\t{s}" for r, p, s in zip(
        df["record"].astype(str), df["patient_id"].astype(str), df["split"].astype(str))))


def file_sha256(path):
    """sha256 of a file's bytes."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def hashlib_of(lines):
    """sha256 of lines of text."""
    import hashlib

    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def signal_hash(x):
    """Fingerprint of one standardized ECG ((12, 5000) mV): sha1 of its values rounded to
    whole microvolts, so that the same recording read again (any reader, any path) matches."""
    import hashlib

    import numpy as np

    return hashlib.sha1(np.round(np.asarray(x, np.float64) * 1000).astype(np.int32)
                        .tobytes()).hexdigest()[:20]


def signal_hashes(df, options=None, progress=False):
    """:func:`signal_hash` of every record of a manifest (``None`` where it cannot be read)."""
    from tqdm import tqdm

    from .data.manifest import read_row
    from .data.records import ReadOptions, RecordError

    out = []
    for _, row in tqdm(df.iterrows(), total=len(df), desc="fingerprinting ECGs",
                       disable=not progress, unit="ecg"):
        try:
            out.append(signal_hash(read_row(df, row, options or ReadOptions())))
        except RecordError:
            out.append(None)
    return out


def pretrain_records(df, options=None):
    """The table an encoder ships beside it: one row per pretraining ECG (``record``,
    ``patient_id``, ``split``, ``ecg_id`` / ``strat_fold`` where the manifest has them,
    ``source``: the manifest's, else for a manifest with a pretraining pool (``ecg-moco ptbxl
    --ptbxl_pool``) "pool" or "labelled data", else the manifest's root folder, and
    ``signal_sha1``)."""
    import numpy as np

    df = df.copy()
    if "source" not in df:
        df["source"] = (np.where(df["pretraining_pool"] == 1, "pool", "labelled data")
                        if "pretraining_pool" in df else
                        os.path.basename(os.path.normpath(df.attrs.get("root", "."))))
    cols = [c for c in ("record", "ecg_id", "patient_id", "strat_fold", "source", "split")
            if c in df]
    out = df[cols].reset_index(drop=True).copy()
    out["signal_sha1"] = signal_hashes(df, options)
    return out


def encoder_record(selected_by, epoch, train_df=None, valid_df=None, data_hash=None, **extra):
    """The provenance of a pretrained encoder: how its epoch was chosen and on what data."""
    from . import __version__

    if data_hash is None and train_df is not None:
        import pandas as pd

        data_hash = manifest_hash(pd.concat([train_df, valid_df]))
    seen = LABELS_SEEN[selected_by]
    return {"selected_by": selected_by, "epoch": epoch, "labels_seen": bool(seen),
            "labels_seen_splits": seen, "pretrain_data_sha256": data_hash,
            "ecg_moco_tf": __version__, **extra}


def embed_encoder_provenance(path, record):
    """Write ``record`` into the ``.keras`` file at ``path`` (a zip; Keras ignores the extra
    member), replacing an earlier one."""
    import shutil
    import tempfile
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(i, z.read(i)) for i in z.infolist() if i.filename != ENCODER_MEMBER]
    tmp = tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)),
                                      suffix=".keras", delete=False).name
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            z.writestr(info, data)
        z.writestr(ENCODER_MEMBER, json.dumps(record, indent=1, default=str))
    shutil.move(tmp, path)


def read_encoder_provenance(path):
    """An encoder's provenance: the record inside its ``.keras`` file, else one made from the
    ``pretrain_config.json`` beside it (``selected_by`` / ``best_epoch``), else ``{}``
    (unknown: an encoder built elsewhere)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            if ENCODER_MEMBER in z.namelist():
                return json.loads(z.read(ENCODER_MEMBER))
    except (OSError, zipfile.BadZipFile):
        return {}
    cfg = os.path.join(os.path.dirname(os.path.abspath(path)), "pretrain_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            c = json.load(f)
        by = c.get("selected_by") or c.get("select")
        if by in LABELS_SEEN:
            return encoder_record(by, c.get("best_epoch"), data_hash=None,
                                  inferred_from="pretrain_config.json")
    return {}


def check_label_efficiency_encoder(path, allow_unknown=False):
    """Refuse (``ValueError``, one line) an encoder whose epoch was chosen with downstream
    labels: its few-label arms would carry every train2 label in the choice; and, unless
    ``allow_unknown``, one without provenance (how it was chosen is unknown)."""
    prov = read_encoder_provenance(path)
    if not prov and not allow_unknown:
        raise ValueError(
            f"--encoder={path} carries no provenance: how its epoch was chosen (perhaps with "
            "downstream labels) is unknown. Pretrain it with `ecg-moco pretrain "
            "--select_encoder=last` (which records it), or pass --allow_unknown_encoder to run "
            "the label-efficiency study anyway (the report marks it)")
    if prov.get("labels_seen"):
        raise ValueError(
            f"--encoder={path} was chosen by {prov.get('selected_by')} with the labels of "
            f"{'/'.join(prov.get('labels_seen_splits') or ['downstream'])}: a label-efficiency "
            "study would then use every train2 label in its few-label arms. Pretrain with "
            "--select_encoder=last (or val_loss), or let reproduce pretrain (it does so)")
    return prov


def encoder_records(path):
    """The ``pretrain_records.csv`` shipped beside an encoder (DataFrame), or None."""
    import pandas as pd

    f = os.path.join(os.path.dirname(os.path.abspath(path)), RECORDS_FILE)
    return pd.read_csv(f, dtype={"patient_id": str}) if os.path.exists(f) else None


def seen_in_pretraining(encoder_path, df, options=None):
    """How many ECGs of ``df`` the encoder at ``encoder_path`` was pretrained on: matched by
    ``ecg_id`` where both tables have it, otherwise by :func:`signal_hash` (reads ``df``'s
    records). Returns (count, how) or (0, None) when the encoder lists no records."""
    seen = encoder_records(encoder_path)
    if seen is None or not len(df):
        return 0, None
    if "ecg_id" in df and "ecg_id" in seen and seen["ecg_id"].notna().all():
        ids = set(pd_int(seen["ecg_id"]).dropna())
        return int(pd_int(df["ecg_id"]).isin(ids).sum()), "ecg_id"
    hashes = set(seen["signal_sha1"].dropna())
    return sum(h in hashes for h in signal_hashes(df, options)), "signal hash"


def pd_int(s):
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").astype("Int64")


def warn_if_seen(encoder_path, df, what="fine-tuning/test", options=None):
    """Print a warning naming how many ECGs of ``df`` the encoder was pretrained on."""
    import sys

    n, how = seen_in_pretraining(encoder_path, df, options)
    if n:
        print(f"warning: {n} of the {len(df)} {what} ECGs were in the pretraining data of "
              f"encoder={encoder_path} (matched by {how}; its {RECORDS_FILE} lists them): "
              "results on them are not independent of pretraining", file=sys.stderr)
    return n


def run_info():
    """The command line, UTC date, package version and git commit (with ``+dirty`` when the
    work tree has changes; None outside a checkout) of the running process."""
    import datetime
    import subprocess
    import sys

    from . import __version__

    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return {"command": " ".join(["ecg-moco" if sys.argv[0].endswith(("ecg-moco", "main.py"))
                                 else sys.argv[0], *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "ecg_moco_tf": __version__, "commit": commit}
