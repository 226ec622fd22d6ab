"""Every copy of a model computes what the model computes: compare OUTPUTS, not weights.

The signals have per-lead offsets and scales far from mean 0 / variance 1, so a copy that lost
the data-set normalization (what Keras 3 ``Normalization`` + ``clone_model`` gave) differs.
"""
import keras
import numpy as np
import pytest

from ecg_moco_tf.export import FORMATS, Predictor, export_all
from ecg_moco_tf.models import MoCo, adapt_normalization, build_encoder, copy_model
from ecg_moco_tf.models.classifier import build_classifier, copy_encoder
from ecg_moco_tf.models.clone import CopyError
from tests.sizes import SHORT, TINY


def _signals(n, samples, seed=0):
    rng = np.random.default_rng(seed)
    lead = np.arange(12)[None, :, None]
    return (rng.standard_normal((n, 12, samples)) * (0.2 + 0.3 * lead) + 0.5 * lead - 2
            ).astype("float32")


def _out(model, x):
    return np.asarray(model(x, training=False))


def _adapted(**kw):
    enc = build_encoder(**kw)
    adapt_normalization(enc, _signals(16, kw.get("num_samples", 5000), seed=1))
    return enc


def test_copy_of_adapted_encoder_gives_same_outputs():
    enc = _adapted(**SHORT)
    x = _signals(6, 64, seed=2)
    z = np.asarray(enc.get_layer("normalization")(x))
    assert abs(z.mean()) < 0.5 and 0.5 < z.std() < 2           # the adapted layer normalizes
    copy = copy_encoder(enc)
    np.testing.assert_allclose(_out(copy, x), _out(enc, x), atol=1e-5)
    copy.get_layer("features").kernel.assign(copy.get_layer("features").kernel * 2)
    assert not np.allclose(_out(copy, x), _out(enc, x))          # independent variables


def test_copy_of_keras_normalization_encoder_gives_same_outputs():
    """A user's encoder with Keras 3 Normalization (README example): stats are constants."""
    inp = keras.Input((12, 64))
    h = keras.layers.Normalization(axis=1, name="normalization")(inp)
    h = keras.layers.Flatten()(h)
    enc = keras.Model(inp, keras.layers.Dense(8)(h))
    adapt_normalization(enc, _signals(16, 64, seed=1))
    x = _signals(4, 64, seed=2)
    np.testing.assert_allclose(_out(copy_model(enc), x), _out(enc, x), atol=1e-5)
    naive = keras.models.clone_model(enc)                        # what the old helper did
    naive.set_weights(enc.get_weights())
    assert np.abs(_out(naive, x) - _out(enc, x)).max() > 0.1
    from ecg_moco_tf.models.clone import check_same_outputs

    with pytest.raises(CopyError, match="differs from the original"):
        check_same_outputs(enc, naive)


def test_moco_key_encoder_equals_query_encoder_at_init():
    enc = _adapted(**SHORT)
    moco = MoCo(enc, queue_size=16, seed=0)
    x = _signals(6, 64, seed=3)
    np.testing.assert_allclose(_out(moco.key_encoder, x), _out(moco.encoder, x), atol=1e-6)
    q = moco.head(moco.encoder(x, training=False), training=False)
    k = moco.key_head(moco.key_encoder(x, training=False), training=False)
    np.testing.assert_allclose(np.asarray(k), np.asarray(q), atol=1e-6)


def test_memory_saved_loaded_and_every_export_agree(tmp_path):
    """Full 12 x 5000 path: in-memory classifier == .keras reload == SavedModel == TFLite."""
    keras.utils.set_random_seed(0)
    clf = build_classifier(copy_encoder(_adapted(**TINY)), hidden_units=8)
    clf.get_layer("head_logit").bias.assign([0.3])
    x = _signals(10, 5000, seed=4)
    ref = clf.predict(x, verbose=0).ravel()
    assert ref.std() > 1e-3                                      # outputs vary with the ECG
    clf.save(tmp_path / "clf.keras")
    np.testing.assert_allclose(Predictor(str(tmp_path / "clf.keras"))(x), ref, atol=1e-6)
    card = export_all(clf, str(tmp_path / "exp"), x, np.arange(10) % 2, x)
    tol = {"savedmodel": 1e-5, "float32": 1e-5, "float16": 0.02, "dynamic_int8": 0.1,
           "int8": 0.2}
    for kind in FORMATS:
        path = tmp_path / "exp" / ("savedmodel" if kind == "savedmodel" else
                                   f"model_{kind}.tflite")
        np.testing.assert_allclose(Predictor(str(path))(x), ref, atol=tol[kind], err_msg=kind)
    held = card["heldout_metrics"]                  # the shipped SavedModel's own AUC
    from sklearn.metrics import roc_auc_score

    shipped = Predictor(str(tmp_path / "exp" / "savedmodel"))(x)
    assert held["auc"] == pytest.approx(roc_auc_score(np.arange(10) % 2, shipped), abs=1e-9)
    assert held["computed_from"] == "savedmodel" and held["n_ecgs"] == 10
