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
from ecg_moco_tf.models import build_encoder, load_model
from ecg_moco_tf.models.classifier import build_classifier, copy_encoder
from ecg_moco_tf.training.experiments import (label_efficiency, label_efficiency_summary,
                                              run_experiment,
                                              subsample_patients)
from ecg_moco_tf.evaluation import youden_threshold
from ecg_moco_tf.training.finetune import FinetuneConfig, batch_norms, finetune, predict
from tests.sizes import TINY

HEAD = ("head_dense", "head_logit")


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
    assert type(res.model.optimizer) is keras.optimizers.Adam            # weight_decay 0
    assert [bn.momentum for bn in batch_norms(res.model)] == [0.9] * 3   # the default
    assert list(res.sweep["learning_rate"]) == [1e-2, 1e-4]
    best = res.sweep.loc[res.sweep["best_val_loss"].idxmin(), "learning_rate"]
    assert res.best_learning_rate == best
    assert os.path.exists(tmp_path / "classifier.keras") and os.path.exists(
        tmp_path / "lr_sweep.csv")
    one = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, hidden_units=8,
                         verbose=0)
    finetune(view["train"], view["valid"], enc, one, out_dir=str(tmp_path))   # same folder
    assert sorted(p.name for p in tmp_path.glob("finetune_lr*.csv")) == ["finetune_lr0.001.csv"]
    bad = view["train"].copy()
    bad.loc[bad.index[0], "label"] = pd.NA
    with pytest.raises(ValueError, match="no label"):
        finetune(bad, view["valid"], enc, cfg)


def test_baselines_refuse_a_pretrained_encoder(small_cohort, tmp_path):
    cfg = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, hidden_units=8,
                         verbose=0)
    missing = str(tmp_path / "no_such_encoder.keras")
    with pytest.raises(ValueError, match="baseline_unpretrained starts from random weights"):
        run_experiment(small_cohort, "baseline_unpretrained", str(tmp_path), cfg,
                       encoder_path=missing, encoder_kwargs=TINY)
    pred, sweep, valid = run_experiment(small_cohort, "baseline_unpretrained", str(tmp_path),
                                        cfg, encoder_kwargs=TINY)
    valid_ids = small_cohort.loc[small_cohort["split"] == "valid2", "record"]
    assert sorted(valid["record"]) == sorted(valid_ids)
    prov = json.load(open(tmp_path / "baseline_unpretrained" / "provenance.json"))
    assert prov["decision_threshold"]["chosen_on"] == "valid2"
    assert prov["decision_threshold"]["value"] == pytest.approx(
        youden_threshold(valid["label"].astype(int), valid["probability"]))
    test_ids = small_cohort.loc[small_cohort["split"] == "test", "record"]
    assert sorted(pred["record"]) == sorted(test_ids)
    with pytest.raises(ValueError, match="File not found|not found|No such"):
        run_experiment(small_cohort, "proposed", str(tmp_path), cfg, encoder_path=missing)


