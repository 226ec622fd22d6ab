import keras
import numpy as np
import pytest
import tensorflow as tf

from ecg_moco_tf import augment as A

ALL = A.PAPER_TRANSFORMS + A.EXTRA_TRANSFORMS
SEED = np.array([3, 4])


@pytest.fixture(scope="module")
def x():
    t = np.arange(5000) / 500
    base = np.sin(2 * np.pi * 1.0 * t) + 0.3 * np.sin(2 * np.pi * 7 * t)
    return tf.constant(np.stack([base * (1 + 0.1 * i) for i in range(8 * 12)]).reshape(
        8, 12, 5000).astype(np.float32))


@pytest.mark.parametrize("kind", ALL)
def test_shape_dtype_and_identity_at_probability_zero(kind, x):
    y = kind(probability=1.0).apply(x, SEED)
    assert y.shape == x.shape and y.dtype == tf.float32
    assert not np.allclose(y, x)
    np.testing.assert_array_equal(kind(probability=0.0).apply(x, SEED), x)


@pytest.mark.parametrize("kind, zero", [
    (A.GaussianNoise, {"max_std_mv": 0.0}),
    (A.GaussianSmoothing, {"min_sigma_s": 0.0, "max_sigma_s": 0.0}),
    (A.RandomErasing, {"max_seconds": 0.0}),
    (A.TimeResize, {"min_scale": 1.0, "max_scale": 1.0}),
    (A.BaselineShift, {"max_offset_mv": 0.0, "max_wander_mv": 0.0}),
    (A.LeadMasking, {"lead_probability": 0.0}),
    (A.PowerlineNoise, {"max_amplitude_mv": 0.0}),
    (A.MuscleNoise, {"max_std_mv": 0.0}),
    (A.RandomResizedCrop, {"min_seconds": 10.0, "max_seconds": 10.0}),
])
def test_identity_at_strength_zero(kind, zero, x):
    np.testing.assert_allclose(kind(probability=1.0, **zero).apply(x, SEED), x, atol=1e-4)


def test_noise_std_is_the_documented_amount(x):
    y = A.GaussianNoise(probability=1.0, min_std_mv=0.1, max_std_mv=0.1).apply(x, SEED)
    assert np.std(y - x) == pytest.approx(0.1, rel=0.02)
    y = A.GaussianNoise(probability=1.0, max_std_mv=0.2).apply(x, SEED)
    per_sample = np.std(y - x, axis=(1, 2))
    assert per_sample.max() <= 0.2 * 1.02 and len(np.unique(per_sample.round(4))) == len(x)


def test_muscle_noise_std(x):
    y = A.MuscleNoise(probability=1.0, max_std_mv=0.1).apply(x, SEED)
    assert (np.std(y - x, axis=(1, 2)) <= 0.1 * 1.03).all()


def test_erasing_span_length_and_leads(x):
    y = A.RandomErasing(probability=1.0, min_seconds=0.2, max_seconds=0.2,
                        per_lead_probability=0.0).apply(x, SEED).numpy()
    zero = (y == 0) & (x.numpy() != 0)
    assert (zero.sum(axis=2) == 100).all()                          # 0.2 s at 500 Hz, all leads
    y = A.RandomErasing(probability=1.0, min_seconds=0.2, max_seconds=0.2,
                        per_lead_probability=1.0).apply(x, SEED).numpy()
    zero = (y == 0) & (x.numpy() != 0)
    assert ((zero.sum(axis=2) > 0).sum(axis=1) == 1).all()          # exactly one lead each


def test_resize_scale_factor(x):
    y = A.TimeResize(probability=1.0, min_scale=1.25, max_scale=1.25).apply(x, SEED).numpy()
    t = np.arange(4000)
    src = t / 1.25                                                  # y(t) = x(t / s)
    expect = np.interp(src, np.arange(5000), x.numpy()[0, 0])
    np.testing.assert_allclose(y[0, 0, :4000], expect, atol=1e-4)
    z = A.TimeResize(probability=1.0, min_scale=0.8, max_scale=0.8).apply(x, SEED).numpy()
    assert (z[..., 4000:] == 0).all()                               # sped up: padded end


def test_smoothing_kernel_width():
    imp = np.zeros((1, 12, 5000), np.float32)
    imp[:, :, 2500] = 1.0
    y = A.GaussianSmoothing(probability=1.0, min_sigma_s=0.01, max_sigma_s=0.01).apply(
        imp, SEED).numpy()[0, 0]
    k = np.arange(5000) - 2500
    assert y.sum() == pytest.approx(1.0, abs=1e-3)
    assert np.sqrt((y * k ** 2).sum() / y.sum()) == pytest.approx(5.0, rel=0.03)   # 10 ms


