"""ecg-moco-tf: MoCo pretraining of a 12-lead ECG encoder, fine-tuning for LVSD, Grad-CAM, export.

The data layer is imported eagerly (no TensorFlow); model, training and export names load
TensorFlow on first use (``ecg_moco_tf.MoCo`` etc.).
"""
import importlib
import os

# TensorFlow turns oneDNN kernels on by default only on some Intel CPUs; on others (AMD EPYC
# here) they double convolution throughput. Takes effect if TensorFlow is not imported yet.
# Same seed, same machine type: bit-identical runs with oneDNN on, also when two runs share the
# CPU (benchmarks/bench_determinism.py, tests/training/test_pretrain.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")   # the CLI keeps a user's choice
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .data import (LEADS, ManifestError, RecordError, SplitLeakageError,  # noqa: E402
                   assign_splits, experiment_view, load_records, read_manifest, read_record)

__version__ = "0.1.0"          # the one place (pyproject.toml reads it)

_LAZY = {
    "build_encoder": "models.encoder", "MoCo": "models.moco", "KeyQueue": "models.queue",
    "build_classifier": "models.classifier", "RandomAugment": "augment",
    "build_augmenter": "augment", "pretrain": "training.pretrain",
    "PretrainConfig": "training.pretrain", "finetune": "training.finetune",
    "FinetuneConfig": "training.finetune", "load_model": "models", "evaluate": "evaluation.metrics",
    "delong_test": "evaluation.metrics", "export_all": "export", "Predictor": "export",
    "load_pretrained": "pretrained",
    "make_strategy": "training.distribute",
}


__all__ = sorted(["LEADS", "ManifestError", "RecordError", "SplitLeakageError", "assign_splits",
                  "experiment_view", "load_records", "read_manifest", "read_record",
                  *_LAZY])


def __dir__():
    return sorted(set(globals()) | set(__all__))


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ecg_moco_tf' has no attribute '{name}'")