def test_subsample_patients_stratified():
    df = pd.DataFrame({"record": [f"r{i}" for i in range(100)],
                       "patient_id": [f"p{i // 2}" for i in range(100)],
                       "label": [int(i // 2 < 10) for i in range(100)]})
    sub = subsample_patients(df, 0.2, seed=0)
    assert sub["patient_id"].nunique() == 2 + 8 and sub["label"].sum() == 4
    assert sub.groupby("patient_id").size().eq(2).all()              # whole patients
    msg = ("label fraction 0.1 (seed 3) leaves 1 positive and 4 negative patients in train2; "
           "use a larger fraction (at least 2 of each class)")
    with pytest.raises(ValueError, match=re.escape(msg)):
        subsample_patients(df, 0.1, seed=3)


def _encoder_weights(model, encoder):
    """{layer name: weights} of the encoder's layers as they are in ``model``."""
    return {layer.name: [w.copy() for w in model.get_layer(layer.name).get_weights()]
            for layer in encoder.layers if layer.weights}


def test_label_efficiency_summary_by_hand():
    """Seed-paired differences: seeds 0-2 differ by +0.1, +0.2, +0.3 -> mean 0.2, CI
    0.2 +- t(0.975, 2) * 0.1 / sqrt(3); one seed: no CI."""
    rows = [(f, s, i, a) for f, s, i, a in (
        (0.5, 0, "pretrained", 0.7), (0.5, 0, "scratch", 0.6), (0.5, 1, "pretrained", 0.8),
        (0.5, 1, "scratch", 0.6), (0.5, 2, "pretrained", 0.9), (0.5, 2, "scratch", 0.6),
        (1.0, 0, "pretrained", 0.8), (1.0, 0, "scratch", 0.85))]
    table = pd.DataFrame(rows, columns=["fraction", "seed", "init", "auc"])
    table["n_train_ecgs"] = [10, 10, 11, 11, 12, 12, 20, 20]
    s = label_efficiency_summary(table).set_index("fraction")
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert s.loc[0.5, "difference"] == pytest.approx(0.2)
    assert (s.loc[0.5, "ci_low"], s.loc[0.5, "ci_high"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert (s.loc[0.5, "train_ecgs_min"], s.loc[0.5, "train_ecgs_max"]) == (10, 12)
    assert s.loc[1.0, "difference"] == pytest.approx(-0.05) and np.isnan(s.loc[1.0, "ci_low"])
    assert s.loc[0.5, "pretrained_auc"] == pytest.approx(0.8)


def test_label_efficiency_refuses_too_few_labels_before_training(small_cohort, tmp_path):
    train2 = experiment_view(small_cohort, "proposed")["train"]
    pos = int(train2.groupby("patient_id")["label"].max().sum())
    neg = train2["patient_id"].nunique() - pos
    assert pos >= 2 and neg >= 2
    # the encoder path does not exist: an error about it would mean training had started
    with pytest.raises(ValueError, match=r"label fraction 0.01 \(seed 0\) leaves 1 positive "
                       r"and 1 negative patients in train2; use a larger fraction"):
        label_efficiency(small_cohort, str(tmp_path / "missing.keras"), str(tmp_path),
                         fractions=(1.0, 0.01), seeds=(0, 1))
    assert not os.path.exists(tmp_path / "label_efficiency.csv")


def test_bn_momentum_two_rates_reestimated_bn_and_saved_classifier_reload(small_cohort,
                                                                         tmp_path):
    """bn_momentum on every BN layer of the copy; an encoder learning-rate multiplier (a
    training-only wrapper) and BN re-estimation still give a plain functional classifier that
    reloads and predicts the same."""
    view = experiment_view(small_cohort, "baseline_full_labels")
    keras.utils.set_random_seed(0)
    enc = build_encoder(**TINY, bn_momentum=0.99)
    cfg = FinetuneConfig(learning_rates=(1e-3,), epochs=1, batch_size=8, hidden_units=8,
                         bn_momentum=0.8, encoder_lr_multiplier=0.3, reestimate_bn=True,
                         dropout=0.2, verbose=0)
    res = finetune(view["train"], view["valid"], enc, cfg, out_dir=str(tmp_path))
    bns = batch_norms(res.model)
    assert len(bns) == 3 and [bn.momentum for bn in bns] == [0.8] * 3
    assert [bn.momentum for bn in batch_norms(enc)] == [0.99] * 3     # the original untouched
    assert type(res.model) is keras.Model or type(res.model).__name__ == "Functional"
    row = res.sweep.iloc[0]
    assert row["bn_momentum"] == 0.8 and row["encoder_lr_multiplier"] == 0.3
    assert bool(row["reestimate_bn"]) and np.isfinite(row["val_loss_before_bn_reestimate"])
    back = load_model(str(tmp_path / "classifier.keras"))
    assert type(back).__name__ == "Functional"
    assert [bn.momentum for bn in batch_norms(back)] == [0.8] * 3
    a, b = predict(res.model, view["test"]), predict(back, view["test"])
    np.testing.assert_allclose(a["probability"], b["probability"], atol=1e-6)
    assert a["probability"].std() > 0


def test_encoder_lr_multiplier_zero_keeps_encoder_weights_head_learns(small_cohort):
    view = experiment_view(small_cohort, "baseline_full_labels")
    keras.utils.set_random_seed(0)
    enc = build_encoder(**TINY)
    cfg = FinetuneConfig(learning_rates=(1e-2,), epochs=2, batch_size=8, hidden_units=8,
                         encoder_lr_multiplier=0.0, verbose=0)
    res = finetune(view["train"], view["valid"], enc, cfg)
    keras.utils.set_random_seed(cfg.seed)         # finetune's initial classifier, rebuilt
    init = build_classifier(copy_encoder(enc), hidden_units=8)
    start, end = _encoder_weights(init, enc), _encoder_weights(res.model, enc)
    moving_changed = False
    for name in start:
        layer = res.model.get_layer(name)
        for v, a, b in zip(layer.weights, start[name], end[name]):
            if "moving" in v.path:                # BN statistics follow the training batches
                moving_changed |= not np.array_equal(a, b)
            else:
                np.testing.assert_array_equal(a, b, err_msg=v.path)
    assert moving_changed
    for name in HEAD:                             # while the head learned
        for a, b in zip(init.get_layer(name).get_weights(),
                        res.model.get_layer(name).get_weights()):
            assert not np.allclose(a, b)


def test_linear_probe_leaves_encoder_alone_then_fine_tunes(small_cohort, tmp_path):
    view = experiment_view(small_cohort, "baseline_full_labels")
    keras.utils.set_random_seed(0)
    enc = build_encoder(**TINY)
    start = _encoder_weights(enc, enc)
    base = dict(learning_rates=(1e-2,), batch_size=8, hidden_units=8, linear_probe_epochs=1,
                weight_decay=1e-2, verbose=0)
    probe = finetune(view["train"], view["valid"], enc, FinetuneConfig(epochs=0, **base))
    assert len(probe.probe_histories[1e-2]["loss"]) == 1 and probe.histories[1e-2] == {}
    after = _encoder_weights(probe.model, enc)
    for name in start:                            # BN in inference mode: statistics too
        for a, b in zip(start[name], after[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert np.isfinite(probe.sweep["best_val_loss"].iloc[0])
    assert isinstance(probe.model.optimizer, keras.optimizers.AdamW)
    assert probe.model.optimizer.weight_decay == pytest.approx(1e-2)
    ft = finetune(view["train"], view["valid"], enc, FinetuneConfig(epochs=1, **base),
                  out_dir=str(tmp_path))
    after = _encoder_weights(ft.model, enc)
    assert not np.allclose(start["temporal_1_conv"][0], after["temporal_1_conv"][0])
    assert all(layer.trainable for layer in ft.model.layers)
    log = pd.read_csv(tmp_path / "finetune_lr0.01.csv")
    assert list(log["epoch"]) == [1, 2]           # probe epoch, then fine-tuning epoch
    assert ft.sweep["best_epoch"].iloc[0] == 2     # numbered as in the log
    assert os.listdir(tmp_path / "tensorboard" / "lr0.01")      # TensorBoard events


def test_reproduce_end_to_end_report_holds_computed_numbers(tmp_path):
    out = tmp_path / "run"
    args = [f"--out={out}", "--num_patients=70", "--seed=2", "--pretrain_epochs=1",
            "--pretrain_batch_size=8", "--queue_size=16", "--moco_momentum=0.9",
            "--learning_rates=1e-3", "--epochs=1", "--batch_size=8", "--n_boot=200",
            "--kernel_sizes=5,3", "--filters=4,8", "--pools=8,8", "--spatial_filters=8",
            "--feature_dim=16", "--hidden_units=8", f"--export_dir={tmp_path / 'export'}",
            "--task_name=MI", "--test=8", "--explain_max_ecgs=6", "--label_efficiency",
            "--le_fractions=1.0", "--le_seeds=0,1"]
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "reproduce", *args],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("proposed", "baseline_unpretrained", "baseline_full_labels"):
        pred = pd.read_csv(out / name / "test_predictions.csv")
        auc = roc_auc_score(pred["label"], pred["p_MI"])            # --task_name=MI
        assert res["summary"][name]["auc"] == pytest.approx(auc, abs=1e-9)
        assert f"{auc:.4f}" in report
    p = res["delong"]["proposed_vs_baseline_unpretrained"]["p_value"]
    assert (f"{p:.3f}" if p >= 0.001 else "< 0.001") in report
    assert (out / "roc.png").stat().st_size > 10_000
    assert re.search(r"\| train1\s+\|", report) and "Table 2" in report
    run = res["run"]                              # the command, date and commit stand beside
    assert f"- run: `{run['command']}`, {run['date']}, commit {run['commit']}" in report
    assert "reproduce" in run["command"] and run["date"].startswith("20")
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    held = card["heldout_metrics"]                   # from the shipped SavedModel, every test ECG
    assert held["computed_from"] == "savedmodel"
    assert held["n_ecgs"] == res["summary"]["proposed"]["n_ecgs"]
    assert held["auc"] == pytest.approx(res["summary"]["proposed"]["auc"], abs=1e-3)
    assert (tmp_path / "export" / "model_int8.tflite").exists()
    assert card["task"]["name"] == "MI" and card["outputs"]["probability"] == "P(MI), sigmoid"
    assert "LVSD" not in json.dumps(card) and "P(positive)" not in json.dumps(card)
    assert card["pretraining"]["experiment"] == "proposed"
    assert card["pretraining"]["pretrained_encoder"]["pretrain_config"]["selected_by"]
    assert card["training_data"]["fine_tuning"][0]["split"] == "train2"
    assert card["validation_data"]["splits"][0]["split"] == "valid2"
    assert card["threshold"]["heldout"]["tp"] + card["threshold"]["heldout"]["fn"] == \
        held["n_positive"]
    assert card["intended_use"] and card["limitations"] and card["versions"]["ecg_moco_tf"]
    test = pd.read_csv(out / "proposed" / "test_predictions.csv")
    assert test["patient_id"].nunique() == 8 and len(test) > 6              # --test=8 patients
    explained = pd.read_csv(out / "explain" / "classifier" / "gradcam" / "ecgs.csv")
    assert len(explained) == 6 and set(explained["record"]) <= set(test["record"].astype(str))
    assert "Grad-CAM on 6 of the test ECGs" in report
    for name in ("classifier", "encoder"):                     # explain stage (Grad-CAM)
        faith = json.loads((out / "explain" / name / "gradcam" / "faithfulness.json").read_text())
        positives = explained["label"].sum()
        assert faith["n_ecgs"] == positives and 0 <= faith["energy_in_mask"] <= 1
        assert f"{faith['energy_in_mask']:.3f}" in report
        assert (out / "explain" / name / "gradcam" / "attribution.png").stat().st_size > 20_000
    assert "p_MI" in pd.read_csv(out / "explain" / "classifier" / "gradcam" / "ecgs.csv")
    assert (out / "calibration.png").stat().st_size > 10_000
    le = pd.read_csv(out / "label_efficiency.csv")                   # 1 fraction x 2 seeds x 2
    assert len(le) == 4 and set(le["init"]) == {"pretrained", "scratch"}
    d = (le[le.init == "pretrained"]["auc"].to_numpy() - le[le.init == "scratch"]["auc"].to_numpy())
    (row,) = res["label_efficiency"]
    half = 12.706 * d.std(ddof=1) / np.sqrt(2)                       # t(0.975, 1 df)
    assert row["difference"] == pytest.approx(d.mean()) and row["seeds"] == 2
    assert row["ci_low"] == pytest.approx(d.mean() - half, rel=1e-3)
    assert f"| 100% ({row['train_ecgs_min']}) | 2 |" in report and f"{d.mean():+.3f}" in report


def test_two_rate_trainer_scales_the_encoder_step():
    """Adam ignores gradient scale, so the multiplier must scale the step: after one step
    from the same start, the encoder moved 0.25 x as far as with one rate, the head as far."""
    from ecg_moco_tf.training.finetune import TwoRateTrainer, make_optimizer
    from tests.sizes import SHORT

    x = np.random.default_rng(0).normal(0, 0.5, (8, 12, 64)).astype("float32")
    y = (np.arange(8) % 2).astype("float32")
    keras.utils.set_random_seed(0)
    enc = build_encoder(**SHORT)
    steps = {}
    for mult in (1.0, 0.25):
        keras.utils.set_random_seed(1)
        clf = build_classifier(copy_encoder(enc), hidden_units=4)
        start = [w.copy() for w in clf.get_weights()]
        names = [v.path for v in clf.weights]
        trainer = TwoRateTrainer(clf, make_optimizer(1e-3 * mult)) if mult != 1 else clf
        trainer.compile(optimizer=make_optimizer(1e-3), loss="binary_crossentropy")
        trainer.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        steps[mult] = {n: np.abs(a - b).max() for n, a, b in
                       zip(names, start, clf.get_weights()) if "moving" not in n}
    assert steps[1.0]["temporal_1_conv/kernel"] > 0
    for name, step in steps[1.0].items():
        ratio = 1.0 if name.startswith("head_") else 0.25
        assert steps[0.25][name] == pytest.approx(ratio * step, rel=1e-3), name


def test_min_steps_per_epoch_repeats_a_small_training_set(small_cohort):
    view = experiment_view(small_cohort, "baseline_full_labels")
    train = view["train"].sort_values("label").groupby("label").head(6)   # 6 + 6 ECGs
    assert len(train) == 12 and train["label"].nunique() == 2
    base = dict(learning_rates=(1e-3,), epochs=2, batch_size=8, patience=5, hidden_units=8,
                verbose=0)
    plain = finetune(train, view["valid"], build_encoder(**TINY), FinetuneConfig(**base))
    assert int(plain.model.optimizer.iterations) == 2 * 2              # 12 ECGs: 2 batches
    more = finetune(train, view["valid"], build_encoder(**TINY),
                    FinetuneConfig(min_steps_per_epoch=5, **base))
    assert int(more.model.optimizer.iterations) == 2 * 5
    assert more.sweep["min_steps_per_epoch"].iloc[0] == 5
    with pytest.raises(ValueError, match="min_steps_per_epoch"):
        FinetuneConfig(min_steps_per_epoch=-1).check()


def test_epoch_timer_times_every_epoch_and_reports():
    from ecg_moco_tf.training.callbacks import EpochTimer

    seen = []
    clock = EpochTimer(lambda epoch, s, logs: seen.append((epoch, s, "loss" in logs)))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((8, 3)), np.zeros((8, 1)), epochs=2, verbose=0, callbacks=[clock])
    assert len(clock.times) == 2 and all(t > 0 for t in clock.times)
    assert [(e, ok) for e, _, ok in seen] == [(0, True), (1, True)]
    assert [s for _, s, _ in seen] == clock.times


def test_finetune_from_arrays_matches_finetune_from_manifests(small_cohort, tmp_path):
    """finetune(x_train, y_train, validation_data=...) trains the same model as the manifest
    path on the same ECGs; wrong arrays get one error naming the argument and the ECG."""
    from ecg_moco_tf.data import load_records

    view = experiment_view(small_cohort, "baseline_full_labels")
    tr, va = (load_records(view[k], progress=False) for k in ("train", "valid"))
    cfg = FinetuneConfig(learning_rates=(1e-3,), epochs=2, batch_size=8, hidden_units=8,
                         verbose=0)
    enc = build_encoder(**TINY)
    a = finetune(view["train"], view["valid"], enc, cfg)
    b = finetune(tr.signals, tr.manifest["label"].to_numpy(), encoder=enc, cfg=cfg,
                 validation_data=(va.signals, list(va.manifest["label"])))
    assert b.sweep["best_val_loss"][0] == pytest.approx(a.sweep["best_val_loss"][0], abs=1e-5)
    np.testing.assert_allclose(b.model.predict(va.signals, verbose=0),
                               a.model.predict(va.signals, verbose=0), atol=1e-5)
    c = finetune(tr.signals, tr.manifest["label"], encoder=enc, epochs=1, learning_rates=1e-3,
                 batch_size=8, hidden_units=8, verbose=0, out_dir=str(tmp_path), task_name="MI",
                 validation_data=(va.signals, va.manifest["label"]))
    assert c.sweep["epochs_run"][0] == 1                  # settings as keyword arguments
    assert list(c.sweep["learning_rate"]) == [1e-3]       # one rate: a sweep of one
    prov = json.loads((tmp_path / "provenance.json").read_text())    # predict/export use it
    p = c.model.predict(va.signals, verbose=0).ravel()
    assert prov["task_name"] == "MI" and c.threshold["chosen_on"] == "validation_data"
    assert prov["decision_threshold"]["value"] == pytest.approx(
        youden_threshold(va.manifest["label"].astype(int), p), abs=1e-6)
    y, valid = tr.manifest["label"].to_numpy(), (va.signals, va.manifest["label"])
    nan = tr.signals.copy()
    nan[2, 0, 7] = np.nan
    cases = [((tr.signals.transpose(0, 2, 1), y), dict(validation_data=valid),
              r"x_train has shape \(\d+, 5000, 12\).*transpose\(0, 2, 1\)"),
             ((tr.signals[:, :, :4000], y), dict(validation_data=valid),
              r"x_train has shape \(\d+, 12, 4000\).*another length.*standardize\(ecg, fs"),
             ((tr.signals, y), dict(validation_data=valid, learning_rates="fast"),
              r"learning_rates must be one or more positive numbers.*got 'fast'"),
             ((nan, y), dict(validation_data=valid), r"x_train\[2\] .*NaN"),
             ((tr.signals / 1000, y), dict(validation_data=valid),
              r"x_train\[0\]: median QRS .*volts.*check_amplitude=False"),
             ((tr.signals, y[:-1]), dict(validation_data=valid), r"y_train has \d+ labels"),
             ((tr.signals, y + 1), dict(validation_data=valid), r"y_train must be 0/1"),
             ((tr.signals, y), {}, r"arrays need validation_data=\(x_valid, y_valid\)"),
             ((tr.signals, y), dict(validation_data=valid, encoder="ptbxl"),
              r"^encoder='ptbxl' is neither a file nor a shipped encoder")]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            finetune(*args, cfg=cfg, **kwargs)
    with pytest.raises(TypeError, match="unknown setting.*epoch\\b.*FinetuneConfig"):
        finetune(tr.signals, y, validation_data=valid, epoch=3)
