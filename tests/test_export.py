import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from ecg_moco_tf.augment import RandomAugment
from ecg_moco_tf.data.records import write_wfdb
from ecg_moco_tf.export import FORMATS, ParityError, Predictor, export_all
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.models.classifier import build_classifier
from tests.sizes import TINY


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    clf = build_classifier(build_encoder(**TINY), hidden_units=8)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12, 12, 5000)) * 0.3).astype("float32")
    y = np.arange(12) % 2
    out = tmp_path_factory.mktemp("export")
    card = export_all(clf, str(out), x, y, card_extra={"note": "test"})
    clf.save(out / "clf.keras")
    return clf, x, out, card


def test_every_format_reloads_and_matches(exported):
    clf, x, out, card = exported
    ref = clf.predict(x, verbose=0).ravel()
    paths = {"keras": out / "clf.keras", "savedmodel": out / "savedmodel",
             **{k: out / f"model_{k}.tflite" for k in FORMATS[1:]}}
    for kind, path in paths.items():
        p = Predictor(str(path))(x)
        assert p.shape == (12,)
        tol = {"float16": 0.02, "dynamic_int8": 0.1, "int8": 0.2}.get(kind, 1e-4)
        assert np.abs(p - ref).max() <= tol, kind
        assert card["parity"]["formats"].get(kind, {"max_abs_diff": 0})["max_abs_diff"] <= tol
    assert card["note"] == "test" and card["input"]["shape"] == [None, 12, 5000]


def test_signatures_names_and_shapes(exported):
    _, x, out, _ = exported
    sig = tf.saved_model.load(str(out / "savedmodel")).signatures["serving_default"]
    spec = sig.structured_input_signature[1]["ecg_mv"]
    assert spec.shape.as_list() == [None, 12, 5000] and spec.dtype == tf.float32
    res = sig(ecg_mv=x[:3])
    assert res["probability"].shape == (3, 1) and res["embedding"].shape == (3, 16)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(out / "model_int8.tflite")).get_signature_runner("serve")
    assert list(runner.get_input_details()) == ["ecg_mv"]
    assert runner.get_input_details()["ecg_mv"]["dtype"] == np.float32      # float I/O
    assert set(runner.get_output_details()) == {"probability", "embedding"}


def test_a_failing_format_is_left_out_and_a_failing_savedmodel_is_loud(exported, tmp_path,
                                                                       capsys):
    clf, x, _, _ = exported
    card = export_all(clf, str(tmp_path / "a"), x, formats=("savedmodel", "float32", "float16"),
                      tolerance={"float16": -1.0})
    formats = card["parity"]["formats"]
    assert formats["float16"]["kept"] is False and formats["float32"]["kept"] is True
    assert not (tmp_path / "a" / "model_float16.tflite").exists()
    assert (tmp_path / "a" / "model_float32.tflite").exists()
    assert "float16: max |diff|" in capsys.readouterr().out
    md = (tmp_path / "a" / "MODEL_CARD.md").read_text()
    assert "| float16 | no (left out) |" in md and "| float32 | yes |" in md
    with pytest.raises(ParityError, match="savedmodel"):
        export_all(clf, str(tmp_path / "b"), x, formats=("savedmodel",),
                   tolerance={"savedmodel": -1.0})


def test_augmentation_layer_in_front_of_a_classifier(exported):
    clf, x, _, _ = exported
    inp = keras.Input((12, 5000))
    model = keras.Model(inp, clf(RandomAugment.default(probability=1.0, seed=0)(inp)))
    np.testing.assert_allclose(model.predict(x, verbose=0), clf.predict(x, verbose=0),
                               atol=1e-6)                              # inference: no-op
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True))
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))


