"""ecg-moco-tf: MoCo pretraining of a 12-lead ECG encoder, fine-tuning for LVSD, Grad-CAM, export."""
import os

# TensorFlow turns oneDNN kernels on by default only on some Intel CPUs; on others (AMD EPYC
# here) they double convolution throughput. Takes effect if TensorFlow is not imported yet.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from .data import (LEADS, ManifestError, RecordError, SplitLeakageError, assign_splits,
                   experiment_view, load_records, read_manifest, read_record)

__version__ = "0.1.0"
