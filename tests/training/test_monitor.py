import json
import math
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.augment import build_augmenter
from ecg_moco_tf.data import experiment_view, load_records
from ecg_moco_tf.data import pipeline as P
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.training.callbacks import SaveBest
from ecg_moco_tf.training.monitor import (KEYS, PROBE_CS, RepresentationMonitor,
                                          alignment_uniformity, knn_scores, probe_auc,
                                          probe_scores)
from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain

from tests.sizes import TINY


# ------------------------------------------------------------------------- pure functions
def test_probe_scores_on_separable_features_give_auc_1():
    train = np.array([[1, 0.1], [1, -0.1], [-1, 0.2], [-1, -0.2]], float)
    train_y = np.array([1, 1, 0, 0])
    valid = np.array([[2, 0.3], [-3, 0.1], [0.5, -1], [-0.4, 1]])
    valid_y = np.array([1, 0, 1, 0])
    s = probe_scores(train, train_y, valid, valid_y, k=2)
    assert (s["knn_auc"], s["probe_auc"]) == (1.0, 1.0) and s["probe_C"] in PROBE_CS


def _probe_data(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    x = rng.normal(0, 1, (n, 30))
    x[:, :3] += 1.5 * y[:, None]                          # 3 informative of 30 features
    return x, y


def test_cv_probe_chooses_C_on_the_fitting_split_only():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _probe_data(160, seed=0)
    xv, yv = _probe_data(200, seed=1)
    r = probe_auc(x, y, xv, yv, seed=0)
    assert r["C"] in PROBE_CS and r["auc"] > 0.9           # separable enough: a good probe
    # scoring other valid / test data (shuffled labels, other features) leaves C as it is
    rng = np.random.default_rng(2)
    other = probe_auc(x, y, rng.normal(0, 1, (50, 30)), rng.permutation(yv)[:50], seed=0)
    assert other["C"] == r["C"] and probe_auc(x, y, xv, yv, seed=0) == r     # deterministic
    # the C of an independent 5-fold CV (AUC; ties: the smaller C) on train alone
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))

    def cv_auc(C):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10000))
        return np.mean([roc_auc_score(y[te], m.fit(x[tr], y[tr]).predict_proba(x[te])[:, 1])
                        for tr, te in folds])

    scores = [cv_auc(C) for C in PROBE_CS]
    assert r["C"] == PROBE_CS[int(np.argmax(scores))]
    # features whose signal needs two weights that cancel a shared noise: weak regularization
    # wins, and the CV finds it (the strongest C of the grid misses the cancellation)
    z, zv = rng.normal(0, 3, 160), rng.normal(0, 3, 200)
    x2, xv2 = x.copy(), xv.copy()
    x2[:, 0], x2[:, 1] = 0.7 * y + z, z + 0.3 * rng.normal(0, 1, 160)
    xv2[:, 0], xv2[:, 1] = 0.7 * yv + zv, zv + 0.3 * rng.normal(0, 1, 200)
    weak = probe_auc(x2, y, xv2, yv)
    assert weak["C"] >= 1 and weak["auc"] > 0.8
    assert probe_auc(x2, y, xv2, yv, C=PROBE_CS[0])["auc"] < weak["auc"] - 0.05
    # with fewer than 2 ECGs of a class there is nothing to cross-validate: C = 1
    assert probe_auc(x[:4], [1, 0, 0, 0], xv, yv)["C"] == 1.0


def test_knn_scores_are_fraction_of_positive_cosine_neighbours():
    # cosine, not Euclidean: [10, 0] is as close to [1, 0] as [0.1, 0]
    train = np.array([[10, 0], [0, 1], [1, 1], [-1, 0]], float)
    train_y = np.array([1, 0, 1, 0])
    valid = np.array([[0.1, 0], [0, -1]], float)
    # [0.1, 0]: cosines 1, 0, .707, -1 -> nearest 2: rows 0, 2 -> 2/2; 3 -> rows 0, 2, 1 -> 2/3
    np.testing.assert_allclose(knn_scores(train, train_y, valid, k=2)[0], 1.0)
    np.testing.assert_allclose(knn_scores(train, train_y, valid, k=3)[0], 2 / 3)
    # [0, -1]: cosines 0, -1, -.707, 0 -> nearest 2 (ties by order): rows 0, 3 -> 1/2
    np.testing.assert_allclose(knn_scores(train, train_y, valid, k=2)[1], 0.5)
    assert knn_scores(train, train_y, valid, k=20).tolist() == [0.5, 0.5]   # k capped at 4


