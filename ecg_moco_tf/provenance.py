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
        raise ValueError(f"--task_name={name!r}: use letters, digits, '_', '.' or '-' (at most "
                         "40), e.g. --task_name=MI")
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
    return info


def write_provenance(out_dir, experiment, task_name, encoder_path=None):
    """``<out_dir>/provenance.json`` for the classifier saved there."""
    from . import __version__

    prov = {"task_name": task_name, "experiment": experiment, "ecg_moco_tf": __version__,
            "pretrained_encoder": encoder_provenance(encoder_path) if encoder_path else None}
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


def task_of(model_path, given=None):
    """``given`` (a --task_name) or the task recorded with the model, else "positive"."""
    return check_task_name(given or read_provenance(model_path).get("task_name") or
                           DEFAULT_TASK)
