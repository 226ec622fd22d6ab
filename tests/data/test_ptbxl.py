import os

import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data import ptbxl, read_record
from ecg_moco_tf.data.manifest import read_manifest, record_path, write_manifest
from ecg_moco_tf.data.splits import check_patient_disjoint, split_summary
from tests.conftest import shared


def test_ptbxl_layout_manifest_and_official_folds():
    root = shared("ptbxl-subset")
    df = ptbxl.ptbxl_manifest(root, label="MI")
    assert len(df) == 1040
    assert int(df["label"].sum()) == 520                       # the README's balance
    assert (df["label"] == df["MI"]).all()
    out = ptbxl.folds_to_splits(df, pretrain_folds=[1, 2])
    check_patient_disjoint(out)
    t = split_summary(out)
    assert set(t.index) == {"train1", "valid1", "train2", "valid2", "test"}
    assert (out.loc[out["strat_fold"] == 10, "split"] == "test").all()
    with pytest.raises(ValueError, match="neither a superclass"):
        ptbxl.ptbxl_manifest(root, label="NOPE")


# --- the unlabelled pretraining pool (../shared/data/ptbxl-pool) -------------------------------

def _write_folder(root, rows, fs=500):
    """A tiny PTB-XL-like folder in the pool layout: labels.csv + scp_statements.csv, no signals."""
    os.makedirs(root, exist_ok=True)
    pd.DataFrame({"": ["NORM", "IMI", "SR"], "diagnostic": [1.0, 1.0, None],
                  "diagnostic_class": ["NORM", "MI", None]}).to_csv(
        os.path.join(root, "scp_statements.csv"), index=False)
    pd.DataFrame([{"record": f"records500/00000/{e:05d}_hr", "ecg_id": e, "patient_id": p,
                   "fs": fs, "strat_fold": f, "scp_codes": str(codes)}
                  for e, p, f, codes in rows]).to_csv(os.path.join(root, "labels.csv"),
                                                       index=False)
    return str(root)


