import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data import manifest, synthetic
from ecg_moco_tf.data.records import LEADS, write_wfdb
from ecg_moco_tf.evaluation import realism
from ecg_moco_tf.explain.attribution import DelineationError


def test_measures_of_a_synthetic_ecg_match_how_it_was_made():
    sig, _, ecg = synthetic.generate(synthetic.CohortConfig(num_patients=4, prevalence=0,
                                                            seed=2))
    for x, (_, row) in zip(sig, ecg.iterrows()):
        m = realism.measure_record(x, record="s")
        assert abs(m["hr"] - row["hr"]) < 0.1 * row["hr"]
        assert 60 < m["qrs"] < 130 and 90 < m["pr"] < 260 and 340 < m["qtc"] < 520
        assert m["r_amp_V6"] > m["s_amp_V6"] and m["s_amp_V1"] > m["r_amp_V1"]
        assert m["t_amp_aVR"] < 0 < m["t_amp_II"]
        assert 0.8 < m["beat_corr"] < 1 and m["noise_uv_II"] > 0


def test_a_record_without_beats_names_itself():
    t = np.arange(5000) / 500
    x = np.tile(np.sin(2 * np.pi * 0.2 * t), (12, 1))
    with pytest.raises(DelineationError, match="flatline_7"):
        realism.measure_record(x, record="flatline_7")


def _with_bad_records(cohort, folder):
    """The cohort's manifest plus two ECG-less records and one missing file."""
    t = np.arange(5000) / 500
    rows = []
    for i in range(2):
        name = os.path.join(folder, f"slow_sine_{i}")
        write_wfdb(name, np.tile(np.sin(2 * np.pi * 0.2 * t + i), (12, 1)), 500)
        rows.append({"record": name, "patient_id": f"bad{i}", "label": 0})
    rows.append({"record": os.path.join(folder, "missing"), "patient_id": "bad2", "label": 0})
    bad = pd.DataFrame(rows)
    abs_cohort = cohort.assign(record=[os.path.join(cohort.attrs["root"], r)
                                       for r in cohort["record"]])
    df = pd.concat([abs_cohort, bad], ignore_index=True)
    df.attrs["root"] = os.sep
    return df


def test_unusable_records_are_listed_never_dropped_silently(small_cohort, tmp_path):
    real = _with_bad_records(small_cohort, str(tmp_path))
    res = realism.compare_manifests(real, small_cohort, max_records=1000, progress=False,
                                    discriminator=False, figure=str(tmp_path / "f.png"))
    problems = res["problems"]
    assert sorted(problems["record"].map(os.path.basename)) == [
        "missing", "slow_sine_0", "slow_sine_1"]
    assert (problems["side"] == "real").all()
    assert problems["problem"].str.contains("do not resemble|not found").all()
    s = res["summary"]
    n_patients = small_cohort["patient_id"].nunique()
    assert s["n_real"] == s["n_synthetic"] == n_patients and s["n_real_left_out"] == 3
    assert s["lead_p2p_max_rel_error"] == 0.0          # the same ECGs on both sides
    assert s["discriminator_auc"] is None and os.path.getsize(tmp_path / "f.png") > 10_000
    lines = []
    realism.report(res, out=lines.append)
    assert "3 record(s) left out:" in lines[0] and "slow_sine_0" in "\n".join(lines[1:4])
    assert json.loads(lines[-1])["n_real_left_out"] == 3
    with pytest.raises(SystemExit, match=r"only \d+ usable real record\(s\) of 40 .*at least 50"):
        realism.compare_manifests(real, small_cohort, max_records=40, progress=False,
                                  discriminator=False)


def test_cli_compares_and_refuses_too_few_records(small_cohort, tmp_path):
    path = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    args = [sys.executable, "-m", "ecg_moco_tf.cli.main", "realism", f"--real={path}",
            f"--synthetic={path}", "--label=0", "--nodiscriminator", f"--out={tmp_path}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["lead_p2p_max_rel_error"] == 0.0 and summary["n_real"] >= 50
    table = pd.read_csv(tmp_path / "realism_table.csv")
    assert set(table.loc[table["measure"] == "p2p", "lead"]) == set(LEADS)
    broken = os.path.join(small_cohort.attrs["root"], "manifest_with_a_missing_record.csv")
    m = pd.read_csv(path)
    extra = m.head(1).assign(record="no_such_record", patient_id="P_new", label=1)
    pd.concat([m, extra]).to_csv(broken, index=False)
    args[args.index("--label=0")] = "--label=1"       # a few positive patients only
    args[args.index(f"--real={path}")] = f"--real={broken}"
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "usable real record(s)" in last and "at least 50" in last
    assert "no_such_record" in last                   # the left-out record, with its reason


def test_discriminator_tells_apart_what_differs():
    from tests.sizes import TINY

    sig, _, ecg = synthetic.generate(synthetic.CohortConfig(num_patients=25, seed=1))
    other = sig * 2.5 + 0.3 * np.sin(2 * np.pi * 50 * np.arange(5000) / 500)
    res = realism.discriminator_auc(other, sig, ecg["patient_id"], ecg["patient_id"], seed=0,
                                    epochs=4, encoder_kwargs=TINY)
    assert res["discriminator_auc"] > 0.9
    assert sum(res["discriminator_n"].values()) == 2 * len(sig)
