import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # before TensorFlow loads (see ecg_moco_tf)

import numpy as np
import pytest

LOGICAL_CPUS = 2


def _split_cpu(n=LOGICAL_CPUS):
    """Split the CPU into ``n`` logical devices, so that MirroredStrategy has ``n`` replicas
    (tests/training/test_distribute.py). TensorFlow accepts this only before it initializes
    its devices: conftest is imported by every pytest process (xdist workers included) before
    any test runs. Other tests are unaffected: ops stay on /cpu:0 and the thread pools are
    shared by the logical devices."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


_split_cpu()

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
    # valid2 and test with at least 2 ECGs of each class (the experiments refuse fewer)
    df = splits.assign_splits(df, seed=3, fractions=splits.SplitFractions(valid2=0.15, test=0.2))
    path = manifest.write_manifest(df, os.path.join(out, "manifest.csv"))
    return manifest.read_manifest(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
