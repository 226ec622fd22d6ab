"""The one way this project copies a model: same architecture, same weights, same outputs."""
import keras
import numpy as np


class CopyError(RuntimeError):
    """A copied model does not compute what the original computes."""


def copy_model(model, trainable=True, check=True, atol=1e-5, dtype=None, sync_bn=None):
    """An independent copy of a functional model: new variables, same weights, same OUTPUTS.

    ``clone_model`` copies the structure only; ``set_weights`` copies the variables, but a layer
    that keeps state outside its variables (Keras 3 ``Normalization`` after ``adapt``: its mean
    and variance become constants in ``finalize_state``) would still compute something else, so
    such layers are finalized again. With ``check`` the copy and the original are run on the
    same random batch (inference mode) and a difference above ``atol`` raises
    :class:`CopyError`: a silent wrong copy is what this helper exists to prevent.

    ``trainable=False`` marks every variable of the copy non-trainable (out of any optimizer)
    while the layers stay trainable, so batch norms still use batch statistics in training
    (MoCo's key encoder).

    ``dtype``: a Keras dtype policy for every layer of the copy ("float32", "mixed_float16",
    "mixed_bfloat16"; weights stay float32): a half-precision copy for mixed-precision
    training, or a float32 copy of a model trained in it (what is saved and exported). Where
    the policy changes, outputs are compared to 5 % of the original's largest output (half
    precision rounds; a copy that normalizes wrongly is off by far more).
    ``sync_bn``: set ``synchronized`` of every batch norm of the copy (True: batch statistics
    of the global batch under ``tf.distribute``, Keras's sync BN; False: the fused kernel).
    """
    def clone_layer(layer):
        config = layer.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        if sync_bn is not None and isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = bool(sync_bn)
        return layer.__class__.from_config(config)

    changed = dtype is not None or sync_bn is not None
    clone = keras.models.clone_model(model, clone_function=clone_layer if changed else None)
    clone.set_weights(model.get_weights())
    for layer in clone._flatten_layers():
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    if not trainable:
        for v in clone.weights:
            v.trainable = False
    if check:
        half = {_policy(layer) for layer in model._flatten_layers()} | {
            _policy(layer) for layer in clone._flatten_layers()}
        check_same_outputs(model, clone, atol=atol, rtol=0.05 if len(half) > 1 else 0.0)
    return clone


def _policy(layer):
    return getattr(getattr(layer, "dtype_policy", None), "name", None)


def check_same_outputs(model, other, x=None, atol=1e-5, rtol=0.0):
    """Raise :class:`CopyError` unless ``other`` gives ``model``'s outputs on ``x`` (default: a
    seeded random batch of two, in the model's input units, scaled like millivolts) within
    ``atol + rtol * max|model's outputs|``."""
    if x is None:
        shape = model.input.shape[1:]
        if any(d is None for d in shape):
            return
        x = np.random.default_rng(0).normal(0, 0.5, (2, *shape)).astype("float32")
    a = [np.asarray(u, np.float32) for u in keras.tree.flatten(model(x, training=False))]
    b = [np.asarray(v, np.float32) for v in keras.tree.flatten(other(x, training=False))]
    diff = max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))
    if diff > atol + rtol * max(float(np.max(np.abs(u))) for u in a):
        raise CopyError(f"copy of '{model.name}' differs from the original by {diff:.3g} on the "
                        "same input; a layer keeps state outside its weights")
