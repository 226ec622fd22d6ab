"""The paper's ECG encoder (App. B, after Attia et al. 2019) as a Keras functional model.

Input: raw millivolts, (batch, 12, 5000). Inside the model, in order:

1. ``normalization``: per-lead mean/variance of the *data set* (a :class:`LeadNormalization`
   adapted on training data with :func:`adapt_normalization`; amplitude stays diagnostic, no
   per-ECG z-scoring; its statistics are weights, so copies and exports normalize alike), then
   a reshape to the (12, 5000, 1) image;
2. six temporal blocks ``temporal_{i}``: Conv2D with a 1 x K kernel (time, within each lead),
   batch norm, max-pool 1 x P along time, ReLU. ReLU and max-pooling commute exactly
   (ReLU is monotonic: max(relu(a), relu(b)) = relu(max(a, b)), gradients included), so
   pooling first computes the same thing with 1/P of the ReLU work. The last block keeps
   BN -> ReLU -> pool: Grad-CAM's default target ``temporal_6_relu`` is its output *before*
   pooling (12 x 78 x 64 for the default encoder, see ``explain.gradcam``);
3. one spatial block ``spatial``: Conv2D with a 12 x 1 kernel (across leads), BN, ReLU;
4. flatten and one dense layer ``features`` to the feature vector (128-d by default).

Batch norms (``temporal_{i}_bn``, ``spatial_bn``) are :class:`FusedBatchNormalization` on the
TensorFlow backend (TensorFlow's fused kernel; same weights, config and results as
``keras.layers.BatchNormalization``, which is used on other backends), with momentum
``bn_momentum``.

Default sizes follow a common reading of Attia 2019: kernels (5, 5, 5, 3, 3, 3), filters
(16, 16, 32, 32, 64, 64), pools (2, 2, 4, 2, 2, 4), 128 spatial filters.
"""
from __future__ import annotations

import keras
import numpy as np

from .batchnorm import FusedBatchNormalization
from .normalization import LeadNormalization

KERNELS = (5, 5, 5, 3, 3, 3)
FILTERS = (16, 16, 32, 32, 64, 64)
POOLS = (2, 2, 4, 2, 2, 4)


def check_architecture(kernel_sizes, filters, pools, num_samples=5000):
    """``ValueError`` naming the problem when the per-block lists differ in length, hold a
    value below 1, or pool ``num_samples`` below one sample (cheap: no model is built)."""
    lists = {"kernel_sizes": kernel_sizes, "filters": filters, "pools": pools}
    if len({len(v) for v in lists.values()}) != 1:
        raise ValueError("kernel_sizes, filters and pools need one entry per temporal block; "
                         "given " + ", ".join(f"{k}={list(v)} ({len(v)})"
                                              for k, v in lists.items()))
    for k, v in lists.items():
        if any(int(e) < 1 for e in v):
            raise ValueError(f"{k}={list(v)}: every entry must be at least 1")
    if num_samples // int(np.prod([int(p) for p in pools])) < 1:
        raise ValueError(f"pools={list(pools)} reduce the {num_samples} samples to none: "
                         "their product must not exceed the input length")


def build_encoder(kernel_sizes=KERNELS, filters=FILTERS, pools=POOLS, spatial_filters=128,
                  feature_dim=128, num_leads=12, num_samples=5000, feature_activation=None,
                  bn_momentum=0.99, name="ecg_encoder"):
    """Build the encoder.

    Args:
        kernel_sizes, filters, pools: per temporal block (same length).
        spatial_filters: filters of the 12 x 1 spatial convolution.
        feature_dim: size of the output feature vector.
        num_leads, num_samples: input shape (leads x samples).
        feature_activation: activation of the final dense layer (None = linear).
        bn_momentum: momentum of the moving statistics of every batch norm.

    Example:
        >>> enc = build_encoder(feature_dim=64)
        >>> enc(np.zeros((2, 12, 5000), "float32")).shape
        TensorShape([2, 64])
    """
    check_architecture(kernel_sizes, filters, pools, num_samples)
    inp = keras.Input((num_leads, num_samples), name="ecg_mv")
    x = LeadNormalization(axis=1, name="normalization")(inp)
    x = keras.layers.Reshape((num_leads, num_samples, 1), name="to_image")(x)
    batch_norm = (FusedBatchNormalization if keras.backend.backend() == "tensorflow"
                  else keras.layers.BatchNormalization)
    last = len(kernel_sizes)
    for i, (k, f, p) in enumerate(zip(kernel_sizes, filters, pools), start=1):
        x = keras.layers.Conv2D(f, (1, k), padding="same", use_bias=False,
                                name=f"temporal_{i}_conv")(x)
        x = batch_norm(momentum=bn_momentum, name=f"temporal_{i}_bn")(x)
        if i < last:       # pool, then ReLU: the same values, 1/p of the ReLU work
            x = keras.layers.MaxPooling2D((1, p), name=f"temporal_{i}_pool")(x)
            x = keras.layers.ReLU(name=f"temporal_{i}_relu")(x)
        else:              # the Grad-CAM target temporal_{last}_relu stays before pooling
            x = keras.layers.ReLU(name=f"temporal_{i}_relu")(x)
            x = keras.layers.MaxPooling2D((1, p), name=f"temporal_{i}_pool")(x)
    x = keras.layers.Conv2D(spatial_filters, (num_leads, 1), padding="valid", use_bias=False,
                            name="spatial_conv")(x)
    x = batch_norm(momentum=bn_momentum, name="spatial_bn")(x)
    x = keras.layers.ReLU(name="spatial_relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(feature_dim, activation=feature_activation, name="features")(x)
    return keras.Model(inp, out, name=name)


def adapt_normalization(encoder, data):
    """Fit the encoder's per-lead normalization on training ECGs (array or tf.data of batches).

    ``data`` may yield signals, or (signal, ...) tuples, or dicts with 'signal'. The layer named
    ``normalization`` may be a :class:`LeadNormalization` or a Keras ``Normalization``; encoders
    without one are returned unchanged.
    """
    import tensorflow as tf

    if "normalization" not in [layer.name for layer in encoder.layers]:
        return encoder                     # a custom encoder without data-set normalization
    layer = encoder.get_layer("normalization")
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, tuple):
            data = data.map(_first)
        elif isinstance(spec, dict):
            data = data.map(_signal)
    layer.adapt(data)
    return encoder


def _first(*element):
    return element[0]


def _signal(element):
    return element["signal"]


def encoder_flops(encoder):
    """Multiply-adds x 2 of one forward pass of one ECG (convolutions and dense layers)."""
    flops = 0
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * int(np.prod(out[1:])) * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops
