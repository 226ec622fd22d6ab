"""ecg-moco-tf: MoCo pretraining of a 12-lead ECG encoder, fine-tuning for LVSD, Grad-CAM, export."""
from .data import (LEADS, ManifestError, RecordError, SplitLeakageError, assign_splits,
                   experiment_view, load_records, read_manifest, read_record)

__version__ = "0.1.0"
