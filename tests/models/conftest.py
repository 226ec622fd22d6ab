import numpy as np
import pytest

from ecg_moco_tf.models import build_encoder
from tests.sizes import SHORT


@pytest.fixture
def small_encoder():
    enc = build_encoder(**SHORT)
    return enc


@pytest.fixture
def views():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 12, 64)).astype("float32")
    return x, (x + 0.1 * rng.standard_normal(x.shape)).astype("float32")
