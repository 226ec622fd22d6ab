"""A user's mistake on the command line: one line on stderr naming the problem, exit status 2
(issue 15, section 2), or a warning where the run can go on. The commands run in this process
(fast); the flags of each command are dropped again after its run (see ``cli``)."""
import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from ecg_moco_tf.data.records import LEADS, write_wfdb
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.models.classifier import build_classifier
from tests.sizes import TINY


@pytest.fixture
def cli(capsys):
    """``cli("predict", "--model=...")`` -> (exit status, stdout, stderr) of ``ecg-moco``, run
    in this process. absl keeps flags and its parsing state per process: both are reset after
    each run so that the next command (or the same one) defines its flags afresh."""
    from absl import app, flags

    from ecg_moco_tf.cli.main import run

    base = set(flags.FLAGS)

    def call(*args):
        try:
            rc = run(["ecg-moco", *[str(a) for a in args]])
        finally:
            for name in set(flags.FLAGS) - base:
                delattr(flags.FLAGS, name)
            for mod in [m for m in sys.modules if m.startswith("ecg_moco_tf.cli.")
                        and m.rsplit(".", 1)[1] not in ("main", "common")]:
                del sys.modules[mod]
            flags.FLAGS.unparse_flags()
            app._register_and_parse_flags_with_usage.done = False
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def one_line(err):
    """The usage-error line (the last line of stderr): no traceback above it."""
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


