"""`ecg-moco manifest`: a manifest from a folder of records, patient ids and a label join."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data import LEADS, read_manifest, write_wfdb
from ecg_moco_tf.data.folder import find_records, manifest_from_folder
from ecg_moco_tf.data.manifest import ManifestError, load_records
from tests.conftest import shared


def _ecg(rng, n=5000):
    return rng.normal(0, 0.1, (12, n)).astype(np.float32)


@pytest.fixture
def folder(tmp_path, rng):
    """Two WFDB records of patient 7 in a subfolder, one .npz of patient 8, a stacked HDF5."""
    (tmp_path / "site" / "a").mkdir(parents=True)
    write_wfdb(str(tmp_path / "site" / "a" / "7_ecg1"), _ecg(rng))
    write_wfdb(str(tmp_path / "site" / "a" / "7_ecg2"), _ecg(rng))
    np.savez(tmp_path / "8_ecg1.npz", signal=_ecg(rng).T, fs=500, leads=np.array(LEADS))
    with h5py.File(tmp_path / "9_batch.h5", "w") as f:
        f.create_dataset("signal", data=np.stack([_ecg(rng).T, _ecg(rng).T]))
        f.attrs["fs"], f.attrs["leads"] = 500, list(LEADS)
    (tmp_path / "notes.txt").write_text("not a record")
    return tmp_path


def test_finds_every_format_and_reads_back(folder, tmp_path):
    assert find_records(str(folder)) == ["8_ecg1.npz", "9_batch.h5#0", "9_batch.h5#1",
                                         "site/a/7_ecg1", "site/a/7_ecg2"]
    df, notes = manifest_from_folder(str(folder), patient_regex=r"(\d+)_")
    assert list(df["patient_id"]) == ["8", "9", "9", "7", "7"]
    assert "--patient_regex" in notes[1] and notes[-1] == "3 patients"
    from ecg_moco_tf.data.manifest import write_manifest

    path = write_manifest(df, str(tmp_path / "out" / "m.csv"))     # paths relative to out/
    res = load_records(read_manifest(path), progress=False)
    assert res.signals.shape == (5, 12, 5000) and not len(res.problems)


def test_default_is_one_patient_per_record_and_says_so(folder):
    df, notes = manifest_from_folder(str(folder))
    assert (df["patient_id"] == df["record"]).all()
    assert any("one patient per record" in n for n in notes)


def test_labels_join_by_file_name_with_booleans_and_extra_columns(folder, tmp_path):
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": ["7_ecg1", "7_ecg2", "8_ecg1", "unknown"], "pid": ["p7", "p7", "p8",
                  "p9"], "AF": ["True", "False", "1", "0"], "age": [60, 61, 70, 50],
                  "fs": [1, 1, 1, 1]}).to_csv(csv, index=False)
    df, notes = manifest_from_folder(str(folder / "site"), labels=str(csv), id_column="file",
                                     label_column="AF", patient_column="pid")
    assert list(df["label"]) == [1, 0] and list(df["patient_id"]) == ["p7", "p7"]
    assert list(df["age"]) == ["60", "61"] and list(df["fs"].astype(int)) == [1, 1]
    assert "2 of 2 records matched by file name" in notes[1] and "not copied" not in notes[1]
    with pytest.raises(ManifestError, match=r"no column\(s\) \['MI'\].*\['file', 'pid'"):
        manifest_from_folder(str(folder / "site"), labels=str(csv), id_column="file",
                             label_column="MI")
    with pytest.raises(ManifestError, match="no 'pid'"):   # a record without a patient id
        manifest_from_folder(str(folder), labels=str(csv), id_column="file",
                             patient_column="pid")


def test_labels_csv_whose_ids_match_no_record_is_refused(folder, tmp_path):
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"record": ["00001_hr", "00002_hr"], "MI": [1, 0]}).to_csv(csv, index=False)
    with pytest.raises(ManifestError, match=r"none of its 2 id_column=record values matches "
                       r"a record.*'00001_hr'.*'a/7_ecg1'"):
        manifest_from_folder(str(folder / "site"), labels=str(csv), label_column="MI")


def test_regex_that_does_not_match_names_the_record(folder):
    with pytest.raises(ManifestError, match=r"does not match record '8_ecg1.npz'"):
        manifest_from_folder(str(folder), patient_regex=r"^site/")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "manifest", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_empty_folder_and_bad_flags_are_one_line_exit_2(tmp_path):
    r = _cli(f"--root={tmp_path}", f"--out={tmp_path}/m.csv")
    assert r.returncode == 2 and "no records" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.csv").exists()
    r = _cli(f"--root={tmp_path}", "--label_column=MI")
    assert r.returncode == 2 and "need --labels" in r.stderr


def test_cli_on_the_shared_code15_sample(tmp_path):
    root = shared("code15-sample")
    r = _cli(f"--root={root}", f"--labels={root}/labels.csv", "--label_column=RBBB",
             "--patient_column=patient_id", f"--out={tmp_path}/m.csv")
    assert r.returncode == 0, r.stderr
    assert "10 of 10 records matched" in r.stdout and "3 positive, 7 negative" in r.stdout
    df = read_manifest(str(tmp_path / "m.csv"))
    assert len(df) == 10 and df["label"].sum() == 3 and "age" in df
    r = _cli(f"--root={root}", f"--out={tmp_path}/m.csv")        # an existing manifest is kept
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert read_manifest(str(tmp_path / "m.csv"))["label"].sum() == 3
    assert not len(load_records(df, on_error="skip", progress=False).problems)


def test_labels_csv_with_the_manifest_column_names_is_joined(folder, tmp_path):
    """A labels CSV that uses the manifest's own names (record, patient_id, label) gives them:
    no label or patient is lost; a label column beside --label_column is said not copied."""
    pd.DataFrame({"record": ["site/a/7_ecg1", "site/a/7_ecg2", "8_ecg1.npz", "9_batch.h5#0",
                             "9_batch.h5#1"], "patient_id": ["P7", "P7", "P8", "P9", "P9"],
                  "label": [1, 0, 1, None, 0], "LVSD": [0, 0, 1, 0, 0]}).to_csv(
        tmp_path / "labels.csv", index=False)
    df, notes = manifest_from_folder(str(folder), labels=str(tmp_path / "labels.csv"))
    got = df.set_index("record")
    assert list(got.loc[["site/a/7_ecg1", "site/a/7_ecg2", "8_ecg1.npz"], "label"]) == [1, 0, 1]
    assert list(got.loc[["site/a/7_ecg1", "8_ecg1.npz"], "patient_id"]) == ["P7", "P8"]
    assert any("'label' and 'patient_id' column(s) carry the manifest's names" in n
               for n in notes)
    df, notes = manifest_from_folder(str(folder), labels=str(tmp_path / "labels.csv"),
                                     label_column="LVSD", patient_column="patient_id")
    assert list(df.set_index("record").loc[["8_ecg1.npz", "site/a/7_ecg1"], "label"]) == [1, 0]
    assert any("not copied: 'label' (--label_column=LVSD gives the label)" in n for n in notes)


def test_labels_csv_fs_leads_and_split_columns_are_joined(tmp_path, rng):
    """An .npz holding only the signal needs fs and leads from somewhere: the labels CSV's
    columns of those names reach the manifest (and a split column too), and reading works."""
    root = tmp_path / "ecgs"
    root.mkdir()
    x = _ecg(rng, 2500)                                   # 250 Hz, 10 s
    np.savez(root / "a.npz", signal=x.T)
    pd.DataFrame({"record": ["a.npz"], "label": [1], "fs": [250], "leads": [",".join(LEADS)],
                  "split": ["test"]}).to_csv(tmp_path / "labels.csv", index=False)
    df, notes = manifest_from_folder(str(root), labels=str(tmp_path / "labels.csv"))
    row = df.iloc[0]
    assert int(row["fs"]) == 250 and row["leads"] == ",".join(LEADS) and row["split"] == "test"
    assert not any("not copied" in n for n in notes)
    res = load_records(df, on_error="skip", progress=False)
    assert not len(res.problems) and res.signals.shape == (1, 12, 5000)


def test_own_patient_id_column_missing_for_some_records_falls_back_per_record(folder, tmp_path):
    pd.DataFrame({"record": ["site/a/7_ecg1", "site/a/7_ecg2"], "patient_id": ["P7", "P7"],
                  "label": [1, 0]}).to_csv(tmp_path / "labels.csv", index=False)
    df, notes = manifest_from_folder(str(folder), labels=str(tmp_path / "labels.csv"))
    got = df.set_index("record")["patient_id"]
    assert got["site/a/7_ecg1"] == "P7" and got["8_ecg1.npz"] == "8_ecg1.npz"
    assert any("3 record(s) not in" in n and "one patient per record" in n for n in notes)
