"""Batch normalization on TensorFlow's fused kernel, a drop-in for Keras 3's layer.

Keras 3's ``BatchNormalization`` is not fused on the TensorFlow backend: training computes the
batch moments (``tf.nn.moments``) and then normalizes with element-wise ops, and the backward
pass differentiates all of them; inference is element-wise too. TensorFlow's
``FusedBatchNormV3`` does both passes in one kernel each (2.1x faster encoder forward +
backward at batch 64 on CPU, see the issue). :class:`FusedBatchNormalization` is the Keras
layer with the same constructor, weights (``gamma``, ``beta``, ``moving_mean``,
``moving_variance``), config and behaviour; only its ``call`` runs the fused kernel where it
can, and falls back to Keras's own ``call`` everywhere else.
"""
from __future__ import annotations

import keras

# cuDNN rejects a smaller epsilon (CUDNN_BN_MIN_EPSILON = 1e-5); below it, fall back to Keras
# so that the layer computes the same thing on every device.
_MIN_FUSED_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable("ecg_moco_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` on TensorFlow's fused batch-norm kernel.

    Same arguments, weights, config and semantics as the Keras layer, so weights and ``.keras``
    files load interchangeably between the two (``set_weights``, ``load_weights`` by name):

    - training (``training=True`` and ``layer.trainable``): normalize with the batch mean and
      the *biased* batch variance, and update
      ``moving = moving * momentum + batch_statistic * (1 - momentum)`` with the biased
      variance, exactly as Keras 3 does (the fused op returns the Bessel-corrected variance;
      it is scaled back by (n - 1) / n, n = batch x height x width);
    - inference (``training`` false/None, or ``layer.trainable = False``, which in Keras 3 puts
      a batch norm in inference mode): normalize with the moving statistics, the pattern the
      TFLite converter folds into the preceding convolution.

    The fused kernel runs when the backend is TensorFlow, the input is 4-D (NHWC) with ``axis``
    the last one, the computation dtype is float32 (float16/bfloat16 inputs are upcast to
    float32 like Keras does; the output is cast to the layer's compute dtype), there is no
    mask, and neither ``synchronized`` nor ``renorm`` is set and ``epsilon >= 1.001e-5``.
    Otherwise ``call`` is Keras's own (masked moments, cross-replica statistics, batch renorm,
    channels_first, 2-D inputs, float64, other backends).

    Under ``tf.distribute`` the moving statistics are mirrored variables with "mean"
    aggregation: after a training step every replica holds the mean of the replicas' updates
    (so a MoCo key encoder's EMA stays identical on every replica). With
    ``synchronized=True`` (sync BN: batch statistics of the global batch, all-reduced across
    replicas) Keras's own implementation runs.

    One difference remains: in inference mode the fused op has no gradient with respect to
    ``moving_mean`` / ``moving_variance`` (Keras's has one); both are non-trainable weights,
    and gradients with respect to the inputs, ``gamma`` and ``beta`` are the same.

    Args:
        axis: the features axis (last for NHWC; other axes use Keras's implementation).
        momentum: momentum of the moving statistics.
        epsilon: added to the variance.
        center: add ``beta``; scale: multiply by ``gamma``.
        **kwargs: everything else ``keras.layers.BatchNormalization`` takes (initializers,
            regularizers, constraints, ``synchronized``, ``renorm*``, ``name``, ``dtype``).

    Example:
        >>> import numpy as np
        >>> x = keras.Input((12, 5000, 1))
        >>> y = keras.layers.Conv2D(16, (1, 5), padding="same", use_bias=False)(x)
        >>> y = FusedBatchNormalization(momentum=0.99, name="bn")(y)
        >>> model = keras.Model(x, y)
        >>> model(np.zeros((2, 12, 5000, 1), "float32"), training=True).shape
        TensorShape([2, 12, 5000, 16])
    """

    def add_weight(self, *args, **kwargs):
        # Under tf.distribute each replica computes the moving statistics from its own batch;
        # "mean" aggregation writes the replicas' mean to every replica (Keras 3's default,
        # "none", lets each replica's copy drift to its own value, and saving keeps replica 0's).
        if kwargs.get("name") in ("moving_mean", "moving_variance"):
            kwargs.setdefault("aggregation", "mean")
        return super().add_weight(*args, **kwargs)

    def _can_fuse(self, inputs, mask):
        if keras.backend.backend() != "tensorflow" or mask is not None:
            return False
        if self.synchronized or self.renorm or self.epsilon < _MIN_FUSED_EPSILON:
            return False
        rank = len(inputs.shape)
        if rank != 4 or self.axis not in (-1, rank - 1):
            return False
        compute = keras.backend.result_type(keras.backend.standardize_dtype(inputs.dtype),
                                            "float32")
        return compute == "float32" and self.compute_dtype in ("float32", "float16",
                                                                "bfloat16")

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)
        channels = int(x.shape[-1])
        scale = (tf.cast(self.gamma, tf.float32) if self.scale
                 else tf.ones((channels,), tf.float32))
        offset = (tf.cast(self.beta, tf.float32) if self.center
                  else tf.zeros((channels,), tf.float32))
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)

        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            # The op normalizes with the biased variance but returns the unbiased one.
            shape = tf.shape(x)
            n = (tf.cast(shape[0], tf.float32) * tf.cast(shape[1], tf.float32)
                 * tf.cast(shape[2], tf.float32))
            variance = variance * tf.math.divide_no_nan(n - 1.0, n)
            self.moving_mean.assign(
                moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)


def batch_norms(model):
    """Every batch-norm layer of a model (nested ones included)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]