def test_pool_layout_and_pool_logic_on_a_tiny_two_root_case(tmp_path, capsys):
    norm, mi = {"NORM": 100.0, "SR": 0.0}, {"IMI": 50.0}
    # subset: patient 1 pretraining (train1), 2 pretraining (valid1), 3-5 downstream folds
    sub_root = _write_folder(tmp_path / "subset", [(1, 1, 1, norm), (2, 2, 2, mi),
                                                   (3, 3, 3, mi), (4, 4, 9, norm),
                                                   (5, 5, 10, mi), (6, 5, 10, norm)])
    # pool: ECGs of patients 1, 2 (pretraining side), 3, 5 (downstream), a duplicate ecg_id,
    # and 10 new patients (20 ECGs)
    new = [(100 + i, 1000 + i // 2, 1 + i % 10, norm) for i in range(20)]
    pool_root = _write_folder(tmp_path / "pool", [(50, 1, 1, norm), (51, 2, 2, norm),
                                                  (52, 3, 3, mi), (53, 5, 10, norm),
                                                  (54, 5, 10, norm), (6, 77, 4, norm)] + new)
    sub = ptbxl.folds_to_splits(ptbxl.ptbxl_manifest(sub_root, label="MI"),
                                pretrain_folds=[1, 2])
    assert sub["split"].tolist() == ["train1", "valid1", "train2", "valid2", "test", "test"]
    assert sub["label"].tolist() == [0, 1, 1, 0, 1, 0]
    pool = ptbxl.ptbxl_manifest(pool_root, label=None)        # labels.csv layout, no database
    assert len(pool) == 26 and pool["label"].isna().all()
    assert pool["patient_id"].iloc[0] == "1"
    with pytest.raises(ValueError, match="assign the manifest's splits"):
        ptbxl.add_pretraining_pool(sub.assign(split=None), pool)

    # the default drops the pool's strat_fold 9 and 10 (PTB-XL's validation and test folds)
    held = ptbxl.add_pretraining_pool(sub, pool, seed=0, valid_fraction=0.2)
    assert "dropped 6 of strat_fold 9/10" in capsys.readouterr().out
    assert held.attrs["pool_summary"]["dropped_held_out_fold"] == 6  # 53, 54 and 4 new ECGs
    hp = held[held["pretraining_pool"] == 1]
    assert not hp["strat_fold"].isin([9, 10]).any() and len(hp) == 22 - 4
    # folds read as text are still dropped; a pool without folds is refused
    text = ptbxl.add_pretraining_pool(sub, pool.assign(strat_fold=pool["strat_fold"].astype(str)),
                                      seed=0, verbose=False)
    assert text.attrs["pool_summary"]["dropped_held_out_fold"] == 6
    with pytest.raises(ValueError, match="1 pool ECGs have no strat_fold"):
        ptbxl.add_pretraining_pool(sub, pool.assign(strat_fold=[None] + list(pool["strat_fold"])[1:]))
    with pytest.raises(ValueError, match="no strat_fold column.*--ptbxl_pool_exclude_folds="):
        ptbxl.add_pretraining_pool(sub, pool.drop(columns="strat_fold"))
    out = ptbxl.add_pretraining_pool(sub, pool, seed=0, valid_fraction=0.2, exclude_folds=())
    check_patient_disjoint(out)
    said = capsys.readouterr()
    assert "dropped 0 of strat_fold -" in said.out and "no pool fold is held out" in said.err
    s = out.attrs["pool_summary"]
    assert s == {"pool": 26, "kept": 22, "train1": 17, "valid1": 5,
                 "joined_pretraining_patient": 2, "dropped_downstream_patient": 3,
                 "dropped_duplicate_ecg": 1, "dropped_held_out_fold": 0, "held_out_folds": []}
    p = out[out["pretraining_pool"] == 1].set_index("ecg_id")
    assert len(p) == 22 and p["label"].isna().all()
    assert set(p["source"]) == {"pool"} and set(out.loc[out["pretraining_pool"] == 0,
                                                        "source"]) == {"subset"}
    assert set(p["split"]) == {"train1", "valid1"}
    assert p.loc[50, "split"] == "train1" and p.loc[51, "split"] == "valid1"   # same side
    assert not {52, 53, 54}.intersection(p.index)                          # downstream patients
    assert (p.loc[100:119].groupby("patient_id")["split"].nunique() == 1).all()
    assert p.loc[100:119].groupby("split")["patient_id"].nunique().to_dict() == {
        "train1": 8, "valid1": 2}                                          # 20 % of 10 patients
    # the subset's rows are unchanged apart from their paths; one root serves both folders
    assert out[out["pretraining_pool"] == 0]["label"].tolist() == [0, 1, 1, 0, 1, 0]
    assert out.attrs["root"] == str(tmp_path)
    assert out["record"].iloc[0] == os.path.join("subset", "records500", "00000", "00001_hr")
    assert out["record"].iloc[-1] == os.path.join("pool", "records500", "00000", "00119_hr")
    # written elsewhere and read back, every path still points into its own folder
    back = read_manifest(write_manifest(out, str(tmp_path / "runs" / "m.csv")))
    assert [os.path.normpath(record_path(back, r)) for _, r in back.iterrows()] == [
        os.path.normpath(record_path(out, r)) for _, r in out.iterrows()]
    assert os.path.normpath(record_path(back, back.iloc[-1])) == os.path.join(
        pool_root, "records500", "00000", "00119_hr")
    # seeded; a 100 Hz request of a 500 Hz labels.csv folder is refused
    again = ptbxl.add_pretraining_pool(sub, pool, seed=0, valid_fraction=0.2, verbose=False,
                                       exclude_folds=())
    assert again["split"].tolist() == out["split"].tolist()
    with pytest.raises(ValueError, match="not 100"):
        ptbxl.ptbxl_manifest(pool_root, sampling_rate=100)


def test_shared_pool_manifest():
    root = shared("ptbxl-pool")
    df = ptbxl.ptbxl_manifest(root, label=None)
    assert len(df) == 1659
    assert df["patient_id"].str.fullmatch(r"\d+").all() and df["patient_id"].nunique() == 1626
    assert df["label"].isna().all()
    assert int(df["MI"].sum()) == 3                                          # the README's count
    assert all(os.path.exists(os.path.join(root, r + ".hea")) for r in df["record"])


def test_shared_pool_with_subset_keeps_patients_on_one_side():
    sub_root, pool_root = shared("ptbxl-subset"), shared("ptbxl-pool")
    sub = ptbxl.folds_to_splits(ptbxl.ptbxl_manifest(sub_root, label="MI"),
                                pretrain_folds=[1, 2, 3, 4, 5])
    pool_df = ptbxl.ptbxl_manifest(pool_root, label=None)
    default = ptbxl.add_pretraining_pool(sub, pool_df, verbose=False)
    kept = default[default["pretraining_pool"] == 1]
    assert not kept["strat_fold"].isin([9, 10]).any()          # PTB-XL's valid and test folds
    assert default.attrs["pool_summary"]["dropped_held_out_fold"] == 388
    out = ptbxl.add_pretraining_pool(sub, pool_df, exclude_folds=())
    check_patient_disjoint(out)
    # expected from the raw tables: pool ECGs whose patient is in subset folds 6-10 are dropped
    raw_sub = pd.read_csv(os.path.join(sub_root, "ptbxl_database_subset.csv"))
    raw_pool = pd.read_csv(os.path.join(pool_root, "labels.csv"))
    down = set(raw_sub.loc[raw_sub["strat_fold"] >= 6, "patient_id"].astype(int))
    pre = set(raw_sub.loc[raw_sub["strat_fold"] <= 5, "patient_id"].astype(int))
    expect_dropped = set(raw_pool.loc[raw_pool["patient_id"].isin(down), "ecg_id"])
    pool = out[out["pretraining_pool"] == 1]
    assert set(raw_pool["ecg_id"]) - set(pool["ecg_id"]) == expect_dropped
    assert len(expect_dropped) == 28
    joined = raw_pool["patient_id"].isin(pre)
    assert int(joined.sum()) + len(expect_dropped) == int(raw_pool["patient_in_shared"].sum())
    assert set(pool["split"]) == {"train1", "valid1"} and pool["label"].isna().all()
    s = out.attrs["pool_summary"]
    assert (s["kept"], s["dropped_downstream_patient"], s["joined_pretraining_patient"]) == (
        1631, 28, 14)
    # the subset's downstream splits are untouched
    t, t0 = split_summary(out), split_summary(sub)
    for name in ("train2", "valid2", "test"):
        assert t.loc[name].tolist() == t0.loc[name].tolist()
    assert t.loc["train1", "unlabelled"] + t.loc["valid1", "unlabelled"] == 1631
    assert all(os.path.exists(record_path(out, r) + ".hea") for _, r in out.iterrows())


def test_shared_pool_record_reads_as_float32_mv():
    root = shared("ptbxl-pool")
    x = read_record(os.path.join(root, "records500", "00000", "00001_hr"))  # WFDB format 516
    assert x.shape == (12, 5000) and x.dtype == np.float32
    assert np.isfinite(x).all() and 0.05 < float(np.abs(x).max()) < 20       # mV, not adu/uV
