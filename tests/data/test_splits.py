import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data.splits import (EXPERIMENTS, SplitFractions, SplitLeakageError,
                                     assign_splits, check_patient_disjoint, experiment_view,
                                     split_summary)


def _cohort(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"p{i}" for i in range(n_patients)], 1 + rng.poisson(1, n_patients))
    pos = {f"p{i}" for i in range(n_patients) if rng.random() < 0.15}
    label = [int(p in pos) for p in pid]
    return pd.DataFrame({"record": [f"r{i}" for i in range(len(pid))], "patient_id": pid,
                         "label": pd.array(label, dtype="Int64"), "split": None})


def test_splits_patient_disjoint_reproducible_and_paper_shaped():
    df = _cohort()
    a, b = assign_splits(df, seed=1), assign_splits(df, seed=1)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != assign_splits(df, seed=2)["split"].tolist()
    assert a["split"].notna().all()
    assert check_patient_disjoint(a)
    # all positives downstream; pretraining pool is negatives only
    assert (a.loc[a["label"] == 1, "split"].isin(["train2", "valid2", "test"])).all()
    assert (a.loc[a["split"].isin(["train1", "valid1"]), "label"] == 0).all()
    t = split_summary(a)
    assert t.loc["train1", "patients"] > 3 * t.loc["valid1", "patients"]
    assert t.loc["train2", "patients"] > 3 * t.loc["test", "patients"]
    # stratified: positive share similar in train2 and test
    share = t["positive"] / t["total"]
    assert abs(share["train2"] - share["test"]) < 0.15


def test_test_split_as_a_number_of_patients_leaves_the_rest_as_shares():
    df = _cohort(1000)
    paper = split_summary(assign_splits(df, seed=0))
    big = assign_splits(df, seed=0, fractions=SplitFractions(test=80))
    t = split_summary(big)
    assert t.loc["test", "patients"] == 80 and check_patient_disjoint(big)
    down = paper.loc[["train2", "valid2", "test"], "patients"].sum()
    assert t.loc[["train2", "valid2", "test"], "patients"].sum() == down
    assert abs(t.loc["valid2", "patients"] - paper.loc["valid2", "patients"]) <= 1  # same share
    assert t.loc[["train1", "valid1"]].equals(paper.loc[["train1", "valid1"]])
    share = t["positive"] / t["total"]
    assert abs(share["train2"] - share["test"]) < 0.1                  # still stratified


@pytest.mark.parametrize("kw, message", [
    ({"test": 1.5}, "test=1.5: a share of patients in"),
    ({"valid1": 1.2}, "valid1=1.2"),
    ({"valid2": 0.5, "test": 0.5}, "leaves no train2; lower valid2= or test="),
    ({"test": 10_000}, "leave 0 of the .* downstream patients for train2"),
    ({"test": 300}, "lower test= or valid2="),
    ({"test": 294}, "lower test= or valid2="),
    ({"test": 295}, "lower test= or valid2="),
    ({"valid2": 0.6, "test": 0.399}, "lower test= or valid2="),
    ({"test": 1.0}, "test=1 means one test patient"),
    ({"test": float("inf")}, "test=inf"),
    ({"test": float("nan")}, "test=nan"),
    ({"valid1": float("nan")}, "valid1=nan"),
])
def test_split_sizes_that_cannot_work_are_errors_naming_the_setting(kw, message):
    with pytest.raises(ValueError, match=message):
        assign_splits(_cohort(1000), seed=0, fractions=SplitFractions(**kw))


def test_unlabelled_go_to_pretraining():
    df = _cohort()
    df.loc[df["patient_id"].isin(["p0", "p1", "p2"]), "label"] = pd.NA
    out = assign_splits(df, seed=0)
    assert out.loc[out["label"].isna(), "split"].isin(["train1", "valid1"]).all()


def test_leakage_is_detected_and_named():
    df = assign_splits(_cohort(), seed=0)
    victim = df["patient_id"].iloc[0]
    rows = df.index[df["patient_id"] == victim]
    df = pd.concat([df, df.loc[rows[:1]].assign(
        record="dup", split="test" if df.loc[rows[0], "split"] != "test" else "train1")])
    with pytest.raises(SplitLeakageError, match=f"patient {victim}"):
        check_patient_disjoint(df)


def test_experiment_views_follow_table3():
    df = assign_splits(_cohort(), seed=0)
    ids = {s: set(df.loc[df["split"] == s, "record"]) for s in
           ("train1", "valid1", "train2", "valid2", "test")}
    views = {name: experiment_view(df, name) for name in EXPERIMENTS}
    p = views["proposed"]
    assert set(p["pretrain_train"]["record"]) == ids["train1"]
    assert set(p["pretrain_valid"]["record"]) == ids["valid1"]
    assert set(p["train"]["record"]) == ids["train2"]
    assert set(p["valid"]["record"]) == ids["valid2"]
    u = views["baseline_unpretrained"]
    assert u["pretrain_train"] is None and set(u["train"]["record"]) == ids["train2"]
    f = views["baseline_full_labels"]
    assert f["pretrain_train"] is None
    assert set(f["train"]["record"]) == ids["train1"] | ids["train2"]
    assert set(f["valid"]["record"]) == ids["valid1"] | ids["valid2"]
    for v in views.values():
        assert set(v["test"]["record"]) == ids["test"]
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment_view(df, "nope")


def test_finetune_design_uses_every_label_at_the_data_prevalence():
    df = _cohort(600)
    df.loc[df["patient_id"].isin(["p0", "p1", "p2"]), "label"] = pd.NA   # unlabelled: no split
    paper = assign_splits(df, seed=0)
    fine = assign_splits(df, seed=0, design="finetune")
    lab = df["label"].notna()
    assert not fine["split"].isin(["train1", "valid1"]).any()
    assert fine.loc[lab, "split"].isin(["train2", "valid2", "test"]).all()
    assert fine.loc[~lab, "split"].isna().all()
    assert check_patient_disjoint(fine)
    prevalence = df.loc[lab, "label"].astype(float).mean()
    t = split_summary(fine)
    for s in ("train2", "valid2", "test"):                # stratified: the data's prevalence
        assert abs(t.loc[s, "positive"] / t.loc[s, "total"] - prevalence) < 0.06, s
    down_paper = paper["split"].isin(["train2", "valid2", "test"]) & lab
    assert (fine["split"].isin(["train2", "valid2", "test"]) & lab).sum() > 2.5 * down_paper.sum()


def test_pretrain_design_and_a_downstream_fraction_of_one():
    df = _cohort(300)
    pre = assign_splits(df, seed=0, design="pretrain")
    assert pre["split"].isin(["train1", "valid1"]).all()
    assert (pre["split"] == "valid1").mean() == pytest.approx(SplitFractions().valid1, abs=0.05)
    allneg = assign_splits(df, seed=0, fractions=SplitFractions(downstream_negative_fraction=1.0))
    assert allneg["split"].isin(["train2", "valid2", "test"]).all()
    with pytest.raises(ValueError, match="design='lvsd': choose from paper, finetune, pretrain"):
        assign_splits(df, design="lvsd")
