"""Batched ECG augmentations (the paper's five, plus four off by default), as TF ops and layers.

Every transform works on a batch ``x`` of shape (batch, leads, samples), float32 millivolts at
``fs`` Hz, and is vectorized: one set of TF ops for the whole batch, each sample with its own
random draws, no per-sample Python and no ``tf.py_function``. Randomness is *stateless*:
``transform.apply(x, seed)`` with a (2,) int seed gives the same output for the same seed (this
is what the tf.data pipeline uses, with seeds derived from the epoch and batch index). As Keras
layers they draw seeds from a ``keras.random.SeedGenerator`` and are active only when
``training=True``, so they can sit inside a model and run on an accelerator (in a parallel
``tf.data`` map use ``apply`` with per-batch seeds: parallel calls of a layer can read its
seed state at the same time and give two batches the same views).

Each transform applies to a sample with ``probability`` (a per-sample coin flip), so a
:class:`RandomAugment` of several transforms picks a random subset per sample, as in the paper.

Parameter ranges are physical: millivolts, seconds, Hz. Defaults follow common ECG SSL practice
(Mehari & Strodthoff 2021; the paper gives no values):

| transform | parameter | default |
|---|---|---|
| GaussianNoise | noise std drawn from [0, ``max_std_mv``] | 0.05 mV |
| GaussianSmoothing | kernel sigma drawn from [``min_sigma_s``, ``max_sigma_s``] (direct convolution) | 2-10 ms |
| RandomErasing | span length drawn from [0, ``max_seconds``], all leads or one lead | 0.5 s |
| TimeResize | stretch factor drawn from [``min_scale``, ``max_scale``] (y(t) = x(t/s)) | 0.8-1.2 |
| BaselineShift | offset in [-``max_offset_mv``, +] per lead, wander amplitude [0, ``max_wander_mv``] at [``min_hz``, ``max_hz``] | 0.3 mV, 0.3 mV, 0.05-0.5 Hz |
| LeadMasking (off) | each lead zeroed with ``lead_probability`` | 0.2 |
| PowerlineNoise (off) | ``mains_hz`` sine, amplitude [0, ``max_amplitude_mv``] | 50 Hz, 0.05 mV |
| MuscleNoise (off) | high-pass (first-difference) Gaussian noise, std [0, ``max_std_mv``] | 0.05 mV |
| RandomResizedCrop (off) | window of [``min_seconds``, ``max_seconds``] (all leads) resampled to the full length | 5-10 s |
"""
from __future__ import annotations

import inspect

from . import console

console.import_tensorflow_quietly()      # before TensorFlow: no start-up notices
import keras  # noqa: E402
import numpy as np
import tensorflow as tf

FS = 500


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), n))


def _uniform(shape, seed, lo, hi, active=None):
    """Per-sample uniform draws; samples with ``active`` = 0 get 0 (no effect)."""
    u = tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi)
    if active is None:
        return u
    return u * tf.reshape(active, [-1] + [1] * (len(shape) - 1))


_BANKS = {}
BANK_ROWS = 512


def _noise_bank(samples):
    """A fixed bank of white Gaussian noise, (BANK_ROWS, samples) float32, drawn once."""
    if samples not in _BANKS:
        rng = np.random.default_rng(20211213)
        _BANKS[samples] = rng.standard_normal((BANK_ROWS, samples), np.float32)
    return _BANKS[samples]


def _xla(fn):
    """XLA-compile an element-wise / gather step of a transform: XLA fuses its passes over the
    batch into one (3-4x faster on CPU, measured in ``benchmarks/bench_pipeline.py``). Only the
    arithmetic is compiled; the random draws stay outside it, so a seed gives the same draws
    with or without XLA (outputs agree to float rounding: XLA may fuse a multiply-add)."""
    return tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)


def _bank_draws(x, seed):
    """Rows and signs of :func:`white_noise` for ``x`` (B, L, T): (row_a, row_b, sign_a,
    sign_b), each (B, L)."""
    s1, s2, s3 = _seeds(seed, 3)
    draw = tf.random.stateless_uniform(tf.concat([[2], tf.shape(x)[:2]], 0), s1, 0,
                                       BANK_ROWS - 1, tf.int32)
    row_a, row_b = draw[0], (draw[0] + 1 + draw[1]) % BANK_ROWS          # two different rows
    sign = tf.where(tf.random.stateless_uniform(tf.shape(x)[:2], s2) < 0.5, -1.0, 1.0)
    flip = tf.where(tf.random.stateless_uniform(tf.shape(x)[:2], s3) < 0.5, -1.0, 1.0)
    return row_a, row_b, flip * 0.70710678, flip * sign * 0.70710678


