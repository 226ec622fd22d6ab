"""What makes a published number honest: thresholds from validation data, encoders that say
how they were chosen and what they saw, class counts checked before training."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf import provenance
from ecg_moco_tf.evaluation import evaluate, youden_threshold
from ecg_moco_tf.evaluation.metrics import threshold_metrics
from ecg_moco_tf.training import experiments as X
from tests.conftest import shared
from tests.sizes import TINY


def _scores(rng, n, shift):
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    return y, np.clip(rng.normal(0.4 + shift * y, 0.2), 0, 1)


def test_operating_points_are_chosen_on_validation_and_applied_to_test(rng):
    yt, pt = _scores(rng, 60, 0.3)
    yv, pv = _scores(rng, 40, 0.1)                    # another split, another best threshold
    m = evaluate(yt, pt, n_boot=50, valid=(yv, pv))
    assert m["chosen_on"] == "valid2"
    assert m["youden"]["threshold"] == youden_threshold(yv, pv) != youden_threshold(yt, pt)
    assert m["youden"] == threshold_metrics(yt, pt, youden_threshold(yv, pv))
    assert evaluate(yt, pt, n_boot=50)["chosen_on"].startswith("the scored data itself")


def test_ppv_npv_at_a_population_prevalence_follow_bayes(rng):
    y, p = _scores(rng, 50, 0.3)
    m = threshold_metrics(y, p, 0.55, population_prevalence=0.05)
    se, sp = m["sensitivity"], m["specificity"]
    assert m["prevalence"] == 0.5
    assert m["ppv_at_population"] == pytest.approx(se * .05 / (se * .05 + (1 - sp) * .95))
    assert m["npv_at_population"] == pytest.approx(sp * .95 / (sp * .95 + (1 - se) * .05))
    assert m["ppv_at_population"] < m["ppv"]          # the enriched test split flatters PPV


def test_summarize_uses_each_models_valid_predictions(rng):
    yt, pt = _scores(rng, 30, 0.3)
    yv, pv = _scores(rng, 20, 0.2)
    frame = lambda y, p: pd.DataFrame({"record": [f"r{i}" for i in range(len(y))],  # noqa
                                       "patient_id": [f"p{i // 2}" for i in range(len(y))],
                                       "label": y, "probability": p})
    preds = {"proposed": frame(yt, pt), "baseline_unpretrained": frame(yt, pt[::-1].copy())}
    preds["baseline_full_labels"] = frame(yt, pt ** 2)
    valids = {k: frame(yv, pv).assign(split="valid2") for k in preds}
    valids["baseline_full_labels"]["split"] = ["valid1", "valid2"] * (len(yv) // 2)
    summary, tests = X.summarize(preds, n_boot=50, valid_predictions=valids)
    assert [s["chosen_on"] for s in summary.values()] == ["valid2", "valid2", "valid1+valid2"]
    assert summary["proposed"]["youden"]["threshold"] == youden_threshold(yv, pv)
    assert X.decision_threshold(valids["baseline_full_labels"])["chosen_on"] == "valid1+valid2"


def _manifest(test_neg, valid_neg=12):
    rows = []
    for split, pos, neg in (("train2", 12, 12), ("valid2", 12, valid_neg),
                            ("test", 12, test_neg)):
        rows += [{"record": f"{split}{i}", "patient_id": f"{split}{i}", "split": split,
                  "label": int(i < pos)} for i in range(pos + neg)]
    return pd.DataFrame(rows)


def test_class_counts_are_checked_before_training(capsys):
    with pytest.raises(ValueError, match=r"test split \(test\) has 12 positive and 1 negative"):
        X.check_class_counts(_manifest(test_neg=1), "proposed")
    warned = X.check_class_counts(_manifest(test_neg=5), "proposed")
    assert len(warned) == 1 and "fewer than 10" in warned[0]
    assert "warning: proposed: the test split" in capsys.readouterr().out
    assert X.check_class_counts(_manifest(test_neg=12), "proposed") == []
    one_class = _manifest(test_neg=12).assign(label=1)        # e.g. the wrong label column
    with pytest.raises(ValueError, match="72 labelled ECGs all have label 1: .*--label_column"):
        X.check_class_counts(one_class, "proposed")


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    import keras

    from ecg_moco_tf.models import build_encoder

    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("enc") / "encoder.keras")
    build_encoder(**TINY).save(path)
    return path


def test_encoder_provenance_travels_inside_the_keras_file(encoder_file, tmp_path):
    from ecg_moco_tf.models import load_model

    x = np.random.default_rng(0).normal(size=(2, 12, 5000)).astype("float32")
    before = load_model(encoder_file).predict(x, verbose=0)
    copy = str(tmp_path / "renamed.keras")
    with open(encoder_file, "rb") as a, open(copy, "wb") as b:
        b.write(a.read())
    provenance.embed_encoder_provenance(copy, provenance.encoder_record("monitor", 7))
    got = provenance.read_encoder_provenance(copy)     # no sidecar beside it: from the file
    assert (got["selected_by"], got["epoch"], got["labels_seen"]) == ("monitor", 7, True)
    assert got["labels_seen_splits"] == ["train2", "valid2"]
    np.testing.assert_allclose(load_model(copy).predict(x, verbose=0), before, atol=0)


def test_label_efficiency_refuses_an_encoder_chosen_with_labels(encoder_file, tmp_path):
    chosen = str(tmp_path / "monitor.keras")
    with open(encoder_file, "rb") as a, open(chosen, "wb") as b:
        b.write(a.read())
    with pytest.raises(ValueError, match="no provenance.*--allow_unknown_encoder"):
        provenance.check_label_efficiency_encoder(chosen)      # unknown: refused by default
    assert provenance.check_label_efficiency_encoder(chosen, allow_unknown=True) == {}
    provenance.embed_encoder_provenance(chosen, provenance.encoder_record("monitor", 3))
    with pytest.raises(ValueError, match="--select_encoder=last"):
        provenance.check_label_efficiency_encoder(chosen, allow_unknown=True)
    provenance.embed_encoder_provenance(chosen, provenance.encoder_record("last", 3))
    assert provenance.check_label_efficiency_encoder(chosen)["labels_seen"] is False


def test_reproduce_label_efficiency_with_a_monitor_chosen_encoder_exits_2(encoder_file,
                                                                           tmp_path,
                                                                           small_cohort):
    chosen = str(tmp_path / "monitor.keras")
    with open(encoder_file, "rb") as a, open(chosen, "wb") as b:
        b.write(a.read())
    provenance.embed_encoder_provenance(chosen, provenance.encoder_record("monitor", 3))
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "reproduce",
                        f"--manifest={os.path.join(small_cohort.attrs['root'], 'manifest.csv')}",
                        f"--encoder={chosen}", "--label_efficiency", "--le_fractions=1.0",
                        "--le_seeds=0", f"--out={tmp_path / 'run'}", "--noexplain"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "--select_encoder=last" in last and "monitor" in last
    assert not os.path.exists(tmp_path / "run" / "results.json")


def test_records_the_encoder_saw_are_found_by_ecg_id_or_by_signal(encoder_file, small_cohort,
                                                                  tmp_path, capsys):
    folder = tmp_path / "shipped"
    folder.mkdir()
    enc = str(folder / "encoder.keras")
    with open(encoder_file, "rb") as a, open(enc, "wb") as b:
        b.write(a.read())
    pre = small_cohort[small_cohort["split"].isin(["train1", "valid1"])].head(6)
    pre.attrs = dict(small_cohort.attrs)
    recs = provenance.pretrain_records(pre.assign(ecg_id=range(6)))
    assert recs["signal_sha1"].notna().all() and recs["signal_sha1"].nunique() == 6
    recs.to_csv(folder / provenance.RECORDS_FILE, index=False)
    down = small_cohort[small_cohort["split"] == "test"].head(4)
    mixed = pd.concat([pre.head(3), down])
    mixed.attrs = dict(small_cohort.attrs)
    # by signal (no ecg_id column): the same recordings, whatever their path
    assert provenance.seen_in_pretraining(enc, mixed) == (3, "signal hash")
    # by ecg_id where the manifest has one
    assert provenance.seen_in_pretraining(enc, mixed.assign(ecg_id=[0, 1, 99, 98, 97, 96, 95])
                                          ) == (2, "ecg_id")
    assert provenance.warn_if_seen(enc, mixed) == 3
    assert "3 of the 7 fine-tuning/test ECGs were in the pretraining data" in \
        capsys.readouterr().err
    # Python fine-tuning from the encoder's path says the same
    from ecg_moco_tf.training.finetune import finetune

    finetune(mixed, down, enc, epochs=1, learning_rates=1e-3, batch_size=4, patience=1)
    assert "3 of the 11 train/valid ECGs were in the pretraining data" in capsys.readouterr().err


def test_shipped_encoder_never_saw_ptbxl_test_folds_or_a_subset_patient():
    from ecg_moco_tf.pretrained import encoder_path

    path = encoder_path("ptbxl-pool")
    seen = provenance.encoder_records(path)
    assert seen is not None, "the shipped encoder must list its pretraining records"
    assert not seen["strat_fold"].isin([9, 10]).any()
    prov = provenance.read_encoder_provenance(path)
    assert prov["labels_seen"] is False and prov["selected_by"] in ("last", "val_loss")
    sub = pd.read_csv(os.path.join(shared("ptbxl-subset"), "ptbxl_database_subset.csv"))
    subset_patients = set(sub["patient_id"].astype(int).astype(str))
    assert not set(seen["patient_id"].astype(str)) & subset_patients
    assert not set(seen["ecg_id"]) & set(sub["ecg_id"])
    # the list is the data it was trained on: its hash is the one inside the encoder
    assert provenance.manifest_hash(seen) == prov["pretrain_data_sha256"]
    assert len(seen) == prov["pretrain_ecgs"] and set(seen["source"]) == {"ptbxl-pool"}


def _le_preds(rng, seeds, n=120, spread=0.05):
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    rows = []
    for s in seeds:
        for init, shift in (("pretrained", 0.25 + spread * rng.normal()), ("scratch", 0.2)):
            rows.append(pd.DataFrame({"record": [f"r{i}" for i in range(n)],
                                      "patient_id": [f"p{i // 2}" for i in range(n)],
                                      "label": y, "probability": rng.normal(shift * y, 0.2),
                                      "seed": s, "init": init}))
    return pd.concat(rows, ignore_index=True)


def test_seeds_and_patients_ci_is_never_narrower_than_the_seeds_t_interval(rng):
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    preds = _le_preds(rng, range(5), n=400, spread=0.1)
    auc = preds.groupby(["seed", "init"]).apply(
        lambda g: roc_auc_score(g["label"], g["probability"])).unstack()
    d = auc["pretrained"] - auc["scratch"]
    t_half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    lo, hi = X.seeds_and_patients_ci(preds, n_boot=60)
    assert (hi - lo) / 2 >= t_half and lo < d.mean() < hi
    assert X.seeds_and_patients_ci(preds, n_boot=60) == (lo, hi)          # seeded
    same = pd.concat([preds[preds["seed"] == 0].assign(seed=s) for s in range(3)])
    lo, hi = X.seeds_and_patients_ci(same, n_boot=60)      # no seed variance: patients' only
    assert hi - lo > 0.01
    table = auc.stack().rename("auc").reset_index().assign(
        fraction=1.0, n_train_ecgs=10, n_train_positive=5)
    summary = X.label_efficiency_summary(table, preds.assign(fraction=1.0), n_boot=60)
    assert summary["ci_low_sp"].iloc[0] <= summary["ci_low"].iloc[0]
    assert summary["ci_high_sp"].iloc[0] >= summary["ci_high"].iloc[0]
