"""Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM maps (tf-keras-vis) for 12-lead ECG models.

The design (why each step is as it is) is in docs/design.md, "Grad-CAM and its relatives".
"""
import functools
import warnings

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam

from ..models.clone import CopyError

METHODS = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam,
           "layercam": Layercam}
TARGETS = ("label", "predicted", "positive", "negative")


class _TwoClassLogits(keras.layers.Layer):
    """(batch, 1) LVSD logit -> (batch, 2) logits [0, logit]: softmax gives [1 - p, p]."""

    def call(self, logit):
        return tf.concat([tf.zeros_like(logit), logit], axis=-1)


class _PrototypeCosine(keras.layers.Layer):
    """(batch, D) features -> (batch, 2) centred cosine similarity to the class prototypes."""

    def __init__(self, prototypes, **kwargs):
        super().__init__(**kwargs)
        prototypes = np.asarray(prototypes, np.float32)
        self.centre = tf.constant(prototypes[0])
        self.classes = tf.math.l2_normalize(tf.constant(prototypes[1:] - prototypes[0]), -1)

    def call(self, features):
        f = tf.math.l2_normalize(features, axis=-1) - self.centre
        return tf.matmul(tf.math.l2_normalize(f, axis=-1), self.classes, transpose_b=True)


def is_classifier(model):
    """True for a one-output probability model, False for an encoder (feature vector)."""
    return model.output.shape[-1] == 1


def class_prototypes(encoder, signals, labels, batch_size=64):
    """(3, D): the mean L2-normalised encoder feature of all ECGs (the centre), then of the
    label-0 and of the label-1 ECGs."""
    labels = np.asarray(labels)
    if not ((labels == 0).any() and (labels == 1).any()):
        raise ValueError("class prototypes need labelled ECGs of both classes (0 and 1); "
                         f"got labels {sorted(set(labels.tolist()))}")
    feats = encoder.predict(np.asarray(signals, np.float32), batch_size=batch_size, verbose=0)
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True) + 1e-12
    return np.stack([feats.mean(0)] + [feats[labels == c].mean(0) for c in (0, 1)]
                    ).astype(np.float32)


def _with_channel_axis(model):
    """A copy of a chain model taking (12, T, 1): tf-keras-vis's Score-CAM masks the input with
    maps of the target layer's (rows, steps) and needs a trailing channel axis on the input."""
    inp = keras.Input(tuple(model.input.shape[1:]) + (1,), name="ecg_mv_channel")
    x = keras.layers.Reshape(tuple(model.input.shape[1:]), name="drop_channel")(inp)
    for layer in model.layers[1:]:
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        copy.set_weights(layer.get_weights())
        if isinstance(copy, keras.layers.Normalization):
            copy.finalize_state()                # its statistics are constants, not weights
    chain = keras.Model(inp, x, name=model.name)
    probe = np.random.default_rng(0).normal(0, 0.5, (2, *model.input.shape[1:])).astype("f4")
    diff = np.max(np.abs(model(probe) - chain(probe[..., None])))
    if diff > 1e-5:
        raise CopyError(f"Score-CAM copy of '{model.name}' differs by {diff:.3g}")
    return chain


def score_model(model, prototypes=None):
    """The model with two-class outputs used for every score (see module doc).

    Built on the model's own layers (a flat graph), so the target layer is found by name.
    """
    if is_classifier(model):
        try:
            logit = model.get_layer("head_logit").output
        except ValueError:
            raise ValueError("classifier has no 'head_logit' layer: build it with "
                             "ecg_moco_tf.build_classifier") from None
        return keras.Model(model.input, _TwoClassLogits(name="two_class")(logit))
    if prototypes is None:
        raise ValueError("explaining an encoder needs class prototypes: pass "
                         "prototypes=class_prototypes(encoder, signals, labels)")
    return keras.Model(model.input, _PrototypeCosine(prototypes, name="prototype_cosine")(
        model.output))


def resolve_targets(target, labels=None, probabilities=None):
    """Class (0/1) to explain per ECG: 'label', 'predicted' (p >= 0.5), 'positive', 'negative'."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r} not in {TARGETS}")
    if target == "label":
        if labels is None or np.any(np.isnan(np.asarray(labels, float))):
            raise ValueError("target='label' needs a 0/1 label for every ECG; use "
                             "target='predicted' (classifiers) for unlabelled records")
        return np.asarray(labels, int)
    if target == "predicted":
        if probabilities is None:
            raise ValueError("target='predicted' needs a classifier (an encoder predicts no class)")
        return (np.asarray(probabilities) >= 0.5).astype(int)
    n = len(labels if labels is not None else probabilities)
    return np.full(n, int(target == "positive"))


def resolve_layer(model, layer=None):
    """The target layer's name: ``layer`` if the model has it, else the last temporal block."""
    names = [lyr.name for lyr in model.layers]
    if layer is None:
        temporal = [n for n in names if n.startswith("temporal_") and n.endswith("_relu")]
        if not temporal:
            raise ValueError("no temporal_*_relu layer in the model: name the target layer")
        return temporal[-1]
    if layer not in names:
        raise ValueError(f"layer {layer!r} is not in the model; 4-D layers to choose from: "
                         f"{[lyr.name for lyr in model.layers if len(lyr.output.shape) == 4]}")
    return layer


