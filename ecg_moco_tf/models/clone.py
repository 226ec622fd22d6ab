"""The one way this project copies a model: same architecture, same weights, same outputs."""
import keras
import numpy as np


class CopyError(RuntimeError):
    """A copied model does not compute what the original computes."""


def copy_model(model, trainable=True, check=True, atol=1e-5):
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
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone._flatten_layers():
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
    if not trainable:
        for v in clone.weights:
            v.trainable = False
    if check:
        check_same_outputs(model, clone, atol=atol)
    return clone


def check_same_outputs(model, other, x=None, atol=1e-5):
    """Raise :class:`CopyError` unless ``other`` gives ``model``'s outputs on ``x`` (default: a
    seeded random batch of two, in the model's input units, scaled like millivolts)."""
    if x is None:
        shape = model.input.shape[1:]
        if any(d is None for d in shape):
            return
        x = np.random.default_rng(0).normal(0, 0.5, (2, *shape)).astype("float32")
    a = keras.tree.flatten(model(x, training=False))
    b = keras.tree.flatten(other(x, training=False))
    diff = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))
    if diff > atol:
        raise CopyError(f"copy of '{model.name}' differs from the original by {diff:.3g} on the "
                        "same input; a layer keeps state outside its weights")
