import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecg_moco_tf.data import experiment_view
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.models.classifier import build_classifier, copy_encoder
from ecg_moco_tf.training.experiments import run_experiment, subsample_patients
from ecg_moco_tf.training.finetune import FinetuneConfig, finetune
from tests.sizes import TINY


def test_classifier_shapes_freeze_and_roundtrip(tmp_path):
    enc = build_encoder(**TINY)
    clf = build_classifier(copy_encoder(enc), hidden_units=8)
    x = np.random.default_rng(0).standard_normal((3, 12, 5000)).astype("float32")
    p = clf.predict(x, verbose=0)
    assert p.shape == (3, 1) and ((p > 0) & (p < 1)).all()
    assert clf.get_layer("spatial_relu") is not None                 # flat: layers reachable
    frozen = build_classifier(copy_encoder(enc), hidden_units=8, freeze_encoder=True)
    names = {v.path.split("/")[0] for v in frozen.trainable_variables}
    assert names == {"head_dense", "head_logit"}
    clf.save(tmp_path / "c.keras")
    back = keras.saving.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), p, atol=1e-6)


def test_finetune_sweep_keeps_lowest_val_loss_and_leaves_encoder_alone(small_cohort, tmp_path):
    view = experiment_view(small_cohort, "baseline_full_labels")
    enc = build_encoder(**TINY)
    before = [w.copy() for w in enc.get_weights()]
    cfg = FinetuneConfig(learning_rates=(1e-2, 1e-4), epochs=2, batch_size=8, patience=1,
                         hidden_units=8, verbose=0)
    res = finetune(view["train"], view["valid"], enc, cfg, out_dir=str(tmp_path))
    for a, b in zip(before, enc.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert list(res.sweep["learning_rate"]) == [1e-2, 1e-4]
    best = res.sweep.loc[res.sweep["best_val_loss"].idxmin(), "learning_rate"]
    assert res.best_learning_rate == best
    assert os.path.exists(tmp_path / "classifier.keras") and os.path.exists(
        tmp_path / "lr_sweep.csv")
    bad = view["train"].copy()
    bad.loc[bad.index[0], "label"] = pd.NA
    with pytest.raises(ValueError, match="no label"):
        finetune(bad, view["valid"], enc, cfg)


def test_baselines_never_load_the_pretrained_encoder(small_cohort, tmp_path):
    cfg = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, hidden_units=8,
                         verbose=0)
    missing = str(tmp_path / "no_such_encoder.keras")
    pred, sweep = run_experiment(small_cohort, "baseline_unpretrained", str(tmp_path), cfg,
                                 encoder_path=missing, encoder_kwargs=TINY)
    test_ids = small_cohort.loc[small_cohort["split"] == "test", "record"]
    assert sorted(pred["record"]) == sorted(test_ids)
    with pytest.raises(ValueError, match="File not found|not found|No such"):
        run_experiment(small_cohort, "proposed", str(tmp_path), cfg, encoder_path=missing)


def test_subsample_patients_stratified():
    df = pd.DataFrame({"record": [f"r{i}" for i in range(100)],
                       "patient_id": [f"p{i // 2}" for i in range(100)],
                       "label": [int(i // 2 < 10) for i in range(100)]})
    sub = subsample_patients(df, 0.1, seed=0)
    assert sub["patient_id"].nunique() == 1 + 4 and sub["label"].sum() == 2
    assert sub.groupby("patient_id").size().eq(2).all()              # whole patients


def test_reproduce_end_to_end_report_holds_computed_numbers(tmp_path):
    out = tmp_path / "run"
    args = [f"--out={out}", "--num_patients=70", "--seed=2", "--pretrain_epochs=1",
            "--pretrain_batch_size=8", "--queue_size=16", "--moco_momentum=0.9",
            "--learning_rates=1e-3", "--epochs=1", "--batch_size=8", "--n_boot=200",
            "--kernel_sizes=5,3", "--filters=4,8", "--pools=8,8", "--spatial_filters=8",
            "--feature_dim=16", "--hidden_units=8", f"--export_dir={tmp_path / 'export'}"]
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "reproduce", *args],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("proposed", "baseline_unpretrained", "baseline_full_labels"):
        pred = pd.read_csv(out / name / "test_predictions.csv")
        auc = roc_auc_score(pred["label"], pred["probability"])
        assert res["summary"][name]["auc"] == pytest.approx(auc, abs=1e-9)
        assert f"{auc:.4f}" in report
    p = res["delong"]["proposed_vs_baseline_unpretrained"]["p_value"]
    assert f"{p:.3f}" in report
    assert (out / "roc.png").stat().st_size > 10_000
    assert re.search(r"\| train1\s+\|", report) and "Table 2" in report
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    held = card["heldout_metrics"]                   # from the shipped SavedModel, every test ECG
    assert held["computed_from"] == "savedmodel"
    assert held["n_ecgs"] == res["summary"]["proposed"]["n_ecgs"]
    assert held["auc"] == pytest.approx(res["summary"]["proposed"]["auc"], abs=1e-3)
    assert (tmp_path / "export" / "model_int8.tflite").exists()
    for name in ("classifier", "encoder"):                     # explain stage (Grad-CAM)
        faith = json.loads((out / "explain" / name / "gradcam" / "faithfulness.json").read_text())
        positives = pd.read_csv(out / "proposed" / "test_predictions.csv")["label"].sum()
        assert faith["n_ecgs"] == positives and 0 <= faith["energy_in_mask"] <= 1
        assert f"{faith['energy_in_mask']:.3f}" in report
        assert (out / "explain" / name / "gradcam" / "attribution.png").stat().st_size > 20_000