def upsample(cam, num_samples):
    """(N, rows, steps) -> (N, 12, num_samples): linear between step centres, edges held.

    A map with one row (a layer after the spatial block) is repeated over the 12 leads.
    """
    n, rows, steps = cam.shape
    centres = (np.arange(steps) + 0.5) * num_samples / steps
    t = np.arange(num_samples)
    flat = cam.reshape(-1, steps)
    out = np.stack([np.interp(t, centres, r) for r in flat]).reshape(n, rows, num_samples)
    return np.broadcast_to(out, (n, 12, num_samples)) if rows == 1 else out


def _scale(maps):
    top = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, top, out=np.zeros_like(maps), where=top > 0)


def gradcam(model, signals, method="gradcam", layer=None, targets=None,
            prototypes=None, batch_size=32, max_n=None, progress=False):
    """Class activation maps for ECGs.

    Args:
        model: a classifier (:func:`~ecg_moco_tf.build_classifier`) or an encoder.
        signals: (N, 12, T) float mV.
        method: 'gradcam', 'gradcam++', 'scorecam' or 'layercam'.
        layer: name of the target layer; None = the last temporal block (see module doc).
        targets: class (0/1) to explain per ECG (:func:`resolve_targets`); default 1 (LVSD).
        prototypes: (3, D) from :func:`class_prototypes`, required for an encoder.
        max_n: Score-CAM only: use the ``max_n`` channels of largest activation spread.

    Returns:
        float32 (N, 12, T) maps in [0, 1] (maximum 1 per ECG; all zero if no positive evidence).
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"method {method!r} not in {list(METHODS)}")
    layer = resolve_layer(model, layer)
    signals = np.asarray(signals, np.float32)
    targets = np.ones(len(signals), int) if targets is None else np.asarray(targets, int)
    if method == "scorecam":
        scorer = score_model(_with_channel_axis(model), prototypes)
        scorer.predict = functools.partial(scorer.predict, verbose=0)
    else:
        scorer = score_model(model, prototypes)
    explainer = METHODS[method](scorer)
    kwargs = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False,
                  normalize_cam=False)
    cams = []
    for lo in tqdm(range(0, len(signals), batch_size), desc=f"{method} maps", unit="batch",
                   disable=not progress):
        x, c = signals[lo:lo + batch_size], targets[lo:lo + batch_size]
        idx = np.stack([np.arange(len(c)), c], 1)
        if method == "scorecam":
            # tf-keras-vis applies softmax before the score: softmax([0, logit]) = [1 - p, p].
            with warnings.catch_warnings():   # Keras: list of one input for a 1-input model
                warnings.simplefilter("ignore", UserWarning)
                cam = explainer(lambda out, idx=idx: tf.gather_nd(out, idx), x[..., None],
                                max_N=max_n, batch_size=64, **kwargs)
        else:
            # z_c - z_other: +-logit for a classifier (columns [0, logit]), 2 x the centred
            # cosine for an encoder (its two columns are opposite).
            other = np.stack([np.arange(len(c)), 1 - c], 1)
            cam = explainer(lambda out, idx=idx, other=other: tf.gather_nd(out, idx)
                            - tf.gather_nd(out, other), x, **kwargs)
        cam = np.asarray(cam, np.float32)
        cams.append(cam.reshape(len(x), -1, cam.shape[-1]))
    cam = np.maximum(np.concatenate(cams), 0)
    return _scale(upsample(cam, signals.shape[-1]).astype(np.float32))


def explained_scores(model, signals, targets, prototypes=None, batch_size=64, scorer=None):
    """The score each map explains, per ECG: probability of the target class (classifier) or
    cosine to the target class prototype (encoder). Pass ``scorer`` (:func:`score_model`)
    when calling repeatedly, so it is traced once."""
    scorer = scorer or score_model(model, prototypes)
    out = scorer.predict(np.asarray(signals, np.float32), batch_size=batch_size, verbose=0)
    if is_classifier(model):
        out = tf.nn.softmax(out).numpy()
    return out[np.arange(len(out)), np.asarray(targets, int)]
