"""The augmentation preview: every transform visible, its parameters in the panel title."""
import numpy as np

from ecg_moco_tf import augment
from ecg_moco_tf.data.synthetic import CohortConfig, generate
from ecg_moco_tf.explain.augplot import _draw, _label, plot_augmentations


def test_titles_state_the_parameters_that_were_applied(tmp_path):
    x = generate(CohortConfig(num_patients=1, seed=0))[0][0]
    rng, li, n = np.random.default_rng(0), 1, 2000
    y, pinned = _draw(augment.RandomErasing, x, 0, 500, rng, n, li)
    label = _label("RandomErasing", pinned, x, y, li, "II", 500)
    t0, t1 = (float(v) for v in label.split()[1].split("-"))
    assert 0 <= t0 < t1 <= n / 500                     # inside the drawn 4 s
    assert not np.any(y[:, round(t0 * 500) + 3:round(t1 * 500) - 3])   # erased, every lead
    y, pinned = _draw(augment.GaussianNoise, x, 0, 500, rng, n, li)
    std = float(pinned.split()[2])
    assert abs(np.std(y - x) - std) < 0.1 * std           # the std the title gives
    y, pinned = _draw(augment.MuscleNoise, x, 0, 500, rng, n, li)
    assert float(_label("MuscleNoise", pinned, x, y, li, "II", 500).split()[-2]) > 0.02
    path = plot_augmentations(x, str(tmp_path / "aug.png"), seed=0)
    import matplotlib.image as mpimg

    assert mpimg.imread(path).shape[0] > 1000               # 10 panels