@_xla
def _add_bank_noise(x, bank, row_a, row_b, coef_a, coef_b, high_pass):
    """x + coef_a * bank[row_a] + coef_b * bank[row_b] (coefs (B, L)); with ``high_pass``
    the first difference of that noise (scaled to keep its variance), wrapping at the ends."""
    w = (tf.gather(bank, row_a) * coef_a[:, :, None]
         + tf.gather(bank, row_b) * coef_b[:, :, None])
    if high_pass:
        w = (w - tf.roll(w, 1, axis=2)) * 0.70710678
    return x + w


def white_noise(x, seed):
    """Unit white Gaussian noise shaped like ``x`` (B, L, T): every lead of every sample is
    (row a +- row b) / sqrt(2) of a pre-drawn bank of 512 rows (a != b), rows and signs drawn
    per lead. A sum of independent Gaussian rows is Gaussian and white; two row gathers cost
    about half of fresh normal draws (Box-Muller per value). Two leads share one bank row with
    probability ~4/512 (their noise then correlates at +-0.5): fine for an augmentation,
    not a noise source for statistics. Fresh draws when T is not static."""
    return _noisy(tf.zeros_like(x), seed, tf.ones(tf.shape(x)[:1]))


def _noisy(x, seed, std, high_pass=False):
    """``x`` plus ``std`` (B,) times unit white noise (:func:`white_noise`), or its high-passed
    first difference; fused into one pass over the batch."""
    if x.shape[2] is None:
        w = tf.random.stateless_normal(tf.shape(x), seed)
        if high_pass:
            w = (w - tf.roll(w, 1, axis=2)) * 0.70710678
        return x + std[:, None, None] * w
    row_a, row_b, coef_a, coef_b = _bank_draws(x, seed)
    return _add_bank_noise(x, tf.constant(_noise_bank(x.shape[2])), row_a, row_b,
                           coef_a * std[:, None], coef_b * std[:, None], high_pass)


@_xla
def _interpolate(x, lo, hi, picked):
    """Per sample, linear interpolation of ``x`` (B, L, T) at T points from ``lo`` * (T - 1)
    to ``hi`` * (T - 1) (the positions ``tf.image.crop_and_resize`` uses; beyond the last
    sample: 0); samples with ``picked`` = 0 are returned unchanged."""
    t = tf.shape(x)[2]
    last = tf.cast(t - 1, tf.float32)
    step = (hi - lo) * last / tf.maximum(last, 1.0)
    pos = lo[:, None] * last + tf.cast(tf.range(t), tf.float32)[None] * step[:, None]  # (B, T)
    left = tf.floor(pos)
    i0 = tf.cast(tf.clip_by_value(left, 0.0, last), tf.int32)
    i1 = tf.minimum(i0 + 1, t - 1)
    a = tf.gather(x, i0, axis=2, batch_dims=1)
    b = tf.gather(x, i1, axis=2, batch_dims=1)
    y = a + (b - a) * (pos - left)[:, None]
    inside = (pos >= 0.0) & (pos <= last)
    return tf.where(picked[:, None, None] > 0, tf.where(inside[:, None], y, 0.0), x)


def _resample(x, lo, hi, active=None):
    """Per sample, linear interpolation of ``x`` (B, L, T) at T points evenly spaced from
    ``lo`` * (T - 1) to ``hi`` * (T - 1) (``lo``, ``hi``: (B,) fractions of the length; points
    beyond the last sample are 0). Samples with ``active`` (B,) = 0 are left unchanged,
    exactly (a masked transform skips them without a gather and a scatter)."""
    lo = tf.cast(lo, tf.float32)
    return _interpolate(x, lo, tf.cast(hi, tf.float32),
                        tf.ones_like(lo) if active is None else active)


