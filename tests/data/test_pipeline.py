import os

import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.augment import RandomAugment
from ecg_moco_tf.data import pipeline as P
from ecg_moco_tf.data.manifest import load_records
from ecg_moco_tf.data.records import write_wfdb


def test_manifest_epoch_covers_each_record_once(small_cohort):
    df = small_cohort
    ds = P.supervised(P.manifest_dataset(df, shuffle=True, seed=2), batch_size=16, with_ids=True)
    for _ in range(2):                                             # two epochs, clean stop
        batches = list(ds)
        ids = np.concatenate([b["index"].numpy() for b in batches])
        assert sorted(ids) == list(range(len(df)))
    b = batches[0]
    assert b["signal"].shape[1:] == (12, 5000) and b["signal"].dtype.name == "float32"
    x, y = next(iter(P.supervised(P.manifest_dataset(df), batch_size=4)))
    assert x.shape == (4, 12, 5000) and y.shape == (4,)
    ref = load_records(df.iloc[:4], progress=False).signals
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), df["label"].iloc[:4].astype(float).to_numpy())


def test_shuffle_is_seeded(small_cohort):
    def order(seed):
        ds = P.supervised(P.manifest_dataset(small_cohort, shuffle=True, seed=seed), 64,
                          with_ids=True)
        return np.concatenate([b["index"].numpy() for b in ds]).tolist()

    assert order(1) == order(1) and order(1) != order(2)


def test_two_view_pipeline(small_cohort):
    aug = RandomAugment.default(probability=1.0)
    ds = P.two_view(P.manifest_dataset(small_cohort), aug, batch_size=8, seed=5)
    q, k = next(iter(ds))
    assert q.shape == k.shape == (8, 12, 5000)
    assert not np.allclose(q, k)
    q2, k2 = next(iter(P.two_view(P.manifest_dataset(small_cohort), aug, batch_size=8, seed=5)))
    np.testing.assert_array_equal(q, q2)
    n = sum(int(a.shape[0]) for a, _ in ds)
    assert n == (len(small_cohort) // 8) * 8                      # drop_remainder=True
    e1 = [a.numpy() for a, _ in ds][0]
    e2 = [a.numpy() for a, _ in ds][0]
    assert not np.allclose(e1, e2)                                  # new views each epoch


def test_tfrecords_roundtrip_and_bad_records(small_cohort, tmp_path):
    df = small_cohort.copy()
    df.attrs = dict(small_cohort.attrs)
    written, problems = P.write_tfrecords(df, str(tmp_path / "tfr"), shard_size=40,
                                          progress=False)
    assert sum(written.values()) == len(df) and len(problems) == 0
    files = sorted(os.listdir(tmp_path / "tfr"))
    assert any(f.startswith("train1-00000-of-") for f in files)
    ds = P.supervised(P.tfrecord_dataset(str(tmp_path / "tfr" / "*.tfrecord"), shuffle=True,
                                         seed=0), batch_size=32, with_ids=True)
    batches = list(ds)
    ids = np.concatenate([b["index"].numpy() for b in batches])
    assert sorted(ids) == list(range(len(df)))
    first = batches[0]
    i = int(first["index"][0])
    ref = load_records(df.iloc[[i]], progress=False).signals[0]
    np.testing.assert_allclose(first["signal"][0].numpy(), ref, atol=6e-4)


def test_convert_reports_bad_record(tmp_path, rng):
    for name in ("a", "b"):
        write_wfdb(str(tmp_path / name), rng.standard_normal((12, 5000)))
    df = pd.DataFrame({"record": ["a", "b", "gone"], "patient_id": ["1", "2", "3"],
                       "label": [0, 1, 0], "split": None})
    df.attrs["root"] = str(tmp_path)
    with pytest.raises(ValueError, match="gone"):
        P.write_tfrecords(df, str(tmp_path / "t1"), progress=False)
    written, problems = P.write_tfrecords(df, str(tmp_path / "t2"), on_error="skip",
                                          progress=False)
    assert written == {"all": 2} and problems["record"].tolist() == ["gone"]
    with pytest.raises(Exception, match="gone"):
        list(P.manifest_dataset(df))
