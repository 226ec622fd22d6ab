"""The shipped pretrained encoder: loadable by name, intact, packaged in the wheel."""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import ecg_moco_tf
from ecg_moco_tf import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_encoder_matches_its_card_and_a_fresh_copy():
    path = pretrained.encoder_path("ptbxl-pool")
    card = open(pretrained.card("ptbxl-pool")).read()
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert re.search(r"sha256 `([0-9a-f]{64})`", card).group(1) == digest
    for needed in ("CC BY 4.0", "Wagner", "Scientific Data", "PhysioNet", "## Intended use",
                   "## Limitations", "selected by **last**", "pretrain_records.csv",
                   "None of strat_fold 9 or 10"):
        assert needed in card
    import keras

    x = np.random.default_rng(0).normal(0, 0.2, (3, 12, 5000)).astype("float32")
    enc = ecg_moco_tf.load_pretrained("ptbxl-pool")
    fresh = keras.saving.load_model(path)          # registered layers: ecg_moco_tf.models
    a, b = enc.predict(x, verbose=0), fresh.predict(x, verbose=0)
    assert a.shape == (3, 128) and a.std() > 0.1
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])               # different ECGs, different features


def test_unknown_name_is_one_line_listing_the_shipped_names(tmp_path):
    with pytest.raises(ValueError, match=r"neither a file nor a shipped encoder \(shipped: "
                                         r"ptbxl-pool\)"):
        pretrained.encoder_path("ptbxl")
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "finetune",
                        f"--manifest={tmp_path}/m.csv", "--encoder=ptbxl"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "shipped: ptbxl-pool" in r.stderr.strip().splitlines()[-1]


def test_a_python_session_gets_no_tensorflow_notices_and_python_names(tmp_path):
    """Importing the package and running a model prints nothing of TensorFlow's start-up
    (CUDA stub, oneDNN, absl); an error names the Python argument, not a CLI flag."""
    code = ("import numpy as np, ecg_moco_tf\n"
            "enc = ecg_moco_tf.load_pretrained('ptbxl-pool')\n"
            "print(enc.predict(np.zeros((1, 12, 5000), 'float32'), verbose=0).shape)\n"
            "try:\n    ecg_moco_tf.load_pretrained('ptbxl')\n"
            "except ValueError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "ECG_MOCO_DEBUG")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert out[0] == "(1, 128)"
    assert out[1].startswith("load_pretrained: name='ptbxl' is neither a file") and "--" not in out[1]


def test_the_wheel_ships_the_encoder(tmp_path):
    """A non-editable install (a wheel built from the sources) holds every file of the card."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), src)
    shutil.copytree(os.path.join(REPO, "ecg_moco_tf"), src / "ecg_moco_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    path = glob.glob(str(tmp_path / "dist" / "*.whl"))[0]
    assert os.path.basename(path).startswith(f"ecg_moco_tf-{ecg_moco_tf.__version__}-")
    wheel = zipfile.ZipFile(path)
    shipped = os.path.join(REPO, "ecg_moco_tf", "pretrained", "ptbxl-pool")
    for name in os.listdir(shipped):
        data = wheel.read(f"ecg_moco_tf/pretrained/ptbxl-pool/{name}")
        assert data == open(os.path.join(shipped, name), "rb").read(), name


def test_finetune_from_the_shipped_encoder_by_name(small_cohort, tmp_path):
    """`finetune --encoder=ptbxl-pool` fine-tunes the shipped weights and records where they
    came from; the task names the prediction column."""
    import json

    import pandas as pd

    manifest = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    out = tmp_path / "ft"
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "finetune",
                        f"--manifest={manifest}", "--encoder=ptbxl-pool", "--task_name=LVSD",
                        "--epochs=1", "--learning_rates=1e-3", "--batch_size=16",
                        "--population_prevalence=0.1", f"--out={out}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "proposed (LVSD): test AUC" in r.stdout
    prov = json.loads((out / "provenance.json").read_text())
    enc = prov["pretrained_encoder"]
    assert prov["task_name"] == "LVSD" and enc["shipped_name"] == "ptbxl-pool"
    assert enc["pretrain_config"]["best_epoch"] == 30 and enc["selection"]["selected_by"] == "last"
    pred = pd.read_csv(out / "test_predictions.csv")
    assert "p_LVSD" in pred and pred["p_LVSD"].between(0, 1).all()
    assert os.listdir(out / "tensorboard" / "lr0.001")
    report = (out / "report.md").read_text()         # the report of one run, as reproduce's
    auc = json.loads((out / "metrics.json").read_text())["auc"]
    assert f"| Proposed | {auc:.4f} |" in report and "ptbxl-pool" in report
    assert "PPV (population)" in report and "enriched by the paper design" in report
    assert "![roc](roc.png)" in report and "![calibration](calibration.png)" in report
    assert "commit" in report.splitlines()[2] and f"report: {out}/report.md" in r.stdout
    for png in ("roc.png", "calibration.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_pretrain_continues_from_the_shipped_encoder(small_cohort, tmp_path):
    """`pretrain --encoder=ptbxl-pool`: one epoch changes the shipped weights, keeps the output
    shape and the normalization, and carries the base's provenance and records."""
    import json

    import pandas as pd

    from ecg_moco_tf import provenance

    manifest = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    out = tmp_path / "dapt"
    r = _cli("pretrain", f"--manifest={manifest}", "--encoder=ptbxl-pool", f"--out={out}",
             "--epochs=1", "--batch_size=8", "--queue_size=16", "--monitor_every=0",
             "--select_encoder=last")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing from --encoder=" in r.stdout and "its own normalization kept" in r.stdout
    base = ecg_moco_tf.load_pretrained("ptbxl-pool")
    new = ecg_moco_tf.load_pretrained(str(out / "encoder.keras"))
    x = np.random.default_rng(1).normal(0, 0.2, (2, 12, 5000)).astype("float32")
    assert new.predict(x, verbose=0).shape == (2, 128)
    assert not np.allclose(new.predict(x, verbose=0), base.predict(x, verbose=0))
    norm = lambda m: [w.numpy() for w in m.get_layer("normalization").weights]   # noqa: E731
    for a, b in zip(norm(new), norm(base)):
        np.testing.assert_array_equal(a, b)
    prov = provenance.read_encoder_provenance(str(out / "encoder.keras"))
    src = prov["initialized_from"]
    assert src["sha256"] == provenance.file_sha256(pretrained.encoder_path("ptbxl-pool"))
    assert src["provenance"]["selected_by"] == "last" and prov["labels_seen"] is False
    rec = pd.read_csv(out / "pretrain_records.csv")
    shipped = pd.read_csv(os.path.join(os.path.dirname(pretrained.encoder_path("ptbxl-pool")),
                                       "pretrain_records.csv"))
    assert (rec["source"] == "base encoder").sum() == len(shipped)
    assert (rec["source"] != "base encoder").sum() == int(
        small_cohort["split"].isin(["train1", "valid1"]).sum())
    assert json.loads((out / "pretrain_config.json").read_text())["epochs"] == 1


def test_public_api_is_listed_and_documented():
    for name in ("load_pretrained", "finetune", "pretrain", "Predictor", "read_record",
                 "assign_splits", "export_all"):
        assert name in ecg_moco_tf.__all__ and name in dir(ecg_moco_tf)
    for name in ecg_moco_tf.__all__:
        obj = getattr(ecg_moco_tf, name)
        if callable(obj) and not isinstance(obj, type(ValueError)):
            assert (obj.__doc__ or "").strip(), name
