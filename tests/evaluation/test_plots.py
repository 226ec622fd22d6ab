"""Figures a user reads: calibration with counts and a histogram, label efficiency."""
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve

from ecg_moco_tf.evaluation.plots import (calibration_bins, plot_calibration,
                                          plot_label_efficiency)


def test_calibration_bins_count_every_ecg_and_match_sklearn(rng):
    p = np.clip(rng.normal(0.4, 0.03, 105), 0, 1)            # clustered predictions
    y = (rng.random(105) < p).astype(int)
    mean_p, frac, count = calibration_bins(y, p, 10)
    frac_ref, mean_ref = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(mean_p, mean_ref)
    np.testing.assert_allclose(frac, frac_ref)
    assert count.sum() == 105 and count.min() >= 10


def test_calibration_and_label_efficiency_figures_are_written(rng, tmp_path):
    import matplotlib.image as mpimg

    p = np.clip(rng.normal(0.4, 0.03, 60), 0, 1)
    y = (rng.random(60) < p).astype(int)
    path = plot_calibration({"Proposed": (y, p, {"brier": 0.2})}, str(tmp_path / "c.png"),
                            task_name="MI")
    img = mpimg.imread(path)
    assert img.shape[0] > img.shape[1] > 500                 # curve above a histogram
    table = pd.DataFrame({"fraction": [0.05, 0.05, 0.1, 0.1] * 2, "seed": [0, 1] * 4,
                          "init": ["pretrained"] * 4 + ["scratch"] * 4,
                          "auc": [0.6, 0.62, 0.7, 0.72, 0.5, 0.55, 0.6, 0.61]})
    path = plot_label_efficiency(table, str(tmp_path / "le.png"), "MI")
    assert mpimg.imread(path).shape[1] > 600
