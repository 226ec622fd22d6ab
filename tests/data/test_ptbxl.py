import pytest

from ecg_moco_tf.data import ptbxl
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
