import os
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import wfdb

from ecg_moco_tf.data.records import (LEADS, ReadOptions, RecordError, read_record, standardize,
                                      write_wfdb)
from tests.conftest import shared


def _ecg(rng, n=5000):
    t = np.arange(n) / 500
    return (np.sin(2 * np.pi * 1.2 * t)[None] * np.linspace(0.5, 1.5, 12)[:, None]
            + 0.01 * rng.standard_normal((12, n))).astype(np.float32)


def test_lead_order_taken_from_names_not_position(rng):
    x = _ecg(rng)
    perm = rng.permutation(12)
    names = [LEADS[i].upper() for i in perm]          # 'AVL' style spelling, shuffled
    out = standardize(x[perm].T, 500, names)
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_resample_400hz_and_pad_policy(rng):
    t = np.arange(2934) / 400                              # CODE-15 short record: 7.3 s
    x = np.tile(np.sin(2 * np.pi * 5 * t), (12, 1)) + np.arange(12)[:, None] * 0.01
    out = standardize(x, 400, LEADS)
    assert out.shape == (12, 5000) and out.dtype == np.float32
    n = int(round(2934 * 500 / 400))
    # 5 Hz sine keeps its frequency after resampling: peak spacing 100 samples at 500 Hz
    peaks = np.where((out[0, 1:n - 1] > out[0, :n - 2]) & (out[0, 1:n - 1] > out[0, 2:n]))[0]
    assert np.allclose(np.diff(peaks)[2:-2], 100, atol=1)
    assert np.all(out[:, n + 1:] == 0)                     # zero-padded at the end


def test_long_record_center_crop(rng):
    x = np.tile(np.arange(15000, dtype=float), (12, 1)) + rng.random((12, 1))
    out = standardize(x, 500, LEADS, options=ReadOptions(check_amplitude=False))   # a ramp
    assert out[0, 0] == pytest.approx(x[0, 5000], abs=1e-3)
    out = standardize(x, 500, LEADS, options=ReadOptions(crop="start", check_amplitude=False))
    assert out[0, 0] == pytest.approx(x[0, 0], abs=1e-3)


def test_extra_leads_are_refused_or_dropped_and_standardize_says_what_it_does(rng):
    x = _ecg(rng)
    names = ["vx"] + list(LEADS[::-1]) + ["vy"]          # 14 leads, standard ones reversed
    raw = np.concatenate([x[:1] + 5, x[::-1], x[:1] - 5]).T      # samples x leads
    with pytest.raises(RecordError, match=r"2 lead\(s\) \['vx', 'vy'\] beyond the 12") as e:
        standardize(raw, 500, names, record="frank")
    assert "ReadOptions(drop_extra_leads=True)" in str(e.value) and "rename" not in str(e.value)
    info = {}
    out = standardize(raw[::5], 100, names, options=ReadOptions(drop_extra_leads=True),
                      info=info)
    assert out.shape == (12, 5000)
    np.testing.assert_allclose(out[:, ::5][:, 1:-1], x[:, ::5][:, 1:-1], atol=0.2)
    assert info["fs"] == 100 and info["leads"] == 14 and info["seconds"] == 10
    assert info["actions"] == ["drop extra lead(s) ['vx', 'vy']", "resample 100 -> 500 Hz"]
    standardize(x[:, :3000], 500, LEADS, info=info)
    assert info["actions"] == ["zero-pad 6.00 -> 10 s"]


@pytest.mark.parametrize("mutate, message", [
    (lambda x, n: (x[:8], n[:8]), "has 8 leads"),
    (lambda x, n: (x, n[:11] + ["V7"]), r"missing \['V6'\], unknown \['V7'\]"),
    (lambda x, n: (x, n[:11] + ["V5"]), "duplicated lead name"),
    (lambda x, n: (np.where(np.arange(5000) == 7, np.nan, x), n), "NaN/Inf"),
    (lambda x, n: (np.where(np.arange(5000) == 9, np.inf, x), n), "NaN/Inf"),
    (lambda x, n: (np.concatenate([x[:3], np.zeros((1, 5000)), x[4:]]), n), "flat"),
    (lambda x, n: (x[:, :1000], n), "only 2.00 s long"),
])
def test_bad_records_raise_with_record_name(rng, mutate, message):
    x, names = mutate(_ecg(rng), list(LEADS))
    with pytest.raises(RecordError, match=message) as e:
        standardize(x, 500, names, record="rec42")
    assert e.value.record == "rec42" and "rec42" in str(e.value)


def test_wfdb_writer_roundtrip_with_wfdb_package(tmp_path, rng):
    x = _ecg(rng)
    write_wfdb(str(tmp_path / "r1"), x, 500, comments=["hello"])
    rec = wfdb.rdrecord(str(tmp_path / "r1"))
    assert rec.sig_name == list(LEADS) and rec.fs == 500
    np.testing.assert_allclose(rec.p_signal.T, x, atol=5e-4 + 1e-6)
    np.testing.assert_allclose(read_record(str(tmp_path / "r1")), x, atol=5e-4 + 1e-6)


