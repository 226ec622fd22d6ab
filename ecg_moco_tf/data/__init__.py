"""Data layer: readers, manifest, splits, synthetic cohort (no TensorFlow here but pipeline.py)."""
from .manifest import ManifestError, load_records, read_manifest, write_manifest
from .records import LEADS, ReadOptions, RecordError, read_record, write_wfdb
from .splits import (EXPERIMENTS, SplitLeakageError, assign_splits, check_patient_disjoint,
                     experiment_view, split_summary)