class EcgAugmentation(keras.layers.Layer):
    """Base class: a per-sample random transform applied with ``probability``.

    Args:
        probability: chance that a given sample is transformed (per sample, per call).
        fs: sampling rate in Hz of the input.
        seed: seed of the layer's SeedGenerator (used when called as a layer).
    """

    def __init__(self, probability=0.5, fs=FS, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.probability = probability
        self.fs = fs
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    #: True when ``transform`` takes ``active`` (B,) in {0, 1} and leaves inactive samples
    #: unchanged by zeroing their strength (cheaper than gathering the picked samples).
    masked = False

    def transform(self, x, seed, active=None):
        raise NotImplementedError

    def apply(self, x, seed):
        """Transform ``x`` (B, L, T) with the stateless ``seed``; returns same shape/dtype."""
        x = tf.convert_to_tensor(x, tf.float32)
        if self.probability <= 0:
            return x
        s_apply, s_tf = _seeds(seed, 2)
        if self.probability >= 1:
            return self.transform(x, s_tf)
        coin = tf.random.stateless_uniform(tf.shape(x)[:1], s_apply) < self.probability
        if self.masked:
            return self.transform(x, s_tf, active=tf.cast(coin, tf.float32))
        idx = tf.where(coin)                                    # transform only those picked
        y = self.transform(tf.gather_nd(x, idx), s_tf)
        return tf.tensor_scatter_nd_update(x, idx, y)

    def call(self, x, training=True):
        if not training:
            return x
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        return self.apply(x, seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "fs": self.fs,
                "seed": self.seed}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class GaussianNoise(EcgAugmentation):
    """Add white Gaussian noise whose std is drawn per sample from [0, ``max_std_mv``].

    Example:
        >>> GaussianNoise(max_std_mv=0.05).apply(x, seed=[1, 2])
    """

    def __init__(self, max_std_mv=0.05, min_std_mv=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_std_mv, self.min_std_mv = max_std_mv, min_std_mv

    masked = True

    def transform(self, x, seed, active=None):
        s1, s2 = _seeds(seed, 2)
        std = _uniform([tf.shape(x)[0]], s1, self.min_std_mv, self.max_std_mv + 1e-12, active)
        return _noisy(x, s2, std)

    def get_config(self):
        return {**super().get_config(), "max_std_mv": self.max_std_mv,
                "min_std_mv": self.min_std_mv}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class GaussianSmoothing(EcgAugmentation):
    """Blur along time with a Gaussian kernel, sigma drawn per sample in seconds.

    A direct convolution with the sampled Gaussian (truncated at 4 sigma of ``max_sigma_s``,
    normalized to sum 1), 'SAME' zero padding at the ends; each sample's leads share its
    kernel (one depthwise convolution over all samples and leads: 2x faster than the
    zero-padded FFT it replaces at these widths). Samples not picked get a unit impulse as
    kernel: exactly the identity, with no gather or scatter, so shapes stay static (XLA).
    """

    def __init__(self, min_sigma_s=0.002, max_sigma_s=0.010, **kwargs):
        super().__init__(**kwargs)
        self.min_sigma_s, self.max_sigma_s = min_sigma_s, max_sigma_s

    masked = True

    def transform(self, x, seed, active=None):
        b, leads, t = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        half = int(round(4 * self.max_sigma_s * self.fs))                # kernel half-width
        sigma = _uniform([b], seed, self.min_sigma_s, self.max_sigma_s + 1e-12, active) * self.fs
        k = tf.range(-half, half + 1, dtype=tf.float32)
        w = tf.exp(-0.5 * (k[None] / tf.maximum(sigma, 1e-3)[:, None]) ** 2)   # (B, K)
        w = tf.repeat(w / tf.reduce_sum(w, 1, keepdims=True), leads, axis=0)   # (B*L, K)
        rows = tf.transpose(tf.reshape(x, [b * leads, t]))[None, None]        # (1, 1, T, B*L)

        def blur():
            y = tf.nn.depthwise_conv2d(rows, tf.transpose(w)[None, :, :, None], [1, 1, 1, 1],
                                       "SAME")
            return tf.reshape(tf.transpose(y[0, 0]), tf.shape(x))
        return tf.cond(b * leads > 0, blur, lambda: x)                 # an empty batch

    def get_config(self):
        return {**super().get_config(), "min_sigma_s": self.min_sigma_s,
                "max_sigma_s": self.max_sigma_s}


@_xla
def _erase(x, in_span, lead_sel):
    """Zero ``x`` (B, L, T) where ``in_span`` (B, T) and ``lead_sel`` (B, L) are both true."""
    return tf.where(in_span[:, None, :] & lead_sel[:, :, None], 0.0, x)


@keras.saving.register_keras_serializable("ecg_moco_tf")
class RandomErasing(EcgAugmentation):
    """Zero a random time span of length drawn from [``min_seconds``, ``max_seconds``].

    With chance ``per_lead_probability`` the span is erased in one random lead only, otherwise
    in all leads.
    """

    def __init__(self, max_seconds=0.5, min_seconds=0.0, per_lead_probability=0.5, **kwargs):
        super().__init__(**kwargs)
        self.max_seconds, self.min_seconds = max_seconds, min_seconds
        self.per_lead_probability = per_lead_probability

    masked = True

    def transform(self, x, seed, active=None):
        b, leads, t = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        s1, s2, s3, s4 = _seeds(seed, 4)
        length = tf.round(_uniform([b], s1, self.min_seconds, self.max_seconds + 1e-12, active)
                          * self.fs)
        start = tf.floor(_uniform([b], s2, 0.0, 1.0) * (tf.cast(t, tf.float32) - length + 1))
        pos = tf.cast(tf.range(t), tf.float32)[None]
        in_span = (pos >= start[:, None]) & (pos < (start + length)[:, None])      # (B, T)
        lead = tf.random.stateless_uniform([b], s3, 0, leads, dtype=tf.int32)
        one_lead = tf.one_hot(lead, leads, on_value=True, off_value=False)        # (B, L)
        per_lead = _uniform([b], s4, 0.0, 1.0) < self.per_lead_probability
        lead_sel = one_lead | ~per_lead[:, None]
        return _erase(x, in_span, lead_sel)

    def get_config(self):
        return {**super().get_config(), "max_seconds": self.max_seconds,
                "min_seconds": self.min_seconds,
                "per_lead_probability": self.per_lead_probability}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class TimeResize(EcgAugmentation):
    """Stretch time by a factor s drawn from [``min_scale``, ``max_scale``]: y(t) = x(t / s).

    s > 1 slows the ECG (fewer beats in the window; the end is cropped), s < 1 speeds it up
    (zero-padded at the end). Linear interpolation; output length unchanged.
    """

    def __init__(self, min_scale=0.8, max_scale=1.2, **kwargs):
        super().__init__(**kwargs)
        self.min_scale, self.max_scale = min_scale, max_scale

    masked = True

    def transform(self, x, seed, active=None):
        scale = _uniform([tf.shape(x)[0]], seed, self.min_scale, self.max_scale + 1e-12)
        return _resample(x, tf.zeros_like(scale), 1.0 / scale, active)  # beyond the end: 0

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale, "max_scale": self.max_scale}


@_xla
def _add_wander(x, offset, amp, wave):
    """x + offset + amp * wave: offset, amp (B, L, 1), wave (B, 1, T) (one sine per sample,
    computed once outside, not once per lead)."""
    return x + (offset + amp * wave)


@keras.saving.register_keras_serializable("ecg_moco_tf")
class BaselineShift(EcgAugmentation):
    """Add a per-lead constant offset and a slow sinusoidal baseline wander.

    Offset per lead in [-``max_offset_mv``, ``max_offset_mv``]; wander amplitude per lead in
    [0, ``max_wander_mv``] at one frequency per sample in [``min_hz``, ``max_hz``].
    """

    def __init__(self, max_offset_mv=0.3, max_wander_mv=0.3, min_hz=0.05, max_hz=0.5, **kwargs):
        super().__init__(**kwargs)
        self.max_offset_mv, self.max_wander_mv = max_offset_mv, max_wander_mv
        self.min_hz, self.max_hz = min_hz, max_hz

    masked = True

    def transform(self, x, seed, active=None):
        b, leads, t = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        s1, s2, s3, s4 = _seeds(seed, 4)
        offset = _uniform([b, leads, 1], s1, -self.max_offset_mv, self.max_offset_mv + 1e-12,
                          active)
        amp = _uniform([b, leads, 1], s2, 0.0, self.max_wander_mv + 1e-12, active)
        hz = _uniform([b, 1, 1], s3, self.min_hz, self.max_hz + 1e-12)
        phase = _uniform([b, 1, 1], s4, 0.0, 6.283185307)
        time = tf.cast(tf.range(t), tf.float32)[None, None] / self.fs
        return _add_wander(x, offset, amp, tf.sin(6.283185307 * hz * time + phase))

    def get_config(self):
        return {**super().get_config(), "max_offset_mv": self.max_offset_mv,
                "max_wander_mv": self.max_wander_mv, "min_hz": self.min_hz,
                "max_hz": self.max_hz}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class LeadMasking(EcgAugmentation):
    """Zero whole leads, each with ``lead_probability`` (beyond the paper; off by default)."""

    def __init__(self, lead_probability=0.2, **kwargs):
        super().__init__(**kwargs)
        self.lead_probability = lead_probability

    masked = True

    def transform(self, x, seed, active=None):
        keep = tf.random.stateless_uniform(tf.shape(x)[:2], seed) >= self.lead_probability
        if active is not None:
            keep |= active[:, None] < 0.5
        return x * tf.cast(keep, x.dtype)[:, :, None]

    def get_config(self):
        return {**super().get_config(), "lead_probability": self.lead_probability}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class PowerlineNoise(EcgAugmentation):
    """Add mains interference: a ``mains_hz`` sine, amplitude in [0, ``max_amplitude_mv``]."""

    def __init__(self, mains_hz=50.0, max_amplitude_mv=0.05, **kwargs):
        super().__init__(**kwargs)
        self.mains_hz, self.max_amplitude_mv = mains_hz, max_amplitude_mv

    masked = True

    def transform(self, x, seed, active=None):
        b, leads, t = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        s1, s2 = _seeds(seed, 2)
        amp = _uniform([b, leads, 1], s1, 0.0, self.max_amplitude_mv + 1e-12, active)
        phase = _uniform([b, 1, 1], s2, 0.0, 6.283185307)
        time = tf.cast(tf.range(t), tf.float32)[None, None] / self.fs
        return x + amp * tf.sin(6.283185307 * self.mains_hz * time + phase)

    def get_config(self):
        return {**super().get_config(), "mains_hz": self.mains_hz,
                "max_amplitude_mv": self.max_amplitude_mv}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class MuscleNoise(EcgAugmentation):
    """Add high-frequency (EMG-like) noise: first difference of white noise, std in [0, max]."""

    def __init__(self, max_std_mv=0.05, **kwargs):
        super().__init__(**kwargs)
        self.max_std_mv = max_std_mv

    masked = True

    def transform(self, x, seed, active=None):
        s1, s2 = _seeds(seed, 2)
        std = _uniform([tf.shape(x)[0]], s1, 0.0, self.max_std_mv + 1e-12, active)
        return _noisy(x, s2, std, high_pass=True)          # unit variance, high-pass

    def get_config(self):
        return {**super().get_config(), "max_std_mv": self.max_std_mv}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class RandomResizedCrop(EcgAugmentation):
    """Crop a random window and resample it back to the full length (beyond the paper).

    The window length is drawn per sample from [``min_seconds``, ``max_seconds``] (capped at
    the input length; rounded to whole samples), its start uniformly among the whole-sample
    positions that keep it inside the input, and it is the same in all leads. Output sample
    ``j`` of ``T`` is the input at ``start + j * (L - 1) / (T - 1)`` (linear interpolation), so
    the first and last output samples are the window's ends. A crop of length ``L`` stretches
    time by ``(T - 1) / (L - 1)``: a 5 s crop of a 10 s ECG doubles the QRS width and halves
    the heart rate, like ``TimeResize`` with s = 2 (keep ``min_seconds`` near the input length
    when QRS width must survive). A window of the full length is the identity.
    """

    def __init__(self, min_seconds=5.0, max_seconds=10.0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < min_seconds <= max_seconds:
            raise ValueError("RandomResizedCrop needs 0 < min_seconds <= max_seconds")
        self.min_seconds, self.max_seconds = min_seconds, max_seconds

    masked = True

    def transform(self, x, seed, active=None):
        b, t = tf.shape(x)[0], tf.shape(x)[2]
        tf_ = tf.cast(t, tf.float32)
        s1, s2 = _seeds(seed, 2)
        seconds = _uniform([b], s1, self.min_seconds, self.max_seconds + 1e-12)
        length = tf.clip_by_value(tf.round(seconds * self.fs), 2.0, tf_)             # (B,)
        start = tf.floor(_uniform([b], s2, 0.0, 1.0) * (tf_ - length + 1.0))
        start = tf.minimum(start, tf_ - length)                     # u = 1 - eps: stay inside
        last = tf.maximum(tf_ - 1.0, 1.0)
        return _resample(x, start / last, (start + length - 1.0) / last, active)

    def get_config(self):
        return {**super().get_config(), "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds}


PAPER_TRANSFORMS = (GaussianNoise, GaussianSmoothing, RandomErasing, TimeResize, BaselineShift)
EXTRA_TRANSFORMS = (LeadMasking, PowerlineNoise, MuscleNoise, RandomResizedCrop)
#: every transform by class name (what ``build_augmenter`` and ``--augmentations`` accept)
TRANSFORMS = {k.__name__: k for k in PAPER_TRANSFORMS + EXTRA_TRANSFORMS}


@keras.saving.register_keras_serializable("ecg_moco_tf")
class RandomAugment(keras.layers.Layer):
    """Compose transforms; each fires per sample with its own probability (a random subset).

    Args:
        transforms: list of :class:`EcgAugmentation` layers, applied in order.
        seed: seed of the SeedGenerator used when called as a layer.

    Example:
        >>> aug = RandomAugment.default(seed=0)
        >>> view = aug.apply(batch, seed=[0, 7])       # stateless, for tf.data
        >>> model = keras.Sequential([aug, encoder])  # or as a layer (training=True only)
    """

    def __init__(self, transforms, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.transforms = [t if isinstance(t, keras.layers.Layer)
                           else keras.saving.deserialize_keras_object(t) for t in transforms]
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @classmethod
    def default(cls, probability=0.5, extras=False, fs=FS, seed=None):
        """The paper's five transforms (plus the extras if ``extras``)."""
        kinds = PAPER_TRANSFORMS + (EXTRA_TRANSFORMS if extras else ())
        return cls([k(probability=probability, fs=fs) for k in kinds], seed=seed)

    def build(self, input_shape):
        for t in self.transforms:
            t.build(input_shape)
        self.built = True

    def apply(self, x, seed):
        x = tf.convert_to_tensor(x, tf.float32)
        for t, s in zip(self.transforms, _seeds(seed, max(1, len(self.transforms)))):
            x = t.apply(x, s)
        return x

    def call(self, x, training=True):
        if not training:
            return x
        return self.apply(x, tf.cast(self.seed_generator.next(), tf.int64))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed,
                "transforms": [keras.saving.serialize_keras_object(t) for t in self.transforms]}


def _parameters(kind):
    """Constructor arguments of a transform class: its own, then the base class's."""
    own = [p for p in inspect.signature(kind.__init__).parameters
           if p not in ("self", "kwargs")]
    return own + [p for p in ("probability", "fs", "seed") if p not in own]


def build_augmenter(names=None, probability=0.5, fs=FS, seed=None, **overrides):
    """Build a RandomAugment from transform class names (default: the paper's five).

    ``overrides`` maps a class name to a dict of constructor arguments, e.g.
    ``build_augmenter(GaussianNoise={"max_std_mv": 0.1})`` (a ``probability`` there overrides
    the common one for that transform). Unknown names, in ``names`` or as override keys, raise
    ``ValueError`` listing the valid ones; an override of a transform not in ``names`` too
    (it would silently do nothing).
    """
    registry = TRANSFORMS
    names = list(names) if names else [k.__name__ for k in PAPER_TRANSFORMS]
    unknown = [n for n in list(names) + list(overrides) if n not in registry]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {sorted(registry)}")
    unused = [n for n in overrides if n not in names]
    if unused:
        raise ValueError(f"augmentation override(s) for {unused}, which are not among the "
                         f"augmentations used {names}; add them there or drop the override")
    bad = [n for n, kw in overrides.items() if not isinstance(kw, dict)]
    if bad:
        raise ValueError(f"augmentation override(s) for {bad} must be dicts of constructor "
                         'arguments, e.g. {"GaussianNoise": {"max_std_mv": 0.1}}')
    for n, kw in overrides.items():
        valid = _parameters(registry[n])
        wrong = sorted(set(kw) - set(valid))
        if wrong:
            raise ValueError(f"unknown parameter(s) {wrong} of {n}; choose from {valid}")
    return RandomAugment([registry[n](**{"probability": probability, "fs": fs,
                                         **overrides.get(n, {})}) for n in names], seed=seed)