def test_probe_scores_refuse_one_class():
    x = np.eye(4)
    with pytest.raises(ValueError, match="valid needs both classes, has 4 negative and 0"):
        probe_scores(x, [0, 1, 0, 1], x, [0, 0, 0, 0])


def test_alignment_and_uniformity_by_hand():
    e1, e2 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    z = np.stack([e1, e2, -e1])
    align, unif = alignment_uniformity(z, z)
    assert align == 0.0
    # squared distances of the pairs: |e1-e2|^2 = 2, |e1+e1|^2 = 4, |e2+e1|^2 = 2
    assert unif == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))
    # unnormalized input is L2-normalized first; alignment: mean ||a_i - b_i||^2
    za = np.stack([3 * e1, e2, e1, e2])
    zb = np.stack([e1, 2 * e2, -e1, e1])
    align, unif = alignment_uniformity(za, zb)
    assert align == pytest.approx((0 + 0 + 4 + 2) / 4)
    # view a: pairs (e1,e2) 2, (e1,e1) 0, (e1,e2) 2, (e2,e1) 2, (e2,e2) 0, (e1,e2) 2
    ua = math.log((4 * math.exp(-4) + 2 * 1) / 6)
    # view b: (e1,e2) 2, (e1,-e1) 4, (e1,e1) 0, (e2,-e1) 2, (e2,e1) 2, (-e1,e1) 4
    ub = math.log((1 + 3 * math.exp(-4) + 2 * math.exp(-8)) / 6)
    assert unif == pytest.approx((ua + ub) / 2)


# ------------------------------------------------------------------------------ callback
class _Identity:
    """An 'encoder' whose features are its input (predict only)."""

    def predict(self, x, batch_size=None, verbose=0):
        return np.asarray(x, np.float32)


def test_monitor_logs_every_n_epochs_and_nan_in_between():
    x = np.array([[1, 0.1], [1, -0.1], [-1, 0.2], [-1, -0.2]], np.float32)
    y = np.array([1, 1, 0, 0])
    mon = RepresentationMonitor(lambda: _Identity(), x, y, x, y, every=2, k=2,
                                views=(x, x))
    mon.set_params({"epochs": 5})
    rows = []
    for epoch in range(5):
        logs = {"loss": 1.0}
        mon.on_epoch_end(epoch, logs)
        rows.append(logs)
    assert all(set(KEYS) <= set(r) for r in rows)
    due = [not math.isnan(r["monitor_probe_auc"]) for r in rows]
    assert due == [False, True, False, True, True]          # every 2nd and the last
    assert rows[1]["monitor_knn_auc"] == 1.0 and rows[1]["monitor_alignment"] == 0.0


def test_one_class_monitor_split_disables_with_a_warning():
    x = np.eye(4, dtype=np.float32)
    with pytest.warns(UserWarning, match="split valid needs both classes, has 0 negative and 4"):
        mon = RepresentationMonitor(lambda: _Identity(), x, [0, 1, 0, 1], x, [1, 1, 1, 1])
    assert not mon.enabled
    logs = {"loss": 1.0}
    mon.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}
    with pytest.warns(UserWarning, match="split train needs both classes, has 0 negative and 0"):
        RepresentationMonitor(lambda: _Identity(), x[:0], [], x, [0, 1, 0, 1])


def test_save_best_max_mode_and_last(tmp_path):
    saved = []

    class Model:
        def save(self, path):
            saved.append(path)

    best = SaveBest(str(tmp_path / "m.keras"), Model, monitor="auc", mode="max")
    for epoch, auc in enumerate([0.6, float("nan"), 0.8, 0.7]):
        best.on_epoch_end(epoch, {"auc": auc, "val_loss": 1.0})
    assert (best.best, best.best_epoch, len(saved)) == (0.8, 3, 2)
    last = SaveBest(str(tmp_path / "m.keras"), Model, monitor=None)
    for epoch in range(3):
        last.on_epoch_end(epoch, {"val_loss": 1.0 + epoch})
    assert last.best_epoch == 3 and last.best_logs["val_loss"] == 3.0 and len(saved) == 5


