import numpy as np
import pytest

from ecg_moco_tf.models import build_encoder

SMALL = dict(kernel_sizes=(3, 3), filters=(4, 4), pools=(2, 2), spatial_filters=8,
             feature_dim=16, num_samples=64)


@pytest.fixture
def small_encoder():
    enc = build_encoder(**SMALL)
    return enc


@pytest.fixture
def views():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 12, 64)).astype("float32")
    return x, (x + 0.1 * rng.standard_normal(x.shape)).astype("float32")