def test_predict_cli_stops_at_a_corrupt_record_or_skips_it(exported, tmp_path):
    _, x, out, _ = exported
    d = tmp_path / "ecgs"
    d.mkdir()
    for i in range(3):
        write_wfdb(str(d / f"ok{i}"), x[i])
    write_wfdb(str(d / "broken"), x[3])
    with open(d / "broken.dat", "r+b") as f:
        f.truncate(100)
    csv = tmp_path / "p.csv"
    args = [sys.executable, "-m", "ecg_moco_tf.cli.main", "predict",
            f"--model={out / 'model_float32.tflite'}", f"--input={d}", f"--out={csv}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "1 of 4 records cannot be used: broken:" in last and "corrupt or truncated" in last
    assert not csv.exists()
    r = subprocess.run(args + ["--on_error=skip"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    df = pd.read_csv(csv)
    assert sorted(df["record"]) == ["ok0", "ok1", "ok2"] and "error" not in df
    assert df["p_positive"].between(0, 1).all()
    bad = pd.read_csv(tmp_path / "problems.csv")
    assert list(bad["record"]) == ["broken"] and "corrupt or truncated" in bad["problem"][0]
    assert "broken" in r.stdout and "1 of 4 record(s) skipped" in r.stdout


def test_predict_cli_loads_a_keras_classifier_in_a_fresh_process(exported, tmp_path):
    """The project's own layers (LeadNormalization, FusedBatchNormalization) load by name."""
    _, x, out, _ = exported
    d = tmp_path / "ecgs"
    d.mkdir()
    for i in range(3):
        write_wfdb(str(d / f"r{i}"), x[i])
    csv = tmp_path / "p.csv"
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "predict",
                        f"--model={out / 'clf.keras'}", f"--input={d}", f"--out={csv}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = pd.read_csv(csv).sort_values("record")["p_positive"].to_numpy()
    ref = Predictor(str(out / "clf.keras"))(x[:3])          # the same file, in this process
    np.testing.assert_allclose(got, ref, atol=1e-3)        # WFDB stores 1 uV steps


def test_export_into_an_earlier_export_leaves_no_stale_model(exported, tmp_path):
    clf, x, out, _ = exported
    import shutil

    again = tmp_path / "again"
    shutil.copytree(out, again)                          # an earlier export with all formats
    card = export_all(clf, str(again), x, formats=("savedmodel", "float32"))
    left = sorted(p.name for p in again.iterdir() if p.name != "clf.keras")
    assert left == ["MODEL_CARD.md", "model_card.json", "model_float32.tflite", "savedmodel"]
    assert set(card["parity"]["formats"]) == {"savedmodel", "float32"}


def test_predictor_checks_shape_units_and_adds_the_batch_axis_of_one_ecg(exported):
    _, x, out, _ = exported
    for path in (out / "clf.keras", out / "savedmodel", out / "model_int8.tflite"):
        pred = Predictor(str(path))
        one = pred(x[0])                                    # (12, 5000): one ECG
        assert one.shape == (1,) and one[0] == pytest.approx(pred(x[:1])[0], abs=1e-6)
        with pytest.raises(ValueError, match=r"transpose wfdb's p_signal .* \(n, 12, 5000\)"):
            pred(x[:2].transpose(0, 2, 1))                  # wfdb layout (n, 5000, 12)
        with pytest.raises(ValueError, match=r"transpose wfdb's p_signal"):
            pred(x[0].T)
        with pytest.raises(ValueError, match=r"index 1\): \|amplitude\| up to .* millivolts"):
            pred(np.stack([x[0], x[1] * 1000]))             # microvolts
        with pytest.raises(ValueError, match=r"shape \(2, 12, 2500\); expected \(n, 12, 5000\)"):
            pred(x[:2, :, :2500])


def test_predictor_refuses_an_encoder_in_every_format(exported, tmp_path):
    from ecg_moco_tf.export import export_savedmodel, export_tflite

    keras.utils.set_random_seed(0)
    enc = build_encoder(**TINY)
    enc.save(tmp_path / "encoder.keras")
    sm = export_savedmodel(enc, str(tmp_path / "sm"))
    tfl = export_tflite(sm, str(tmp_path / "enc.tflite"), "float32")
    for path in (tmp_path / "encoder.keras", sm, tfl):
        with pytest.raises(ValueError, match=r"outputs .*16\).*one sigmoid probability"):
            Predictor(str(path))
    logits = keras.Model(exported[0].input, exported[0].get_layer("head_logit").output)
    logits.save(tmp_path / "logits.keras")              # (n, 1) but no sigmoid
    with pytest.raises(ValueError, match="final activation linear"):
        Predictor(str(tmp_path / "logits.keras"))


def test_card_states_quantization_and_int8_beyond_float_tolerance_warns(exported, tmp_path,
                                                                        capsys):
    clf, x, out, card = exported
    q = card["quantization"]
    assert q["int8"]["output_step"] == 1 / 256 and "flip" in q["caveat"]
    assert q["calibration_ecgs"] == "the 12 held-out ECGs (no calibration set given)"
    assert q["int8"]["max_abs_diff"] == card["parity"]["formats"]["int8"]["max_abs_diff"]
    p = Predictor(str(out / "model_int8.tflite"))(x)
    np.testing.assert_allclose(p * 256, np.round(p * 256), atol=1e-4)   # steps of 1/256
    again = export_all(clf, str(tmp_path), x, formats=("savedmodel", "int8"),
                       tolerance={"float16": 1e-9})               # int8 exceeds it: a warning
    assert "warning: int8 differs from the Keras model by up to" in capsys.readouterr().out
    assert len(again["parity"]["warnings"]) == 1
    assert "decision_flips" in again["parity"]["formats"]["int8"]


def test_predict_keeps_manifest_columns_needs_no_patient_id_and_filters_split(exported,
                                                                              tmp_path):
    _, x, out, _ = exported
    for i in range(4):
        write_wfdb(str(tmp_path / f"r{i}"), x[i])
    pd.DataFrame({"record": [f"r{i}" for i in range(4)], "age": [50, 60, 70, 80],
                  "label": [0, 1, 0, 1], "split": ["test", "test", "train2", "test"]}
                 ).to_csv(tmp_path / "m.csv", index=False)
    from ecg_moco_tf.predict import predict_records

    model = str(out / "model_float32.tflite")
    df = predict_records(model, str(tmp_path / "m.csv"), progress=False)
    assert list(df.columns) == ["record", "label", "split", "age", "probability", "decision",
                                "warning", "error"]
    np.testing.assert_allclose(df["probability"], Predictor(model)(x[:4]), atol=1e-3)
    test = predict_records(model, str(tmp_path / "m.csv"), progress=False, split="test")
    assert list(test["record"]) == ["r0", "r1", "r3"] and list(test["age"]) == [50, 60, 80]
    with pytest.raises(ValueError, match="no rows with split 'valid2'"):
        predict_records(model, str(tmp_path / "m.csv"), progress=False, split="valid2")


def test_predict_names_the_column_after_the_models_task(exported, tmp_path):
    """The task recorded in an export's model card names predict's column (p_MI); a bad
    --task_name is one line and exit 2."""
    import json
    import shutil

    _, x, out, card = exported
    assert card["task"]["name"] == "positive" and card["versions"]["ecg_moco_tf"]
    for k in ("intended_use", "limitations", "threshold", "input", "parity"):
        assert card[k], k
    model = tmp_path / "export" / "model_float32.tflite"
    model.parent.mkdir()
    shutil.copy(out / "model_float32.tflite", model)
    (model.parent / "model_card.json").write_text(json.dumps({"task": {"name": "MI"}}))
    write_wfdb(str(tmp_path / "r0"), x[0])
    base = [sys.executable, "-m", "ecg_moco_tf.cli.main", "predict", f"--model={model}",
            f"--input={tmp_path / 'r0'}", f"--out={tmp_path / 'p.csv'}"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["record", "p_MI", "decision", "warning"]
    from ecg_moco_tf.provenance import task_of

    with pytest.raises(ValueError, match=r"task_name='p\(LVSD\)': use letters"):
        task_of(str(model), "p(LVSD)")
    assert task_of(str(model)) == "MI" and task_of(str(out / "clf.keras")) == "positive"


NOISE = ("cuda", "onednn", "initializelog", "xnnpack", "renamed", "I0000", "W0000", "E0000",
         "fully_quantize", "Assets written")


def test_cli_console_is_quiet_unless_debug(exported, tmp_path):
    """export and predict print their own lines only: no CUDA / oneDNN / absl / converter /
    LiteRT notices (a user's environment: TF_CPP_MIN_LOG_LEVEL unset)."""
    clf, x, out, _ = exported
    for i in range(4):
        write_wfdb(str(tmp_path / f"r{i}"), x[i])
    pd.DataFrame({"record": [f"r{i}" for i in range(4)], "patient_id": list("abcd"),
                  "label": [0, 1, 0, 1], "split": ["test", "test", "train2", "train2"]}
                 ).to_csv(tmp_path / "m.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "ECG_MOCO_DEBUG")}

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout + r.stderr

    text = cli("export", f"--model={out / 'clf.keras'}", f"--manifest={tmp_path / 'm.csv'}",
               f"--out={tmp_path / 'exp'}", "--formats=savedmodel,float32,int8",
               "--max_calibration_ecgs=2", "--calibration_split=train2")
    assert "wrote" in text                     # its parity check ran the .tflite files too
    assert not [n for n in NOISE if n.lower() in text.lower()], text
    env["ECG_MOCO_DEBUG"] = "1"
    debug = cli("predict", f"--model={tmp_path / 'exp' / 'model_int8.tflite'}",
                 f"--input={tmp_path / 'm.csv'}", f"--out={tmp_path / 'p.csv'}")
    assert "XNNPACK" in debug                            # the notice, when asked for


def test_predict_and_export_use_the_threshold_stored_with_the_model(exported, small_cohort,
                                                                    tmp_path):
    """The valid2 threshold fine-tuning stored (provenance.json) is the default of export
    (its card) and predict; an export's card threshold is predict's default for it."""
    import json
    import shutil
    import subprocess
    import sys

    import pandas as pd

    from ecg_moco_tf.export import export_from_manifest
    from ecg_moco_tf.provenance import stored_threshold, write_provenance

    clf, _, out, _ = exported
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(out / "clf.keras", folder / "clf.keras")
    assert stored_threshold(str(folder / "clf.keras"))[0] == 0.5      # nothing stored: 0.5
    test = small_cohort[small_cohort["split"] == "test"].head(6)
    root = small_cohort.attrs["root"]
    manifest = tmp_path / "m.csv"
    test.assign(record=[os.path.join(root, r) for r in test["record"]]).drop(
        columns="mask").to_csv(manifest, index=False)

    def predict(*extra):
        r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "predict",
                            f"--model={folder / 'clf.keras'}", f"--input={manifest}",
                            f"--out={tmp_path / 'p.csv'}", *extra], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return pd.read_csv(tmp_path / "p.csv"), r.stdout

    from ecg_moco_tf.data import load_records, read_manifest

    probs = clf.predict(load_records(read_manifest(str(manifest)), progress=False).signals,
                        verbose=0).ravel()
    cut = float(np.median(probs))                          # splits the 6 ECGs
    write_provenance(str(folder), "proposed", "positive",
                     threshold={"value": cut, "rule": "youden", "chosen_on": "valid2"})
    p, said = predict()
    assert f"decision threshold {cut:.4g} (stored at fine-tuning: youden on valid2" in said
    assert list(p["decision"]) == [int(v >= cut) for v in p["p_positive"]]
    assert 0 < p["decision"].sum() < len(p)
    p, said = predict("--threshold=1")
    assert "(--threshold)" in said and p["decision"].sum() == 0
    card = export_from_manifest(str(folder / "clf.keras"), small_cohort.assign(
        record=[os.path.join(root, r) for r in small_cohort["record"]]).drop(columns="mask"),
        str(tmp_path / "export"), formats=["savedmodel"])
    assert card["threshold"]["value"] == pytest.approx(cut)
    assert "valid2" in card["threshold"]["set_by"]
    saved = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert stored_threshold(str(tmp_path / "export" / "savedmodel"))[0] == pytest.approx(
        saved["threshold"]["value"])
