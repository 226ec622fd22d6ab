import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from ecg_moco_tf.data import experiment_view, load_records, manifest, splits, synthetic
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.training.pretrain import PretrainConfig, check_queue_size, pretrain

from tests.sizes import SMALL, TINY


def test_queue_size_sanity():
    with pytest.raises(ValueError, match="queue_size K=500 >= 400"):
        check_queue_size(500, 400, 32)
    with pytest.raises(ValueError, match="batch_size"):
        check_queue_size(10, 20, 32)
    with pytest.warns(UserWarning, match="more than half"):
        check_queue_size(300, 400, 32)
    check_queue_size(100, 400, 32)


def test_batch_must_split_into_shuffle_bn_groups(small_cohort, tmp_path):
    view = experiment_view(small_cohort, "proposed")
    for batch, groups in ((9, 2), (8, 8)):
        cfg = PretrainConfig(epochs=1, batch_size=batch, queue_size=16, shuffle_bn_splits=groups)
        with pytest.raises(ValueError, match="multiple of shuffle_bn_splits"):
            pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path), cfg,
                     encoder=build_encoder(**TINY))


def test_resume_restores_queue_pointer_and_optimizer(small_cohort, tmp_path, capsys):
    """Full 12 x 5000 path with a tiny encoder: kill after epoch 1, resume, compare state."""
    view = experiment_view(small_cohort, "proposed")
    cfg = PretrainConfig(epochs=3, batch_size=8, queue_size=16, momentum=0.9,
                         shuffle_bn_splits=2, verbose=0)
    saved = {}

    def state(model):
        return {"queue": model.queue.keys.numpy().copy(),
                "pointer": int(model.queue.pointer.numpy()),
                "iterations": int(model.optimizer.iterations.numpy()),
                "opt": [v.numpy().copy() for v in model.optimizer.variables],
                "key": [v.numpy().copy() for v in model.key_encoder.weights]}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                saved.update(state(self.model))

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path), cfg,
                 encoder=build_encoder(**TINY), extra_callbacks=[Snapshot()])
    assert saved["pointer"] == (8 * saved["iterations"]) % 16
    restored = {}

    class Check(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):           # runs after BackupAndRestore's restore
            restored.update(state(self.model))

        def on_epoch_begin(self, epoch, logs=None):
            restored.setdefault("first_epoch", epoch)

    capsys.readouterr()
    moco, hist = pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path), cfg,
                          encoder=build_encoder(**TINY), extra_callbacks=[Check()])
    said = capsys.readouterr().out
    assert f"resuming the unfinished run in {tmp_path / 'backup'} (epoch 2 of 3)" in said
    assert restored["first_epoch"] == 1                 # resumed, not restarted
    np.testing.assert_array_equal(restored["queue"], saved["queue"])
    assert restored["pointer"] == saved["pointer"] and restored["iterations"] == saved[
        "iterations"]
    for a, b in zip(restored["opt"], saved["opt"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(restored["key"], saved["key"]):
        np.testing.assert_array_equal(a, b)
    log = pd.read_csv(tmp_path / "pretrain_log.csv")
    assert list(log["epoch"]) == [1, 2, 3]
    assert os.path.exists(tmp_path / "encoder.keras") and os.path.exists(tmp_path / "moco.keras")


def test_finished_run_is_refused_unless_overwrite(small_cohort, tmp_path, capsys):
    """A second run into a finished folder: refused (first run kept), or with overwrite a fresh
    run (log, best epoch and encoder.keras all of the new run; a stale backup discarded)."""
    view = experiment_view(small_cohort, "proposed")
    out = tmp_path / "pre"
    args = (view["pretrain_train"], view["pretrain_valid"], str(out))
    cfg = PretrainConfig(epochs=2, batch_size=8, queue_size=16, momentum=0.9, verbose=0)
    pretrain(*args, cfg, encoder=build_encoder(**TINY))
    (out / "notes.txt").write_text("not pretrain's")
    first = (out / "encoder.keras").read_bytes()
    with pytest.raises(FileExistsError, match="finished.*--overwrite") as err:
        pretrain(*args, cfg, encoder=build_encoder(**TINY))
    assert str(out) in str(err.value)
    assert (out / "encoder.keras").read_bytes() == first

    os.makedirs(out / "backup")                        # a stale backup: would skip epoch 1
    (out / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    capsys.readouterr()
    cfg = PretrainConfig(epochs=1, batch_size=8, queue_size=16, momentum=0.9, verbose=0, seed=1)
    moco, hist = pretrain(*args, cfg, encoder=build_encoder(**TINY), overwrite=True)
    said = capsys.readouterr().out
    assert "discarding the unfinished run" in said and "replacing the earlier run" in said
    assert list(pd.read_csv(out / "pretrain_log.csv")["epoch"]) == [1]     # not appended
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert saved["best_epoch"] == 1 and saved["seed"] == 1
    assert saved["best_val_loss"] == pytest.approx(hist["val_loss"][0])
    x = np.random.default_rng(0).normal(size=(2, 12, 5000)).astype("float32")
    encoder = keras.saving.load_model(out / "encoder.keras")
    np.testing.assert_allclose(encoder.predict(x, verbose=0),
                               moco.encoder.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert (out / "notes.txt").read_text() == "not pretrain's"
    assert not os.path.exists(out / "backup")


def test_cli_refuses_finished_run_with_one_line_and_exit_2(small_cohort, tmp_path):
    manifest_csv = os.path.join(small_cohort.attrs["root"], "manifest.csv")
    os.makedirs(tmp_path / "pretrain")
    (tmp_path / "pretrain" / "pretrain_config.json").write_text("{}")   # a finished run
    for cmd, out in (("pretrain", tmp_path / "pretrain"), ("reproduce", tmp_path)):
        r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", cmd,
                            f"--manifest={manifest_csv}", f"--out={out}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        said = [line for line in r.stderr.splitlines() if line.startswith(f"ecg-moco {cmd}:")]
        assert len(said) == 1 and "--overwrite" in said[0] and "Traceback" not in r.stderr
        assert str(tmp_path / "pretrain") in said[0]
    assert (tmp_path / "pretrain" / "pretrain_config.json").read_text() == "{}"
    assert os.listdir(tmp_path) == ["pretrain"]        # reproduce refused before any work
    done = tmp_path / "done"                               # a finished reproduce run
    os.makedirs(done)
    (done / "results.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "ecg_moco_tf.cli.main", "reproduce",
                        f"--manifest={manifest_csv}", f"--out={done}", "--experiments=",
                        "--label_efficiency", "--encoder=ptbxl-pool"],
                       capture_output=True, text=True, timeout=300)
    said = [line for line in r.stderr.splitlines() if line.startswith("ecg-moco reproduce:")]
    assert r.returncode == 2 and len(said) == 1 and "holds a finished run" in said[0], r.stderr
    assert "--overwrite" in said[0] and os.listdir(done) == ["results.json"]


def test_pretraining_learns_and_keeps_features_at_least_as_good_as_random(tmp_path):
    """A clear phenotype (phenotype_scale=1); random-init probes vary a lot from one init to
    the next (0.56-0.69 here), so the reference is the mean over three seeded random inits.
    A regression guard (a collapsed or broken encoder probes near 0.5): 8 epochs on 250 ECGs
    give 0.642 vs 0.600 (encoder seeded: before, its initial weights depended on the tests run
    before it in the same process). Beating random features clearly is the open science issue."""
    cfg_c = synthetic.CohortConfig(num_patients=300, seed=11, prevalence=0.3, phenotype_scale=1.0)
    df = splits.assign_splits(synthetic.write_cohort(str(tmp_path), cfg_c, progress=False), 0)
    df = manifest.read_manifest(manifest.write_manifest(df, str(tmp_path / "m.csv")))
    view = experiment_view(df, "proposed")
    cfg = PretrainConfig(epochs=8, batch_size=32, queue_size=128, momentum=0.99, verbose=0,
                         seed=0)
    keras.utils.set_random_seed(0)           # the encoder's initial weights: not test order
    _, hist = pretrain(view["pretrain_train"], view["pretrain_valid"], str(tmp_path / "pre"),
                       cfg, encoder=build_encoder(**SMALL))
    loss = hist["loss"]
    # epoch 1 starts from a random queue (easy negatives); learning shows after it
    assert min(loss[-2:]) < loss[1] - 0.2, loss
    pretrained = keras.saving.load_model(tmp_path / "pre" / "encoder.keras")
    down = pd.concat([view["train"], view["valid"], view["test"]])
    data = load_records(down, progress=False)
    y = data.manifest["label"].astype(int).to_numpy()

    def probe(enc):
        p = cross_val_predict(LogisticRegression(max_iter=3000),
                              enc.predict(data.signals, verbose=0), y,
                              groups=data.manifest["patient_id"], cv=GroupKFold(5),
                              method="predict_proba")[:, 1]
        return roc_auc_score(y, p)

    randoms = []
    for seed in (101, 102, 103):
        keras.utils.set_random_seed(seed)
        rand = build_encoder(**SMALL)
        rand.get_layer("normalization").set_weights(
            pretrained.get_layer("normalization").get_weights())
        randoms.append(probe(rand))
    assert probe(pretrained) >= np.mean(randoms), (probe(pretrained), randoms)


_TWIN = r"""
import sys, keras, numpy as np
import ecg_moco_tf
from ecg_moco_tf.data import experiment_view, read_manifest
from ecg_moco_tf.models import build_encoder
from ecg_moco_tf.training.finetune import FinetuneConfig, finetune
from ecg_moco_tf.training.pretrain import PretrainConfig, pretrain
from tests.sizes import TINY
df, out = read_manifest(sys.argv[1]), sys.argv[2]
view = experiment_view(df, "proposed")
keras.utils.set_random_seed(0)
moco, _ = pretrain(view["pretrain_train"], view["pretrain_valid"], out + "/pre",
                   PretrainConfig(epochs=2, batch_size=8, queue_size=16, momentum=0.9,
                                  shuffle_bn_splits=2, verbose=0), encoder=build_encoder(**TINY))
res = finetune(view["train"], view["valid"], keras.saving.load_model(out + "/pre/encoder.keras"),
               FinetuneConfig(learning_rates=(1e-3,), epochs=2, batch_size=8, hidden_units=8,
                              augment=True, verbose=0))
np.save(out + "/weights.npy", np.concatenate([w.ravel() for w in
        moco.encoder.get_weights() + res.model.get_weights()]))
"""


def test_same_seed_same_models_even_when_two_runs_share_the_cpu(small_cohort, tmp_path):
    """Tiny pretrain + fine-tune, twice at the same time in two processes: bit-identical."""
    path = str(tmp_path / "m.csv")
    manifest.write_manifest(small_cohort, path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    runs = [subprocess.Popen([sys.executable, "-c", _TWIN, path, str(tmp_path / r)], cwd=root,
                             stderr=subprocess.PIPE, text=True) for r in "ab"]
    for r in runs:
        err = r.communicate(timeout=600)[1]
        assert r.returncode == 0, err[-2000:]
    a, b = (np.load(tmp_path / r / "weights.npy") for r in "ab")
    assert a.size > 1000
    np.testing.assert_array_equal(a, b)
