import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data import manifest
from ecg_moco_tf.data.manifest import ManifestError, check_manifest, load_records
from ecg_moco_tf.data.records import RecordError, write_wfdb


def _df(**cols):
    base = {"record": ["a", "b", "c"], "patient_id": ["p1", "p2", "p3"], "label": [0, 1, None]}
    base.update(cols)
    return pd.DataFrame(base)


def test_check_accepts_documented_columns_and_keeps_extras():
    df = check_manifest(_df(extra=[1, 2, 3]))
    assert list(df["label"].astype("Float64").fillna(-1)) == [0, 1, -1]
    assert "extra" in df and df["split"].isna().all()


@pytest.mark.parametrize("cols, message", [
    ({"patient_id": ["p1", None, "p3"]}, "row 1 .*no patient_id"),
    ({"patient_id": ["p1", " ", "p3"]}, "row 1 .*no patient_id"),
    ({"label": [0, 2, 1]}, "label '2' is not 0/1"),
    ({"label": [0, "yes", 1]}, "label 'yes' is not 0/1"),
    ({"split": ["train1", "training", None]}, "split 'training'"),
    ({"record": ["a", "a", "c"]}, "record 'a' is listed twice"),
])
def test_bad_manifest_rows_are_named(cols, message):
    with pytest.raises(ManifestError, match=message):
        check_manifest(_df(**cols))


def test_missing_columns():
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['patient_id'\]"):
        check_manifest(pd.DataFrame({"record": ["a"]}))


def test_many_bad_rows_are_one_line_listing_the_first_ten():
    df = pd.DataFrame({"record": [f"r{i}" for i in range(50)], "patient_id": "p",
                       "label": ["yes", "no"] * 25})
    with pytest.raises(ManifestError) as e:
        check_manifest(df)
    msg = str(e.value)
    assert "\n" not in msg and msg.count("is not 0/1") == 10 and "and 40 more row(s)" in msg
    assert "df['label'] = df['label'].map({'no': 0, 'yes': 1})" in msg


def test_csv_and_parquet_roundtrip(tmp_path):
    df = check_manifest(_df(split=["train1", "test", None]))
    for name in ("m.csv", "m.parquet"):
        manifest.write_manifest(df, str(tmp_path / name))
        back = manifest.read_manifest(str(tmp_path / name))
        assert list(back["record"]) == ["a", "b", "c"]
        assert list(back["split"].fillna("-")) == ["train1", "test", "-"]
        assert back.attrs["root"] == str(tmp_path)


def test_bulk_loader_collects_problems_and_never_drops_silently(tmp_path, rng):
    good = rng.standard_normal((12, 5000)).astype(np.float32)
    write_wfdb(str(tmp_path / "ok1"), good)
    write_wfdb(str(tmp_path / "ok2"), good)
    flat = good.copy()
    flat[3] = 0
    write_wfdb(str(tmp_path / "flat"), flat)
    df = check_manifest(pd.DataFrame({"record": ["ok1", "flat", "missing", "ok2"],
                                      "patient_id": list("abcd"), "label": [0, 1, 0, 1]}))
    df.attrs["root"] = str(tmp_path)
    with pytest.raises(RecordError, match="2 of 4 records") as e:
        load_records(df, progress=False)
    assert "flat" in str(e.value) and "missing" in str(e.value)
    res = load_records(df, on_error="skip", progress=False)
    assert list(res.manifest["record"]) == ["ok1", "ok2"]
    assert res.signals.shape == (2, 12, 5000)
    assert sorted(res.problems["record"]) == ["flat", "missing"]
    assert len(res.manifest) + len(res.problems) == len(df)


def test_write_manifest_elsewhere_keeps_paths_valid(tmp_path, rng):
    (tmp_path / "data").mkdir()
    write_wfdb(str(tmp_path / "data" / "r1"), rng.standard_normal((12, 5000)))
    df = check_manifest(pd.DataFrame({"record": ["r1"], "patient_id": ["p"], "label": [1],
                                      "mask": ["m/r1.npy"]}))
    df.attrs["root"] = str(tmp_path / "data")
    manifest.write_manifest(df, str(tmp_path / "runs" / "x" / "m.csv"))
    back = manifest.read_manifest(str(tmp_path / "runs" / "x" / "m.csv"))
    assert back["record"][0] == "../../data/r1" and back["mask"][0] == "../../data/m/r1.npy"
    assert load_records(back, progress=False).signals.shape == (1, 12, 5000)
