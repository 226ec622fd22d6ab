"""Cross-fold testing: every fold the test split once, one encoder, pooled Table 2."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecg_moco_tf.training import crossfold as CV
from tests.sizes import TINY


def _folded(n_patients=40, n_folds=4, seed=0):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), 2).astype(str)
    plab = rng.permutation(np.r_[np.ones(n_patients // 2), np.zeros(n_patients - n_patients // 2)])
    return pd.DataFrame({"record": [f"r{i}" for i in range(len(pid))], "patient_id": pid,
                         "label": plab[pid.astype(int)].astype(int),
                         "strat_fold": pid.astype(int) % n_folds + 1})


def test_each_fold_is_test_once_with_the_next_as_valid2_and_the_last_wrapping():
    df = _folded()
    assert CV.fold_plan(df, "strat_fold", 4) == [(1, 2), (2, 3), (3, 4), (4, 1)]
    assert CV.fold_plan(df, "strat_fold", 4, [4]) == [(4, 1)]
    with pytest.raises(ValueError, match="--cv_folds=10 but the labelled ECGs' strat_fold has 4"):
        CV.fold_plan(df, "strat_fold", 10)
    with pytest.raises(ValueError, match=r"--cv_test_folds \[7\]"):
        CV.fold_plan(df, "strat_fold", 4, [7])


def test_fold_manifest_keeps_folds_whole_and_subsamples_training_patients():
    df = _folded()
    m = CV.fold_manifest(df, "strat_fold", 4, 1, 0.28, CV.fold_seed(0, 4))
    assert set(m.loc[m["split"] == "test", "strat_fold"]) == {4}
    assert set(m.loc[m["split"] == "valid2", "strat_fold"]) == {1}
    train = m[m["split"].isin(["train1", "train2"])]
    assert set(train["strat_fold"]) == {2, 3} and len(m) == len(df)
    n2 = m.loc[m["split"] == "train2", "patient_id"].nunique()
    assert abs(n2 - 0.28 * 20) <= 1.5                # per class: round(0.28 * patients)
    assert m.groupby("patient_id")["split"].nunique().max() == 1
    other = CV.fold_manifest(df, "strat_fold", 3, 4, 0.28, CV.fold_seed(0, 3))
    assert CV.fold_seed(0, 4) != CV.fold_seed(0, 3) != CV.fold_seed(1, 3)
    full = CV.fold_manifest(df, "strat_fold", 4, 1, 1.0, 0)
    assert (full.loc[full["strat_fold"].isin([2, 3]), "split"] == "train2").all()
    assert len(other) == len(df)


def test_a_fold_column_that_splits_a_patient_or_misses_a_fold_is_refused():
    df = _folded()
    df.loc[0, "strat_fold"] = 3                       # patient 0's ECGs in folds 1 and 3
    with pytest.raises(ValueError, match="patient 0 has ECGs in more than one strat_fold"):
        CV.fold_manifest(df, "strat_fold", 3, 4, 0.5, 0)
    df.loc[1, "strat_fold"] = np.nan
    with pytest.raises(ValueError, match="1 labelled ECGs have no whole-number strat_fold"):
        CV.fold_column(df)
    with pytest.raises(ValueError, match="--fold_column"):
        CV.fold_column(df.drop(columns="strat_fold"))


def test_pooled_operating_points_use_each_folds_own_valid2_threshold(rng):
    from ecg_moco_tf.evaluation import youden_threshold

    def frame(n, shift, tag):
        y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
        return pd.DataFrame({"record": [f"{tag}{i}" for i in range(n)],
                             "patient_id": [f"{tag}p{i}" for i in range(n)], "label": y,
                             "probability": np.clip(rng.normal(0.3 + shift * y, 0.2), 0, 1)})

    frames = [{"proposed": frame(40, 0.3, "a")}, {"proposed": frame(40, 0.3, "b")}]
    valids = [{"proposed": frame(30, 0.1, "va")}, {"proposed": frame(30, 0.5, "vb")}]
    summary, _, per_fold, _ = CV.summarize_folds(frames, valids, [1, 2], 50, 0)
    cuts = [youden_threshold(v["proposed"]["label"], v["proposed"]["probability"])
            for v in valids]
    tp = sum(int(((f["proposed"]["probability"] >= c) & (f["proposed"]["label"] == 1)).sum())
             for f, c in zip(frames, cuts))
    youden = summary["proposed"]["youden"]
    assert youden["tp"] == tp and youden["tp"] + youden["fn"] == 40
    assert youden["thresholds_per_fold"] == {1: cuts[0], 2: cuts[1]}
    assert summary["proposed"]["chosen_on"].startswith("each fold's own valid2")
    # fold 2's test labels take no part in fold 1's threshold (and the reverse)
    shuffled = [frames[0], {"proposed": frames[1]["proposed"].assign(
        label=rng.permutation(frames[1]["proposed"]["label"]))}]
    again = CV.summarize_folds(shuffled, valids, [1, 2], 50, 0)[0]["proposed"]["youden"]
    assert again["thresholds_per_fold"] == youden["thresholds_per_fold"]
    assert list(per_fold["test_fold"]) == [1, 2]


@pytest.fixture(scope="module")
def last_epoch_encoder(tmp_path_factory):
    import keras

    from ecg_moco_tf import provenance
    from ecg_moco_tf.models import build_encoder

    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("enc") / "encoder.keras")
    build_encoder(**TINY).save(path)
    provenance.embed_encoder_provenance(path, provenance.encoder_record("last", 1))
    pd.DataFrame({"record": ["elsewhere/1"], "patient_id": ["x"], "split": ["train1"],
                  "signal_sha1": ["0" * 20]}).to_csv(os.path.join(os.path.dirname(path),
                                                              provenance.RECORDS_FILE),
                                                 index=False)
    return path


def test_reproduce_cv_pools_every_test_fold_and_resumes(last_epoch_encoder, tmp_path):
    from ecg_moco_tf.data import synthetic

    m = synthetic.write_cohort(str(tmp_path / "cohort"), synthetic.CohortConfig(
        num_patients=30, prevalence=0.5, seed=5), progress=False)
    plab = m.groupby("patient_id")["label"].max().sort_values(kind="stable")
    fold = dict(zip(plab.index, np.arange(len(plab)) % 3 + 1))   # each fold: both classes
    m = m.assign(strat_fold=m["patient_id"].map(fold),
                 record=[str(tmp_path / "cohort" / r) for r in m["record"]]).drop(columns="mask")
    path = tmp_path / "folded.csv"
    m.to_csv(path, index=False)
    out = tmp_path / "cv"
    args = [sys.executable, "-m", "ecg_moco_tf.cli.main", "reproduce", f"--manifest={path}",
            f"--encoder={last_epoch_encoder}", "--cv_folds=3", "--cv_test_folds=2,3",
            "--train2_fraction=0.5", f"--out={out}", "--epochs=1", "--batch_size=8",
            "--learning_rates=1e-3", "--hidden_units=8", "--n_boot=100", "--noexplain",
            "--label_efficiency", "--le_folds=3", "--le_fractions=1.0", "--le_seeds=0",
            "--task_name=MI", "--experiments=proposed,baseline_full_labels"]
    bare = tmp_path / "bare"                                 # what it saw cannot be checked
    bare.mkdir()
    shutil.copy(last_epoch_encoder, bare / "encoder.keras")
    r = subprocess.run([a.replace(last_epoch_encoder, str(bare / "encoder.keras")) for a in args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--allow_unknown_encoder" in r.stderr.strip().splitlines()[-1]
    assert "Epoch 1/" not in r.stdout
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("proposed", "baseline_full_labels"):
        folds = [pd.read_csv(out / f"fold_{k:02d}" / name / "test_predictions.csv")
                 for k in (2, 3)]
        allp = pd.concat(folds)
        assert sorted(allp["record"]) == sorted(m.loc[m["strat_fold"].isin([2, 3]), "record"])
        auc = roc_auc_score(allp["label"], allp["p_MI"])
        assert res["summary"][name]["auc"] == pytest.approx(auc, abs=1e-9)
        assert f"{auc:.4f}" in report
        per = {r["test_fold"]: r["auc"] for r in res["per_fold"] if r["model"] == name}
        assert per == pytest.approx({k: roc_auc_score(f["label"], f["p_MI"])
                                     for k, f in zip((2, 3), folds)})
    man = pd.read_csv(out / "fold_03" / "manifest_with_splits.csv")
    assert set(man.loc[man["split"] == "valid2", "strat_fold"]) == {1}
    assert "Power: one fold against all folds pooled" in report
    assert "Proposed - baseline, two ways" in report and "each fold's own valid2" in report
    assert res["summary"]["proposed"]["youden"]["thresholds_per_fold"].keys() == {"2", "3"}
    assert "commit" in report.splitlines()[2]
    sha = {n: json.loads((out / "fold_02" / n / "cv_settings.json").read_text())
           ["encoder_sha256"] for n in ("proposed", "baseline_full_labels")}
    assert sha["proposed"] and sha["baseline_full_labels"] is None    # reusable by encoder
    le = pd.read_csv(out / "label_efficiency_summary.csv")
    assert list(le["seeds"]) == [1] and (out / "label_efficiency.png").exists()
    before = (out / "fold_02" / "proposed" / "test_predictions.csv").read_bytes()
    r = subprocess.run(args + ["--nolabel_efficiency"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "finished run" in r.stderr.strip().splitlines()[-1]
    os.remove(out / "results.json")                         # an interrupted run: resumed
    os.remove(out / "fold_03" / "label_efficiency" / "label_efficiency.csv")  # within the LE
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("reused") == 6                    # 4 experiments + 2 LE runs
    assert (out / "fold_02" / "proposed" / "test_predictions.csv").read_bytes() == before
    again = json.loads((out / "results.json").read_text())["summary"]
    for name, s in res["summary"].items():                  # predictions re-read from CSV
        for key in ("auc", "auc_ci_low", "auc_ci_high", "brier"):
            assert again[name][key] == pytest.approx(s[key], abs=1e-6), (name, key)
    os.remove(out / "results.json")                         # other settings: refused
    r = subprocess.run(args + ["--train2_fraction=0.6"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "other settings" in r.stderr.strip().splitlines()[-1]
    other = tmp_path / "cv2"                                # --reuse_from: copied, not rerun
    r = subprocess.run([a.replace(str(out), str(other)) for a in args] + [
        "--nolabel_efficiency", "--cv_test_folds=2", f"--reuse_from={out}"],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 fold experiments copied from --reuse_from" in (other / "report.md").read_text()
    assert "Epoch 1/" not in r.stdout and r.stdout.count(": reused (") == 2
    assert (other / "fold_02" / "proposed" / "test_predictions.csv").read_bytes() == before
    os.remove(other / "results.json")                       # finished, settings unknown: refused
    os.remove(other / "fold_02" / "baseline_full_labels" / "cv_settings.json")
    r = subprocess.run([a.replace(str(out), str(other)) for a in args] + [
        "--nolabel_efficiency", "--cv_test_folds=2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no cv_settings.json" in r.stderr.strip().splitlines()[-1]
