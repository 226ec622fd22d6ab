"""Downstream classifier: encoder + two dense layers + sigmoid (paper Sec. 2)."""
import keras

from .clone import copy_model


def build_classifier(encoder, hidden_units=64, dropout=0.0, freeze_encoder=False,
                     name="classifier"):
    """Put a binary head on ``encoder``: Dense(hidden, ReLU) -> Dense(1) -> sigmoid.

    The classifier reuses the encoder's layers (a flat functional graph, so every encoder layer
    is reachable by name, e.g. for Grad-CAM), which means fine-tuning changes ``encoder``
    itself: pass a copy (:func:`copy_encoder`) to keep the original.

    Args:
        encoder: a Keras functional encoder (pretrained or freshly initialised).
        hidden_units: width of the first dense layer.
        dropout: dropout rate before the output layer.
        freeze_encoder: linear-probe style: the encoder's weights are frozen and its batch
            norms run in inference mode; only the head learns.

    Example:
        >>> clf = build_classifier(copy_encoder(pretrained), hidden_units=64)
        >>> clf.compile("adam", "binary_crossentropy")
    """
    for layer in encoder.layers:
        layer.trainable = not freeze_encoder
    x = keras.layers.Dense(hidden_units, activation="relu", name="head_dense")(encoder.output)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logit = keras.layers.Dense(1, name="head_logit")(x)
    # float32 output also under a mixed-precision policy (a probability near 0 or 1 in float16
    # rounds; the loss is computed from it)
    prob = keras.layers.Activation("sigmoid", name="probability", dtype="float32")(logit)
    return keras.Model(encoder.input, prob, name=name)


def copy_encoder(encoder):
    """An independent copy of an encoder: new variables, same weights, same outputs
    (:func:`~ecg_moco_tf.models.clone.copy_model`)."""
    return copy_model(encoder)
