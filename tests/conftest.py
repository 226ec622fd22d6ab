import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # before TensorFlow loads (see ecg_moco_tf)

import numpy as np
import pytest

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                           "data"))


def shared(sub):
    """Path of a folder in ../shared/data, or skip the test with the reason."""
    path = os.path.join(SHARED_DATA, sub)
    if not os.path.isdir(path):
        pytest.skip(f"real ECG data not present at {path} (../shared/data is optional)")
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A small synthetic cohort on disk (WFDB + manifest with splits)."""
    from ecg_moco_tf.data import manifest, splits, synthetic

    out = tmp_path_factory.mktemp("cohort")
    df = synthetic.write_cohort(str(out), synthetic.CohortConfig(num_patients=60, seed=3),
                                progress=False)
    df = splits.assign_splits(df, seed=3)
    path = manifest.write_manifest(df, os.path.join(out, "manifest.csv"))
    return manifest.read_manifest(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