# ------------------------------------------------------------------------------ pipeline
def test_fixed_validation_views_repeat_across_epochs(small_cohort):
    aug = build_augmenter(seed=0)
    valid = P.manifest_dataset(small_cohort.iloc[:16], cache="")
    fixed = P.two_view(valid, aug, batch_size=8, seed=1, fixed=True)
    first, second = list(fixed), list(fixed)
    assert len(first) == 2
    for (q1, k1), (q2, k2) in zip(first, second):
        np.testing.assert_array_equal(q1, q2)
        np.testing.assert_array_equal(k1, k2)
        assert not np.array_equal(q1, k1)                    # still two different views
    fresh = P.two_view(valid, aug, batch_size=8, seed=1)
    a, b = next(iter(fresh))[0], next(iter(fresh))[0]
    assert not np.array_equal(a, b)                           # training views: new each epoch


# ------------------------------------------------------------------------------ pretrain
def _cfg(**kw):
    return PretrainConfig(epochs=2, batch_size=8, queue_size=16, momentum=0.9, verbose=0, **kw)


def test_pretrain_with_monitor_logs_curves_and_saves_the_selected_encoder(small_cohort,
                                                                          tmp_path):
    view = experiment_view(small_cohort, "proposed")
    out = tmp_path / "pre"
    x = load_records(view["valid"], progress=False).signals
    outputs = []

    class Snapshot(keras.callbacks.Callback):      # the encoder's outputs after each epoch
        def on_epoch_end(self, epoch, logs=None):
            outputs.append(self.model.encoder.predict(x, verbose=0))

    keras.utils.set_random_seed(0)
    moco, hist = pretrain(view["pretrain_train"], view["pretrain_valid"], str(out),
                          _cfg(select="monitor"), encoder=build_encoder(**TINY),
                          extra_callbacks=[Snapshot()], monitor_train_df=view["train"],
                          monitor_valid_df=view["valid"])
    log = pd.read_csv(out / "pretrain_log.csv")
    assert list(log["epoch"]) == [1, 2]                  # 1-based, as on the console
    for key in KEYS:
        assert key in log and np.isfinite(log[key]).all(), key
        assert len(hist[key]) == 2
    assert ((log["monitor_knn_auc"] >= 0) & (log["monitor_knn_auc"] <= 1)).all()
    assert (log["monitor_alignment"] >= 0).all() and (log["monitor_uniformity"] <= 0).all()
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert saved["selected_by"] == "monitor" and saved["select"] == "monitor"
    i = int(log["monitor_probe_auc"].idxmax())               # first of equal bests
    assert saved["best_epoch"] == i + 1
    assert saved["selected_value"] == pytest.approx(log["monitor_probe_auc"][i])
    assert saved["best_val_loss"] == pytest.approx(log["val_loss"][i])
    assert not np.allclose(outputs[0], outputs[1])           # the epochs' encoders differ
    enc = keras.saving.load_model(out / "encoder.keras")
    np.testing.assert_allclose(enc.predict(x, verbose=0), outputs[i], rtol=1e-5, atol=1e-6)


def test_select_last_saves_the_final_encoder(small_cohort, tmp_path):
    view = experiment_view(small_cohort, "proposed")
    out = tmp_path / "pre"
    keras.utils.set_random_seed(0)
    moco, _ = pretrain(view["pretrain_train"], view["pretrain_valid"], str(out),
                       _cfg(select="last", monitor_every=2), encoder=build_encoder(**TINY),
                       monitor_train_df=view["train"], monitor_valid_df=view["valid"])
    log = pd.read_csv(out / "pretrain_log.csv")
    assert log["monitor_probe_auc"].isna().tolist() == [True, False]      # every 2nd epoch
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert (saved["selected_by"], saved["best_epoch"], saved["selected_value"]) == ("last", 2,
                                                                                    None)
    x = load_records(view["valid"], progress=False).signals
    enc = keras.saving.load_model(out / "encoder.keras")
    np.testing.assert_allclose(enc.predict(x, verbose=0), moco.encoder.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_one_class_monitor_split_warns_and_falls_back_to_last(small_cohort, tmp_path, capsys):
    view = experiment_view(small_cohort, "proposed")
    negatives = view["valid"][view["valid"]["label"] == 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path), _cfg(),
                 encoder=build_encoder(**TINY), monitor_train_df=view["train"],
                 monitor_valid_df=negatives)
    said = [str(w.message) for w in caught if "representation monitor" in str(w.message)]
    assert len(said) == 1 and f"has {len(negatives)} negative and 0 positive" in said[0]
    assert "split valid" in said[0]
    assert "keeping the last epoch's encoder" in capsys.readouterr().out
    log = pd.read_csv(tmp_path / "pretrain_log.csv")
    assert list(log["epoch"]) == [1, 2] and not any(k in log for k in KEYS)
    saved = json.loads((tmp_path / "pretrain_config.json").read_text())
    assert saved["selected_by"] == "last" and saved["best_epoch"] == 2