def write_manifest_csv(path, rows, columns=("record", "patient_id", "label", "split")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return str(path)


SPLITS = ["train1"] * 8 + ["valid1"] * 4 + ["train2"] * 6 + ["valid2"] * 4 + ["test"] * 4
TINY_FLAGS = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
              for k, v in TINY.items()]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """26 WFDB records (0.3 mV noise, 500 Hz, 10 s), a manifest with all five splits (labels
    alternate 0/1), and a copy of it with record r1 (train1) truncated (unreadable)."""
    d = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(SPLITS):
        write_wfdb(str(d / f"r{i}"), (rng.standard_normal((12, 5000)) * 0.3).astype("f4"))
        rows.append((f"r{i}", f"p{i}", i % 2, split))
    good = write_manifest_csv(d / "manifest.csv", rows)
    bad_dir = d / "with_broken"
    bad_dir.mkdir()
    for i, row in enumerate(rows):
        for ext in (".hea", ".dat"):
            (bad_dir / f"r{i}{ext}").write_bytes((d / f"r{i}{ext}").read_bytes())
    with open(bad_dir / "r1.dat", "r+b") as f:
        f.truncate(100)
    return d, good, write_manifest_csv(bad_dir / "manifest.csv", rows)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A TINY classifier and a TINY encoder, saved as .keras."""
    d = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    enc = build_encoder(**TINY)
    enc.save(d / "encoder.keras")
    build_classifier(build_encoder(**TINY), hidden_units=4).save(d / "classifier.keras")
    return str(d / "classifier.keras"), str(d / "encoder.keras")


def test_predict_refuses_an_encoder(cli, records, models, tmp_path):
    rc, _, err = cli("predict", f"--model={models[1]}", f"--input={records[0]}",
                     f"--out={tmp_path}/p.csv")
    line = one_line(err)
    assert rc == 2 and "one sigmoid probability" in line and "(None, 16)" in line
    assert not (tmp_path / "p.csv").exists()


def test_finetune_baseline_refuses_a_pretrained_encoder(cli, records, models, tmp_path):
    rc, _, err = cli("finetune", f"--manifest={records[1]}", f"--encoder={models[1]}",
                     "--experiment=baseline_unpretrained", f"--out={tmp_path}/ft")
    assert rc == 2 and "baseline_unpretrained starts from random weights" in one_line(err)


def _manifest(tmp_path, name, **changes):
    """The fixture's manifest with columns changed or dropped (None), rows of nonexistent
    records (enough for the checks that run before any record is read)."""
    df = pd.DataFrame({"record": [f"x{i}" for i in range(26)],
                       "patient_id": [f"p{i}" for i in range(26)],
                       "label": [i % 2 for i in range(26)], "split": SPLITS})
    for k, v in changes.items():
        df = df.drop(columns=k) if v is None else df.assign(**{k: v})
    df.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


# (command and flags; the text the one line must hold). {m}: a manifest from _manifest's
# changes in CHANGES[id]; {t}: tmp_path.
USAGE = {
    "missing columns": (["validate", "--manifest={m}"],
                        ["missing column(s) ['patient_id']", "found ['record'",
                         "needs ['record', 'patient_id']"]),
    "labels yes/no": (["pretrain", "--manifest={m}", "--out={t}/pre"],
                      ["label 'yes' is not 0/1", "df['label'].map({'no': 0, 'yes': 1})"]),
    "no train1": (["pretrain", "--manifest={m}", "--out={t}/pre"],
                  ["needs train1 and valid1 ECGs", "ecg-moco split"]),
    "no valid2": (["finetune", "--manifest={m}", "--experiment=baseline_unpretrained",
                   "--out={t}/ft"], ["needs labelled valid2 ECGs", "ecg-moco split"]),
    "batch vs shuffle-BN": (["pretrain", "--manifest={m}", "--out={t}/pre", "--batch_size=3",
                             "--queue_size=4", "--shuffle_bn_splits=2"],
                            ["--batch_size=3 must be a multiple of --shuffle_bn_splits=2"]),
    "unknown augmentation": (["pretrain", "--manifest={m}", "--out={t}/pre",
                              "--augmentations=GaussianNoise,Sharpen"],
                             ["unknown augmentation(s) ['Sharpen']", "GaussianNoise"]),
    "threshold": (["predict", "--model={t}/m.keras", "--input={t}", "--threshold=1.5"],
                  ["--threshold=1.5", "[0.0, 1.0]"]),
    "flagfile": (["pretrain", "--flagfile={t}/nope.flags"],
                 ["Unable to open flagfile", "nope.flags"]),
    "manifest and ptbxl_root": (["reproduce", "--manifest={m}", "--ptbxl_root={t}",
                                 "--out={t}/r"], ["give one of them"]),
    "empty manifest": (["split", "--manifest={m}"], ["has no rows"]),
}
CHANGES = {"missing columns": {"patient_id": None, "label": None, "split": None},
           "labels yes/no": {"label": ["yes", "no"] * 13},
           "no train1": {"split": None},
           "no valid2": {"split": [s.replace("valid2", "train2") for s in SPLITS]}}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_mistake_is_one_line_naming_it_and_exit_2(case, cli, tmp_path):
    args, expected = USAGE[case]
    m = _manifest(tmp_path, "m.csv", **CHANGES.get(case, {}))
    if case == "empty manifest":
        pd.read_csv(m).head(0).to_csv(m, index=False)
    rc, _, err = cli(*[a.format(m=m, t=tmp_path) for a in args])
    line = one_line(err)
    assert rc == 2, err
    for text in expected:
        assert text in line, (text, line)


def test_a_file_that_is_not_a_manifest(cli, tmp_path):
    (tmp_path / "notes.csv").write_bytes(bytes(range(256)) * 4)
    rc, _, err = cli("validate", f"--manifest={tmp_path / 'notes.csv'}")
    assert rc == 2 and "is not a CSV/Parquet manifest" in one_line(err)


def test_ptbxl_pretraining_folds_must_not_overlap_valid2_and_test(cli, tmp_path):
    from tests.conftest import shared

    root = shared("ptbxl-subset")
    rc, _, err = cli("ptbxl", f"--root={root}", "--pretrain_folds=1,2,9",
                     f"--out={tmp_path}/m.csv")
    line = one_line(err)
    assert rc == 2 and "include fold(s) [9]" in line and "1-8" in line
    assert not (tmp_path / "m.csv").exists()


def test_predict_empty_folder_new_out_folder_and_extra_leads(cli, records, models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli("predict", f"--model={models[0]}", f"--input={empty}")
    assert rc == 2 and "no records" in one_line(err) and str(empty) in one_line(err)
    d = tmp_path / "frank"
    d.mkdir()
    x = np.random.default_rng(1).standard_normal((15, 5000)) * 0.3
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "vx",
             "vy", "vz"]
    write_wfdb(str(d / "r15"), x, leads=leads)
    out = tmp_path / "new" / "folder" / "p.csv"
    rc, _, err = cli("predict", f"--model={models[0]}", f"--input={d}", f"--out={out}")
    line = one_line(err)
    assert rc == 2 and "r15" in line and "['vx', 'vy', 'vz'] beyond the 12" in line
    assert "--drop_extra_leads" in line and "rename" not in line and not out.exists()
    rc, stdout, _ = cli("predict", f"--model={models[0]}", f"--input={d}", f"--out={out}",
                        "--drop_extra_leads")
    assert rc == 0 and "scored 1 of 1" in stdout
    assert pd.read_csv(out)["p_positive"].between(0, 1).all()


def test_predict_microvolts_raise_or_skip_with_problems_csv(cli, records, models, tmp_path):
    d = tmp_path / "ecgs"
    d.mkdir()
    x = np.random.default_rng(2).standard_normal((12, 5000)) * 0.3
    np.savez(d / "uv.npz", signal=x * 1000, fs=500, leads=np.array(LEADS))
    np.savez(d / "mv.npz", signal=x, fs=500, leads=np.array(LEADS))
    rc, _, err = cli("predict", f"--model={models[0]}", f"--input={d}",
                     f"--out={tmp_path}/p.csv")
    line = one_line(err)
    assert rc == 2 and "uv.npz" in line and "millivolts" in line and "mv.npz:" not in line
    assert "1 of 2 records cannot be used" in line and line.count(" -> ") == 1
    assert "pass --accept_amplitude" in line and "pass --on_error=skip" in line
    assert "ReadOptions" not in line and "on_error='skip'" not in line
    rc, stdout, _ = cli("predict", f"--model={models[0]}", f"--input={d}",
                        f"--out={tmp_path}/p.csv", "--on_error=skip")
    assert rc == 1 and "1 of 2 record(s) skipped" in stdout
    assert list(pd.read_csv(tmp_path / "p.csv")["record"]) == ["mv.npz"]
    problems = pd.read_csv(tmp_path / "problems.csv")
    assert list(problems["record"]) == ["uv.npz"] and "millivolts" in problems["problem"][0]
    assert "--accept_amplitude" in problems["problem"][0]


def test_unreadable_record_stops_training_and_export_before_any_work(cli, records, models,
                                                                     tmp_path):
    bad = records[2]
    for args in (["pretrain", f"--out={tmp_path}/pre", "--queue_size=4", "--batch_size=4"],
                 ["finetune", "--experiment=baseline_full_labels", f"--out={tmp_path}/ft"],
                 ["export", f"--model={models[0]}", f"--out={tmp_path}/ex",
                  "--heldout_split=train1", "--formats=savedmodel"]):
        rc, _, err = cli(*args, f"--manifest={bad}")
        line = one_line(err)
        assert rc == 2 and "1 of" in line and "r1: cannot read WFDB" in line, (args, line)
        assert "--on_error=skip" in line
    assert not any((tmp_path / n).exists() for n in ("ft/classifier.keras", "ex/savedmodel"))


def test_on_error_skip_trains_exports_and_lists_the_record(cli, records, models, tmp_path,
                                                           monkeypatch):
    """finetune and export run for real; pretrain's training itself (tested in
    tests/training) is replaced here by a recorder of the ECGs it is given."""
    import ecg_moco_tf.training.pretrain as P

    given = {}
    monkeypatch.setattr(P, "pretrain", lambda train, valid, *a, **k: given.update(
        train=list(train["record"]), valid=list(valid["record"])))
    bad = records[2]
    tiny = [*TINY_FLAGS, "--epochs=1", "--batch_size=4", "--seed=0"]
    runs = {"pre": ["pretrain", "--queue_size=4", "--batch_size=4"],
            "ft": ["finetune", "--experiment=baseline_full_labels", "--learning_rates=1e-3",
                   *tiny],
            "ex": ["export", f"--model={models[0]}", "--heldout_split=train1",
                   "--formats=savedmodel"]}
    for name, args in runs.items():
        rc, stdout, err = cli(*args, f"--manifest={bad}", f"--out={tmp_path / name}",
                              "--on_error=skip")
        assert rc == 0, (name, err[-2000:])
        assert "record(s) skipped (unreadable)" in stdout, name
        problems = pd.read_csv(tmp_path / name / "problems.csv")
        assert list(problems["record"]) == ["r1"], name
    assert given["train"] == [f"r{i}" for i in range(8) if i != 1]
    assert given["valid"] == ["r8", "r9", "r10", "r11"]
    assert (tmp_path / "ft" / "classifier.keras").exists()
    assert pd.read_csv(tmp_path / "ft" / "test_predictions.csv")["record"].tolist() == [
        "r22", "r23", "r24", "r25"]
    card = json.loads((tmp_path / "ex" / "model_card.json").read_text())
    assert card["skipped_records"][0]["record"] == "r1"
    assert card["heldout_ecgs"] == "7 of 8 'train1' ECGs; 1 unreadable left out"


def test_validate_warns_about_gain_and_low_rate_and_says_what_it_will_do(cli, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 7500)) * 0.3
    x[2], x[3] = x[1] - x[0], -(x[0] + x[1]) / 2                       # consistent limb leads
    write_wfdb(str(tmp_path / "ok15s"), x)                            # cropped
    write_wfdb(str(tmp_path / "gain"), x[:, :5000] * 10)              # ~25 mV peak-to-peak
    write_wfdb(str(tmp_path / "slow"), x[:, :1000], fs=100)           # 100 Hz, resampled
    write_wfdb(str(tmp_path / "short"), x[:, :4000])                  # 8 s, zero-padded
    m = write_manifest_csv(tmp_path / "m.csv", [(r, r, "", "") for r in
                                                 ("ok15s", "gain", "slow", "short")])
    report = tmp_path / "new" / "report.csv"
    rc, stdout, err = cli("validate", f"--manifest={m}", f"--report={report}")
    assert rc == 1, err
    assert "3 of 4 records OK, 1 with warnings, 1 with problems" in stdout
    assert "resample 1 record(s)" in stdout and "crop 1 record(s)" in stdout
    assert "zero-pad 1 record(s)" in stdout
    rep = pd.read_csv(report).set_index("record").fillna("")
    assert rep.loc["gain", "status"] == "error"                 # median QRS ~18 mV: x10 gain
    assert "a wrong header gain (values too large" in rep.loc["gain", "message"]
    assert rep.loc["slow", "status"] == "warning" and "below 250 Hz" in rep.loc["slow", "message"]
    assert rep.loc["slow", "actions"] == "resample 100 -> 500 Hz"
    assert rep.loc["ok15s", "actions"] == "crop (center) 15.00 -> 10 s"
    assert rep.loc["short", "actions"] == "zero-pad 8.00 -> 10 s"
    assert rep.loc["ok15s", "status"] == rep.loc["short", "status"] == "ok"


def test_predict_scores_but_flags_swapped_limb_leads_and_reads_volts(cli, models, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 5000)) * 0.3
    x[2], x[3] = x[1] - x[0], -(x[0] + x[1]) / 2                       # consistent limb leads
    x[4], x[5] = x[0] - x[1] / 2, x[1] - x[0] / 2                      # aVL, aVF
    d = tmp_path / "ecgs"
    d.mkdir()
    write_wfdb(str(d / "ok"), x)
    write_wfdb(str(d / "swapped"), x[[1, 0] + list(range(2, 12))])     # I and II swapped
    import wfdb

    wfdb.wrsamp("volts", fs=500, units=["V"] * 12, sig_name=list(LEADS),
                p_signal=(x / 1000).T, fmt=["32"] * 12, adc_gain=[1e6] * 12,
                baseline=[0] * 12, write_dir=str(d))                   # stored in volts
    eight = [0, 1] + list(range(6, 12))                                 # I, II, V1-V6
    write_wfdb(str(d / "vi8"), x[eight], leads=[LEADS[i] for i in eight])
    out = tmp_path / "p.csv"
    rc, stdout, err = cli("predict", f"--model={models[0]}", f"--input={d}", f"--out={out}")
    assert rc == 0, err
    assert "1 of 4 records have 8 leads (I, II, V1-V6): III, aVR, aVL and aVF derived" in stdout
    df = pd.read_csv(out, keep_default_na=False).set_index("record")
    assert abs(df.loc["vi8", "p_positive"] - df.loc["ok", "p_positive"]) < 1e-4
    df = df.drop("vi8")
    assert list(df.index) == ["ok", "swapped", "volts"]
    assert "III = II - I" in df.loc["swapped", "warning"]
    assert df.loc["ok", "warning"] == df.loc["volts", "warning"] == ""
    assert abs(df.loc["volts", "p_positive"] - df.loc["ok", "p_positive"]) < 1e-4
    assert "warning: 1 scored record(s) look wrong" in stdout and "swapped:" in stdout
    # a manifest column named like an output column is kept under another name, not replaced
    m = tmp_path / "m.csv"
    pd.DataFrame({"record": [str(d / "ok")], "patient_id": [1], "warning": ["mine"]}).to_csv(
        m, index=False)
    rc, _, err = cli("predict", f"--model={models[0]}", f"--input={m}", f"--out={m}")
    assert rc == 2 and "is the --input manifest" in one_line(err)            # not replaced
    assert list(pd.read_csv(m).columns) == ["record", "patient_id", "warning"]
    rc, _, err = cli("predict", f"--model={models[0]}", f"--input={m}", f"--out={out}")
    assert rc == 0, err
    row = pd.read_csv(out, keep_default_na=False).iloc[0]
    assert row["manifest_warning"] == "mine" and row["warning"] == ""
    assert "kept as manifest_warning" in err


def test_traceback_with_verbosity_debug_or_environment(cli, tmp_path, monkeypatch):
    m = _manifest(tmp_path, "m.csv", patient_id=None)
    from ecg_moco_tf.data.manifest import ManifestError

    with pytest.raises(ManifestError, match="missing column"):
        cli("validate", f"--manifest={m}", "--verbosity=debug")
    monkeypatch.setenv("ECG_MOCO_DEBUG", "1")
    with pytest.raises(ManifestError, match="missing column"):
        cli("validate", f"--manifest={m}")


def test_exit_status_2_in_a_fresh_process(tmp_path):
    """The same path as above through the installed entry point: status 2 reaches the shell."""
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "predict",
                        f"--model={tmp_path}/m.keras", f"--input={tmp_path}", "--threshold=-1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--threshold=-1" in one_line(r.stderr)


def test_wrong_kind_of_model_is_refused_before_any_work(cli, records, models, tmp_path):
    """An encoder to export, a MoCo model to predict, a classifier as --encoder: one line,
    exit 2, nothing written (the export used to convert every format before refusing)."""
    from ecg_moco_tf.models import MoCo

    moco = MoCo(build_encoder(**TINY), queue_size=8)
    moco(np.zeros((2, 12, 5000), "f4"))
    moco.save(tmp_path / "moco.keras")
    cases = [
        (["export", f"--model={models[1]}", f"--manifest={records[1]}", f"--out={tmp_path}/ex",
          "--formats=savedmodel,float32"], "one sigmoid probability", tmp_path / "ex"),
        (["predict", f"--model={tmp_path}/moco.keras", f"--input={records[1]}",
          f"--out={tmp_path}/p.csv"], "is a MoCo model, not a classifier", tmp_path / "p.csv"),
        (["finetune", f"--manifest={records[1]}", f"--encoder={models[0]}",
          f"--out={tmp_path}/ft"], "is a fine-tuned classifier", tmp_path / "ft"),
        (["finetune", f"--manifest={records[1]}", f"--encoder={tmp_path}/moco.keras",
          f"--out={tmp_path}/ft"], "is a MoCo model, not an encoder", tmp_path / "ft"),
    ]
    for args, message, output in cases:
        rc, _, err = cli(*args)
        line = one_line(err)
        assert rc == 2 and message in line, (args, line)
        assert not output.exists(), args


def test_a_folder_where_a_file_is_wanted(cli, records, models, tmp_path):
    (tmp_path / "existing").mkdir()
    for args, message in (
            (["predict", f"--model={models[0]}", f"--input={records[1]}",
              f"--out={tmp_path}/existing"], "is a folder; --out takes a file name"),
            (["validate", f"--manifest={records[1]}", f"--report={tmp_path}/new/"],
             "is a folder; --report takes a file name"),
            (["split", f"--manifest={records[1]}", f"--out={tmp_path}/existing"],
             "is a folder; a manifest is a file"),
            (["export", f"--model={models[0]}", f"--manifest={records[1]}",
              f"--out={records[1]}"], "is a file; --out takes a folder"),
            (["predict", f"--model={tmp_path}", f"--input={records[1]}",
              f"--out={tmp_path}/p.csv"], "is a folder without a SavedModel")):
        rc, _, err = cli(*args)
        assert rc == 2 and message in one_line(err), (args, err[-2000:])
    assert list((tmp_path / "existing").iterdir()) == []


def test_finetune_keeps_a_finished_run_unless_overwrite(cli, records, tmp_path):
    args = ["finetune", f"--manifest={records[1]}", "--experiment=baseline_unpretrained",
            f"--out={tmp_path}/ft", "--epochs=1", "--learning_rates=1e-3", "--batch_size=4",
            *TINY_FLAGS]
    assert cli(*args)[0] == 0
    first = (tmp_path / "ft" / "classifier.keras").stat().st_mtime_ns
    rc, _, err = cli(*args)
    assert rc == 2 and "holds a finished fine-tuning run" in one_line(err)
    assert (tmp_path / "ft" / "classifier.keras").stat().st_mtime_ns == first
    assert cli(*args, "--overwrite")[0] == 0


def test_split_without_labels_warns(cli, records, tmp_path):
    df = pd.read_csv(records[1]).drop(columns=["label", "split"])
    df["record"] = [str(records[0] / r) for r in df["record"]]
    df.to_csv(tmp_path / "m.csv", index=False)
    rc, out, err = cli("split", f"--manifest={tmp_path}/m.csv", f"--out={tmp_path}/s.csv")
    assert rc == 0 and "no ECG has a 0/1 label" in err and "--label_column" in err


def test_setting_ranges_and_reproduce_names_its_own_flags(cli, records, models, tmp_path):
    """Out-of-range settings are refused at parsing, naming the flag; reproduce's pretraining
    errors name --pretrain_batch_size (its --batch_size is fine-tuning's)."""
    m = records[1]
    cases = [
        (["pretrain", f"--manifest={m}", "--temperature=0"], "--temperature"),
        (["pretrain", f"--manifest={m}", "--augment_probability=3"], "--augment_probability"),
        (["finetune", f"--manifest={m}", "--experiment=baseline_unpretrained", "--epochs=0"],
         "--epochs"),
        (["finetune", f"--manifest={m}", "--experiment=baseline_unpretrained",
          "--dropout=1.5"], "--dropout"),
        (["finetune", f"--manifest={m}", "--experiment=baseline_unpretrained",
          "--learning_rates=abc"], "--learning_rates=abc: each value must be a float"),
        (["export", f"--model={models[0]}", f"--manifest={m}", "--threshold=2"],
         "--threshold"),
        (["reproduce", f"--manifest={m}", "--pretrain_batch_size=5", "--experiments=proposed",
          "--noexplain"], "--pretrain_batch_size=5 must be a multiple of"),
        (["reproduce", "--test=2.5", "--experiments=proposed", "--noexplain"],
         "test=2.5: a share of patients in [0, 1) or a whole number of patients"),
        (["reproduce", "--explain_max_ecgs=-1"], "--explain_max_ecgs"),
        (["reproduce", "--test=0"], "--test=0 leaves no test split"),
    ]
    for args, message in cases:
        rc, _, err = cli(*args, f"--out={tmp_path}/o")
        assert rc == 2 and message in one_line(err), (args, err[-2000:])
        assert not (tmp_path / "o").exists() or args[0] == "reproduce", args


def test_split_writes_beside_the_input_and_keeps_existing_splits(cli, records, tmp_path):
    df = pd.read_csv(records[1])
    df["record"] = [str(records[0] / r) for r in df["record"]]
    df.to_csv(tmp_path / "m.csv", index=False)
    before = (tmp_path / "m.csv").read_bytes()
    rc, _, err = cli("split", f"--manifest={tmp_path}/m.csv", "--design=finetune")
    assert rc == 2 and "already has splits" in one_line(err) and "--overwrite" in one_line(err)
    assert not (tmp_path / "m_splits.csv").exists()
    rc, out, _ = cli("split", f"--manifest={tmp_path}/m.csv", "--design=finetune", "--overwrite")
    assert rc == 0 and f"wrote {tmp_path}/m_splits.csv" in out
    assert "design finetune: 26 of the 26 labelled ECGs are in train2/valid2/test" in out
    assert (tmp_path / "m.csv").read_bytes() == before                 # the input is kept
    split = pd.read_csv(tmp_path / "m_splits.csv")["split"]
    assert set(split) == {"train2", "valid2", "test"}
    rc, _, err = cli("split", f"--manifest={tmp_path}/m.csv", "--design=finetune",
                     f"--out={tmp_path}/m_splits.csv")
    assert rc == 2 and "exists" in one_line(err)


def test_architecture_flags_beside_an_encoder_are_refused(cli, tmp_path):
    for args, message in [
        (["pretrain", f"--manifest={tmp_path}/m.csv", "--encoder=ptbxl-pool", "--filters=8,8"],
         "--filters given with --encoder=ptbxl-pool"),
        (["finetune", f"--manifest={tmp_path}/m.csv", "--encoder=ptbxl-pool",
          "--feature_dim=32"], "--feature_dim given with --encoder=ptbxl-pool"),
        (["pretrain", f"--manifest={tmp_path}/m.csv", "--renormalize"],
         "--renormalize re-fits the normalization of a given --encoder"),
    ]:
        rc, _, err = cli(*args, f"--out={tmp_path}/o")
        assert rc == 2 and message in one_line(err), (args, err[-2000:])
        assert not (tmp_path / "o").exists()


def test_architecture_mistakes_are_named_before_any_ecg_is_read(cli, records, tmp_path):
    bad = records[2]                       # r1 is unreadable: reading first would name it
    for args, message in [
        (["finetune", "--experiment=baseline_unpretrained", "--filters=8,16"],
         "--filters=[8, 16] (2), --pools=[2, 2, 4, 2, 2, 4] (6)"),
        (["pretrain", "--kernel_sizes=5,x,5,3,3,3"], "--kernel_sizes=5,x,5,3,3,3: give whole"),
        (["reproduce", "--pools=10,10,10,10,10,10"], "reduce the 5000 samples to none"),
    ]:
        rc, _, err = cli(*args, f"--manifest={bad}", f"--out={tmp_path}/o")
        line = one_line(err)
        assert rc == 2 and message in line and "r1" not in line, (args, err[-2000:])
        assert not (tmp_path / "o").exists()