def test_numpy_and_hdf5_readers(tmp_path, rng):
    x = _ecg(rng)
    np.savez(tmp_path / "a.npz", signal=x.T, fs=500, leads=np.array(LEADS))
    np.testing.assert_allclose(read_record(str(tmp_path / "a.npz")), x, atol=1e-6)
    np.save(tmp_path / "b.npy", x)
    with pytest.raises(RecordError, match="lead names are unknown"):
        read_record(str(tmp_path / "b.npy"), fs=500)
    np.testing.assert_allclose(read_record(str(tmp_path / "b.npy"), fs=500, leads=LEADS), x,
                               atol=1e-6)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ds = f.create_dataset("signal", data=np.stack([x.T, 2 * x.T]))
        ds.attrs["fs"] = 500
        ds.attrs["leads"] = list(LEADS)
    np.testing.assert_allclose(read_record(str(tmp_path / "c.h5") + "#1"), 2 * x, atol=1e-5)


def test_missing_and_corrupt_files(tmp_path, rng):
    with pytest.raises(RecordError, match="not found"):
        read_record(str(tmp_path / "nothere"))
    with pytest.raises(RecordError, match="not found"):
        read_record(str(tmp_path / "nothere.npz"))
    write_wfdb(str(tmp_path / "r"), _ecg(rng), 500)
    (tmp_path / "r.hea").write_text("r 12 abc 5000\ngarbage line\n")
    with pytest.raises(RecordError, match="cannot read WFDB record"):
        read_record(str(tmp_path / "r"))
    write_wfdb(str(tmp_path / "s"), _ecg(rng), 500)
    with open(tmp_path / "s.dat", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(RecordError, match="cannot read WFDB record.*corrupt or truncated"):
        read_record(str(tmp_path / "s"))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(RecordError, match="cannot read NumPy"):
        read_record(str(tmp_path / "bad.npy"), fs=500, leads=LEADS)


def test_real_ptbxl_challenge_and_code15_records_load():
    for sub, fs in (("ptbxl-subset", 500), ("cinc2020-2021-sample", 500), ("code15-sample", 400)):
        root = shared(sub)
        lab = pd.read_csv(os.path.join(root, "labels.csv"))
        for rec in lab["record"].iloc[:8]:
            raw = wfdb.rdrecord(os.path.join(root, rec))
            assert raw.fs == fs
            x = read_record(os.path.join(root, rec))
            assert x.shape == (12, 5000) and x.dtype == np.float32 and np.isfinite(x).all()
            # lead I of the file is lead I of the standard array (after resampling)
            i = [n.upper() for n in raw.sig_name].index("I")
            if fs == 500 and raw.sig_len == 5000:
                np.testing.assert_allclose(x[0], raw.p_signal[:, i], atol=1e-5)


def test_real_challenge_flat_leads_are_reported():
    root = shared("cinc2020-2021-sample")
    with pytest.raises(RecordError, match=r"flat .*V2"):
        read_record(os.path.join(root, "records", "JS20004"))


def _real_ptbxl():
    root = shared("ptbxl-subset")
    rec = pd.read_csv(os.path.join(root, "labels.csv"))["record"].iloc[0]
    raw = wfdb.rdrecord(os.path.join(root, rec))
    return raw.p_signal.astype(np.float32), list(raw.sig_name)


def test_implausible_amplitudes_are_refused_naming_the_cause():
    x, names = _real_ptbxl()                        # median QRS ~1 mV
    assert standardize(x, 500, names).shape == (12, 5000)
    for scale, cause in ((10, "a wrong header gain (values too large"),
                         (0.1, "a wrong header gain (values too small"),
                         (0.001, "stored in volts"), (1000, "stored in microvolts")):
        with pytest.raises(RecordError, match=r"median QRS peak-to-peak .* mV, outside the "
                                              r"plausible 0.15-8 mV: likely " + re.escape(cause)):
            standardize(x * scale, 500, names, record="r1")
    out = standardize(x * 10, 500, names, options=ReadOptions(check_amplitude=False))
    np.testing.assert_allclose(out, standardize(x, 500, names) * 10, rtol=1e-5, atol=1e-5)


def test_swapped_limb_leads_are_flagged_and_eight_leads_are_completed():
    from ecg_moco_tf.data.records import lead_consistency

    x, names = _real_ptbxl()
    std = standardize(x, 500, names)
    assert lead_consistency(std) == []
    swapped = std.copy()
    swapped[[0, 1]] = swapped[[1, 0]]                 # I and II exchanged
    assert any("III = II - I" in w for w in lead_consistency(swapped))
    keep = [names.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
    info = {}
    eight = standardize(x[:, keep], 500, ["DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"],
                        info=info)
    np.testing.assert_allclose(eight, std, atol=0.002)      # PTB-XL's own limb leads: derived
    assert "derive III, aVR, aVL, aVF from I and II (8-lead record)" in info["actions"]