def test_baseline_offset_range(x):
    y = A.BaselineShift(probability=1.0, max_offset_mv=0.3, max_wander_mv=0.0).apply(
        x, SEED).numpy()
    d = y - x.numpy()
    assert np.allclose(d, d[..., :1], atol=1e-5) and np.abs(d).max() <= 0.3 + 1e-5


def test_seed_determinism_and_probability_subset(x):
    aug = A.RandomAugment.default(seed=0)
    np.testing.assert_array_equal(aug.apply(x, SEED), aug.apply(x, SEED))
    assert not np.allclose(aug.apply(x, SEED), aug.apply(x, SEED + 1))
    t = A.GaussianNoise(probability=0.5)
    changed = np.any(t.apply(tf.tile(x, [8, 1, 1]), SEED).numpy() != np.tile(x, [8, 1, 1]),
                     axis=(1, 2))
    assert 0 < changed.sum() < len(changed)                         # a random subset


def test_keras_layers_training_flag_and_serialization(tmp_path, x):
    aug = A.build_augmenter(["GaussianNoise", "TimeResize"], probability=1.0, seed=1,
                            GaussianNoise={"max_std_mv": 0.3})
    np.testing.assert_array_equal(aug(x, training=False), x)
    assert not np.allclose(aug(x, training=True), x)
    model = keras.Sequential([keras.Input((12, 5000)), aug, keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    inner = back.layers[0]
    assert isinstance(inner, A.RandomAugment)
    assert inner.transforms[0].max_std_mv == 0.3
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.build_augmenter(["Nope"])


def _ramp(batch=4):
    """x[b, l, t] = t + 10000 l: a linear ramp in time, a different offset per lead."""
    t = np.arange(5000, dtype=np.float32)
    return tf.constant(np.stack([[t + 10000 * lead for lead in range(12)]] * batch))


def test_resized_crop_full_length_is_identity_and_needs_a_valid_range(x):
    crop = A.RandomResizedCrop(probability=1.0, min_seconds=10.0, max_seconds=10.0)
    np.testing.assert_array_equal(crop.apply(x, SEED), x)
    longer = A.RandomResizedCrop(probability=1.0, min_seconds=20.0, max_seconds=30.0)
    np.testing.assert_array_equal(longer.apply(x, SEED), x)       # capped at the input length
    with pytest.raises(ValueError, match="min_seconds"):
        A.RandomResizedCrop(min_seconds=6.0, max_seconds=5.0)


def test_resized_crop_of_a_ramp_is_the_ramp_segment():
    """A 5 s crop (L = 2500 samples) starting at integer sample s, stretched to 5000 samples:
    y[j] = x(s + j * 2499 / 4999), the same window in every lead."""
    x = _ramp(8)
    y = A.RandomResizedCrop(probability=1.0, min_seconds=5.0, max_seconds=5.0).apply(
        x, SEED).numpy()
    assert y.shape == (8, 12, 5000) and y.dtype == np.float32
    start = y[:, 0, 0]
    np.testing.assert_array_equal(start, np.round(start))                # whole samples
    assert (start >= 0).all() and (start <= 2500).all() and len(np.unique(start)) > 1
    j = np.arange(5000)
    expect = (start[:, None, None] + j[None, None] * 2499 / 4999
              + 10000 * np.arange(12)[None, :, None])
    np.testing.assert_allclose(y, expect, atol=2e-2)
    np.testing.assert_allclose(y[:, :, -1] - y[:, :, 0], 2499, atol=2e-2)  # ends: the window's


def test_resized_crop_lengths_in_range_and_seeded():
    x = _ramp(64)
    crop = A.RandomResizedCrop(probability=1.0, min_seconds=6.0, max_seconds=9.0)
    y = crop.apply(x, SEED).numpy()
    length = y[:, 0, -1] - y[:, 0, 0] + 1                                # crop length, samples
    assert (length >= 3000 - 0.1).all() and (length <= 4500 + 0.1).all()
    assert length.std() > 100                                           # drawn per sample
    np.testing.assert_array_equal(crop.apply(x, SEED), y)               # same seed, same crop
    assert not np.allclose(crop.apply(x, SEED + 1), y)
    half = A.RandomResizedCrop(probability=0.5).apply(x, SEED).numpy()
    same = (half == x.numpy()).all(axis=(1, 2))
    assert 0 < same.sum() < len(same)                                   # a random subset


def test_resized_crop_by_name_serializable_and_overrides_checked(x):
    aug = A.build_augmenter(["RandomResizedCrop", "GaussianNoise"], probability=1.0, seed=0,
                            RandomResizedCrop={"min_seconds": 8.0})
    crop = aug.transforms[0]
    assert isinstance(crop, A.RandomResizedCrop) and crop.min_seconds == 8.0
    back = A.RandomResizedCrop.from_config(crop.get_config())
    np.testing.assert_array_equal(back.apply(x, SEED), crop.apply(x, SEED))
    assert A.RandomResizedCrop in A.EXTRA_TRANSFORMS and "RandomResizedCrop" in A.TRANSFORMS
    with pytest.raises(ValueError, match=r"unknown augmentation.*'Nope'.*RandomResizedCrop"):
        A.build_augmenter(Nope={"x": 1})                                 # unknown override key
    with pytest.raises(ValueError, match=r"unknown parameter.*'max_std'.*max_std_mv"):
        A.build_augmenter(GaussianNoise={"max_std": 0.1})
    with pytest.raises(ValueError, match="not among the augmentations used"):
        A.build_augmenter(["GaussianNoise"], TimeResize={"max_scale": 1.1})
    per = A.build_augmenter(probability=0.5, TimeResize={"probability": 0.9})
    assert [t.probability for t in per.transforms] == [0.5, 0.5, 0.5, 0.9, 0.5]


def test_every_transform_accepts_an_empty_batch_eagerly():
    """p = 0.5 can pick no sample of a small batch: the transform then sees (0, 12, T)."""
    empty = np.zeros((0, 12, 5000), np.float32)
    for cls in A.TRANSFORMS.values():
        assert cls(probability=1.0).apply(empty, [1, 2]).shape == (0, 12, 5000), cls.__name__


def test_white_noise_is_unit_white_and_independent_across_leads():
    x = tf.zeros((64, 12, 5000))
    n = A.white_noise(x, tf.constant([3, 4], tf.int64)).numpy()
    assert abs(n.std() - 1) < 0.01 and abs(n.mean()) < 0.01
    flat = n.reshape(64 * 12, 5000)
    corr = np.corrcoef(flat)[np.triu_indices(64 * 12, 1)]
    # two leads share one of their two bank rows with probability ~ 4 / 512 (correlation 0.5)
    assert np.mean(np.abs(corr) > 0.1) < 0.02 and np.abs(corr).max() < 0.6
    lag1 = np.mean(flat[:, 1:] * flat[:, :-1])
    assert abs(lag1) < 0.01                             # white: no correlation in time


def test_fused_resample_matches_crop_and_resize_and_skipped_samples_are_exact(x):
    """The XLA interpolation gives what tf.image.crop_and_resize gives (the op it replaced),
    and bounds (0, 1) leave a sample bit for bit unchanged (how masked transforms skip it)."""
    lo = tf.constant([0.0, 0.1, 0.0, 0.25, 0.0, 0.3, 0.0, 0.05])
    hi = tf.constant([1.0, 0.6, 1.25, 0.9, 0.8, 1.0, 1.0, 0.5])
    y = A._resample(x, lo, hi).numpy()
    zeros = tf.zeros_like(lo)
    ref = tf.image.crop_and_resize(tf.transpose(x, [0, 2, 1])[:, None],
                                   tf.stack([zeros, lo, zeros + 1.0, hi], 1), tf.range(8),
                                   [1, 5000], extrapolation_value=0.0)
    ref = tf.transpose(ref[:, 0], [0, 2, 1]).numpy()
    # positions agree to float32 rounding (~1e-4 samples near the end): values to ~1e-4 mV
    np.testing.assert_allclose(y, ref, atol=3e-4)
    assert np.abs(y - ref).mean() < 1e-5
    assert np.array_equal(y[[0, 6]], x.numpy()[[0, 6]])
    assert np.all(y[2, :, 4001:] == 0)                   # stretched past the end: zeros


@pytest.fixture(scope="module")
def x64():
    t = np.arange(5000) / 500
    rng = np.random.default_rng(0)
    base = np.sin(2 * np.pi * 1.1 * t) + 0.3 * np.sin(2 * np.pi * 9 * t)
    return tf.constant((base * rng.uniform(0.5, 1.5, (64, 12, 1))
                        + 0.01 * rng.standard_normal((64, 12, 5000))).astype(np.float32))


@pytest.mark.parametrize("mode", ["eager", "graph", "layer"])
@pytest.mark.parametrize("kind", ALL)
def test_samples_not_picked_are_unchanged_bit_for_bit(kind, mode, x64):
    """Every transform is masked: a sample whose coin says no comes back exactly, also in a
    tf.function and as a Keras layer (where graph rewrites such as 1/x -> reciprocal could
    move an "identity" window), at batch 64."""
    if mode == "layer":
        layer = kind(probability=0.5, seed=3)
        seed = tf.cast(keras.random.SeedGenerator(3).next(), tf.int64)   # the layer's first
        y = tf.function(lambda v: layer(v, training=True))(x64).numpy()
    else:
        f = kind(probability=0.5).apply
        seed = tf.constant(SEED, tf.int64)
        y = (f(x64, seed) if mode == "eager" else tf.function(f)(x64, seed)).numpy()
    picked = (tf.random.stateless_uniform([64], A._seeds(seed, 2)[0]) < 0.5).numpy()
    same = np.all(y == x64.numpy(), axis=(1, 2))
    assert 10 < picked.sum() < 54
    assert np.array_equal(same[~picked], np.ones((~picked).sum(), bool))
    assert (~same[picked]).mean() > 0.5


def test_augmentation_layers_train_inside_a_keras_model(x64):
    """RandomAugment at p = 0.5 as the first layer of a model that fit() traces."""
    model = keras.Sequential([keras.Input((12, 5000)), A.RandomAugment.default(seed=0),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    hist = model.fit(x64[:16], np.zeros(16), epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_smoothing_and_wander_and_muscle_noise_match_written_out_formulas():
    x = tf.random.stateless_normal([3, 12, 5000], [5, 6])
    s_tf = A._seeds(SEED, 2)[1]                          # the seed transform() gets at p = 1
    sm = A.GaussianSmoothing(probability=1.0)
    sigma = A._uniform([3], s_tf, sm.min_sigma_s, sm.max_sigma_s + 1e-12).numpy() * 500
    k = np.arange(-20, 21)
    y = sm.apply(x, SEED).numpy()
    for i in range(3):
        w = np.exp(-0.5 * (k / sigma[i]) ** 2)
        ref = [np.convolve(lead, w / w.sum(), mode="same") for lead in x.numpy()[i]]
        np.testing.assert_allclose(y[i], ref, atol=1e-6)
    s1, s2, s3, s4 = A._seeds(s_tf, 4)
    bs = A.BaselineShift(probability=1.0)
    off = A._uniform([3, 12, 1], s1, -0.3, 0.3 + 1e-12).numpy()
    amp = A._uniform([3, 12, 1], s2, 0.0, 0.3 + 1e-12).numpy()
    hz = A._uniform([3, 1, 1], s3, 0.05, 0.5 + 1e-12).numpy()
    ph = A._uniform([3, 1, 1], s4, 0.0, 6.283185307).numpy()
    ref = x.numpy() + off + amp * np.sin(2 * np.pi * hz * np.arange(5000) / 500 + ph)
    np.testing.assert_allclose(bs.apply(x, SEED).numpy(), ref, atol=2e-5)
    m1, m2 = A._seeds(s_tf, 2)
    std = A._uniform([3], m1, 0.0, 0.05 + 1e-12).numpy()
    w = A.white_noise(x, m2).numpy()
    ref = x.numpy() + std[:, None, None] * (w - np.roll(w, 1, axis=2)) / np.sqrt(2)
    np.testing.assert_allclose(A.MuscleNoise(probability=1.0).apply(x, SEED).numpy(), ref,
                               atol=1e-6)


def test_fused_noise_is_the_documented_bank_sum():
    """GaussianNoise = x + std * (bank[a] + sign * bank[b]) * flip / sqrt(2), written out."""
    x = tf.random.stateless_normal([4, 12, 5000], [0, 1])
    s1, s2 = A._seeds(A._seeds(SEED, 2)[1], 2)
    std = A._uniform([4], s1, 0.0, 0.05 + 1e-12)
    row_a, row_b, ca, cb = (v.numpy() for v in A._bank_draws(x, s2))
    bank = A._noise_bank(5000)
    ref = x.numpy() + std.numpy()[:, None, None] * (
        bank[row_a] * ca[..., None] + bank[row_b] * cb[..., None])
    y = A.GaussianNoise(probability=1.0).apply(x, SEED).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert np.all(row_a != row_b) and set(np.unique(np.abs(cb))) == {np.float32(0.70710678)}