def test_plot_monitor_skips_nan_epochs_and_needs_monitor_values(tmp_path):
    from ecg_moco_tf.evaluation.plots import plot_monitor

    nan = float("nan")
    log = pd.DataFrame({"epoch": [0, 1, 2], "loss": [5.0, 4.0, 3.0],
                        "monitor_probe_auc": [nan, 0.7, 0.8], "monitor_knn_auc": [nan, 0.6, 0.7],
                        "monitor_alignment": [nan, 0.5, 0.4],
                        "monitor_uniformity": [nan, -1.0, -1.5]})
    log.to_csv(tmp_path / "log.csv", index=False)
    path = plot_monitor(tmp_path / "log.csv", tmp_path / "monitor.png", selected_epoch=3,
                        selected_by="monitor")
    assert path == tmp_path / "monitor.png" and (tmp_path / "monitor.png").stat().st_size > 1000
    log[["epoch", "loss"]].to_csv(tmp_path / "plain.csv", index=False)
    assert plot_monitor(tmp_path / "plain.csv", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_pretrain_cli_monitors_train2_valid2_with_its_flags(small_cohort, tmp_path):
    import os
    import subprocess
    import sys

    manifest_csv = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "pretrain",
                        f"--manifest={manifest_csv}", f"--out={tmp_path}", "--epochs=2",
                        "--batch_size=8", "--queue_size=16", "--momentum=0.9",
                        "--kernel_sizes=5,3", "--filters=4,8", "--pools=8,8",
                        "--spatial_filters=8", "--feature_dim=16", "--monitor_every=2",
                        "--select_encoder=val_loss"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = pd.read_csv(tmp_path / "pretrain_log.csv")
    assert log["monitor_probe_auc"].isna().tolist() == [True, False]
    saved = json.loads((tmp_path / "pretrain_config.json").read_text())
    i = int(log["val_loss"].idxmin())
    assert (saved["selected_by"], saved["monitor_every"], saved["best_epoch"]) == ("val_loss", 2,
                                                                                   i + 1)
    assert saved["selected_value"] == pytest.approx(log["val_loss"][i])


def test_probe_cv_folds_keep_each_patient_whole(monkeypatch, rng):
    """With patient ids, no patient's ECGs are on both sides of a cross-validation fold (a
    twin ECG in the other fold would reward memorising C)."""
    from sklearn.model_selection import GridSearchCV

    from ecg_moco_tf.training.monitor import fit_probe

    x = rng.normal(size=(80, 6))
    groups = np.repeat(np.arange(40), 2).astype(str)             # two ECGs per patient
    y = np.repeat(np.arange(40) % 2, 2)
    seen = []
    fit = GridSearchCV.fit

    def spy(self, X, y=None, groups=None, **kw):
        seen.append([(set(groups[a]), set(groups[b])) if groups is not None else None
                     for a, b in self.cv.split(X, y, groups)])
        return fit(self, X, y, groups=groups, **kw)

    monkeypatch.setattr(GridSearchCV, "fit", spy)
    fit_probe(x, y, groups=groups)
    assert seen[-1] and all(not (a & b) for a, b in seen[-1])
    fit_probe(x, y)                                               # without ids: by ECG
    assert seen[-1] == [None] * len(seen[-1])
    few = np.r_[np.ones(9), np.zeros(30)].astype(int)             # 3 positive patients x 3
    ids = np.r_[np.repeat(["a", "b", "c"], 3), [f"n{i}" for i in range(30)]]
    _, C = fit_probe(rng.normal(size=(39, 6)), few, groups=ids)
    assert len(seen[-1]) == 3                                      # folds: positive patients
    assert C in PROBE_CS
