"""FusedBatchNormalization computes what keras.layers.BatchNormalization computes, and the
encoder's pool-before-ReLU reordering computes what ReLU-before-pool computes."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ecg_moco_tf.models import FusedBatchNormalization, build_encoder
from ecg_moco_tf.models.normalization import LeadNormalization

SHAPE = (8, 12, 50, 16)
TOL = 1e-5
ENC = dict(kernel_sizes=(3, 3, 3), filters=(4, 4, 4), pools=(2, 2, 2), spatial_filters=8,
           feature_dim=16, num_samples=64)


def _close(actual, expected, tol=TOL):
    """|a - e| <= tol, relative to the reference's scale where it is above 1 (a gradient of
    gamma sums thousands of float32 products: the summation order alone moves it by ~1e-6 of
    its size)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def _random_weights(rng, channels, center=True, scale=True):
    weights = []
    if scale:
        weights.append(rng.normal(1.0, 0.3, channels))
    if center:
        weights.append(rng.normal(0.0, 0.5, channels))
    weights += [rng.normal(0.0, 0.5, channels), rng.uniform(0.5, 2.0, channels)]
    return [w.astype("float32") for w in weights]


def _pair(rng, shape=SHAPE, **kwargs):
    """A Keras and a fused layer with the same (random) weights."""
    ref, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    ref.build(shape)
    fused.build(shape)
    weights = _random_weights(rng, shape[kwargs.get("axis", -1)], kwargs.get("center", True),
                              kwargs.get("scale", True))
    for layer in (ref, fused):
        for variable, value in zip(layer.weights, weights):     # renorm adds more after these
            variable.assign(value)
    return ref, fused


def _forward_backward(layer, x, w, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * w)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [y.numpy()] + [g.numpy() for g in grads]


def _ops(layer, shape, training):
    fn = tf.function(lambda x: layer(x, training=training))
    graph = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("momentum", [0.9, 0.99])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_outputs_gradients_and_moving_statistics_match_keras(momentum, center, scale):
    rng = np.random.default_rng(0)
    ref, fused = _pair(rng, momentum=momentum, center=center, scale=scale)
    x = rng.normal(0.3, 2.0, SHAPE).astype("float32")
    w = rng.normal(size=SHAPE).astype("float32")
    for training in (True, False):
        expected = _forward_backward(ref, x, w, training)
        actual = _forward_backward(fused, x, w, training)
        assert len(actual) == len(expected) == 1 + 1 + center + scale
        for a, e in zip(actual, expected):
            _close(a, e)
    for step in range(5):                    # several training calls on shifting batches
        xb = (x * (1 + 0.2 * step) + step).astype("float32")
        ref(xb, training=True)
        fused(xb, training=True)
        for a, e in zip(fused.get_weights(), ref.get_weights()):
            _close(a, e)
    # the moving statistics really moved, with the biased batch variance
    assert not np.allclose(fused.moving_mean.numpy(), _random_weights(
        np.random.default_rng(0), SHAPE[-1], center, scale)[-2])
    _close(fused(x, training=False), ref(x, training=False))


def test_moving_statistics_follow_the_keras_formula():
    rng = np.random.default_rng(1)
    ref, fused = _pair(rng, momentum=0.9)
    old_mean, old_var = fused.moving_mean.numpy().copy(), fused.moving_variance.numpy().copy()
    x = rng.normal(1.0, 3.0, SHAPE).astype("float32")
    fused(x, training=True)
    flat = x.reshape(-1, SHAPE[-1]).astype("float64")
    _close(fused.moving_mean.numpy(), 0.9 * old_mean + 0.1 * flat.mean(0))
    _close(fused.moving_variance.numpy(), 0.9 * old_var + 0.1 * flat.var(0))   # biased (ddof 0)


def test_fused_kernel_is_used_in_training_and_inference():
    layer = FusedBatchNormalization()
    layer.build(SHAPE)
    for training in (True, False):
        ops = _ops(layer, SHAPE, training)
        assert "FusedBatchNormV3" in ops, ops
        assert "Mean" not in ops                        # no separate moments


def test_fallbacks_use_keras_and_match():
    rng = np.random.default_rng(2)
    # 2-D input, channels_first axis, float64, renorm: Keras's own call
    for shape, kwargs in [((16, 8), {}), ((4, 8, 6, 5), {"axis": 1}),
                          ((4, 6, 5, 8), {"renorm": True})]:
        ref, fused = _pair(rng, shape=shape, **kwargs)
        x = rng.normal(size=shape).astype("float32")
        assert "FusedBatchNormV3" not in _ops(fused, shape, True)
        for training in (True, False):
            _close(fused(x, training=training), ref(x, training=training))
        for a, e in zip(fused.get_weights(), ref.get_weights()):
            _close(a, e)
    small_eps = FusedBatchNormalization(epsilon=1e-6)
    small_eps.build(SHAPE)
    assert "FusedBatchNormV3" not in _ops(small_eps, SHAPE, True)


def test_mask_falls_back_to_keras_masked_moments():
    rng = np.random.default_rng(3)
    shape = (4, 6, 5, 8)
    ref, fused = _pair(rng, shape=shape)
    x = rng.normal(size=shape).astype("float32")
    mask = rng.uniform(size=shape[:-1]) > 0.3
    _close(fused(x, training=True, mask=mask), ref(x, training=True, mask=mask))
    for a, e in zip(fused.get_weights(), ref.get_weights()):
        _close(a, e)


def test_mixed_precision_matches_keras():
    rng = np.random.default_rng(4)
    ref, fused = _pair(rng, dtype="mixed_float16")
    x = rng.normal(size=SHAPE).astype("float16")
    for training in (True, False):
        a, e = fused(x, training=training), ref(x, training=training)
        assert a.dtype == e.dtype == tf.float16
        np.testing.assert_allclose(np.asarray(a, "float32"), np.asarray(e, "float32"),
                                   atol=1e-2)
    for a, e in zip(fused.get_weights(), ref.get_weights()):
        _close(a, e)


def test_non_trainable_layer_runs_in_inference_mode_like_keras():
    rng = np.random.default_rng(5)
    ref, fused = _pair(rng)
    ref.trainable = fused.trainable = False
    before = fused.get_weights()
    x = rng.normal(0.5, 2.0, SHAPE).astype("float32")
    w = rng.normal(size=SHAPE).astype("float32")
    actual = _forward_backward(fused, x, w, training=True)
    expected = _forward_backward(ref, x, w, training=True)
    for a, e in zip(actual, expected):
        _close(a, e)
    _close(actual[0], fused(x, training=False))              # = inference mode
    for a, b in zip(fused.get_weights(), before):
        np.testing.assert_array_equal(a, b)                  # statistics frozen


def test_variables_marked_non_trainable_keep_batch_statistics():
    """MoCo's key encoder: variables out of the optimizer, layer trainable, BN in train mode."""
    rng = np.random.default_rng(6)
    ref, fused = _pair(rng)
    for v in ref.weights + fused.weights:
        v.trainable = False
    x = rng.normal(0.5, 2.0, SHAPE).astype("float32")
    _close(fused(x, training=True), ref(x, training=True))
    for a, e in zip(fused.get_weights(), ref.get_weights()):
        _close(a, e)
    assert not np.allclose(fused(x, training=True), fused(x, training=False), atol=1e-3)


def test_config_round_trip_and_weights_interchangeable():
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-4, center=False, name="bn")
    config = layer.get_config()
    keras_config = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, center=False,
                                                   name="bn").get_config()
    assert config == keras_config
    clone = FusedBatchNormalization.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "ecg_moco_tf>FusedBatchNormalization"
    assert isinstance(keras.saving.deserialize_keras_object(serialized),
                      FusedBatchNormalization)
    layer.build(SHAPE)
    ref = keras.layers.BatchNormalization(center=False)
    ref.build(SHAPE)
    assert [v.path.split("/")[-1] for v in layer.weights] == \
        [v.path.split("/")[-1] for v in ref.weights] == ["gamma", "moving_mean",
                                                           "moving_variance"]


def test_keras_file_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    inp = keras.Input(SHAPE[1:])
    x = keras.layers.Conv2D(8, (1, 3), padding="same", name="conv")(inp)
    out = FusedBatchNormalization(momentum=0.9, name="bn")(x)
    model = keras.Model(inp, out)
    model.get_layer("bn").set_weights(_random_weights(rng, 8))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    assert loaded.get_layer("bn").momentum == 0.9
    x = rng.normal(size=SHAPE).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    np.testing.assert_array_equal(loaded(x, training=True), model(x, training=True))


@pytest.mark.parametrize("pool", [2, 4])
def test_pool_then_relu_equals_relu_then_pool_exactly(pool):
    rng = np.random.default_rng(8)
    x = rng.normal(-0.3, 1.0, (4, 12, 64, 5)).astype("float32")
    x[0, 0, :8] = 0.0                                        # ties and zeros
    x[1, 1, :8] = -1.0
    maxpool, relu = keras.layers.MaxPooling2D((1, pool)), keras.layers.ReLU()
    np.testing.assert_array_equal(relu(maxpool(x)), maxpool(relu(x)))
    xt = tf.constant(x)
    w = tf.constant(rng.normal(size=(4, 12, 64 // pool, 5)).astype("float32"))
    grads = []
    for f in (lambda t: relu(maxpool(t)), lambda t: maxpool(relu(t))):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(f(xt) * w)
        grads.append(tape.gradient(loss, xt).numpy())
    np.testing.assert_array_equal(*grads)


def _reference_encoder(kernel_sizes, filters, pools, spatial_filters, feature_dim,
                       num_samples, num_leads=12, bn_momentum=0.99):
    """The encoder before the change: Keras BN, ReLU before pooling in every block."""
    inp = keras.Input((num_leads, num_samples), name="ecg_mv")
    x = LeadNormalization(axis=1, name="normalization")(inp)
    x = keras.layers.Reshape((num_leads, num_samples, 1), name="to_image")(x)
    for i, (k, f, p) in enumerate(zip(kernel_sizes, filters, pools), start=1):
        x = keras.layers.Conv2D(f, (1, k), padding="same", use_bias=False,
                                name=f"temporal_{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"temporal_{i}_bn")(x)
        x = keras.layers.ReLU(name=f"temporal_{i}_relu")(x)
        x = keras.layers.MaxPooling2D((1, p), name=f"temporal_{i}_pool")(x)
    x = keras.layers.Conv2D(spatial_filters, (num_leads, 1), use_bias=False,
                            name="spatial_conv")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="spatial_bn")(x)
    x = keras.layers.ReLU(name="spatial_relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(feature_dim, name="features")(x)
    return keras.Model(inp, out)


def _encoder_pair(rng, bn_momentum=0.99):
    keras.utils.set_random_seed(0)
    enc = build_encoder(**ENC, bn_momentum=bn_momentum)
    ref = _reference_encoder(**ENC, bn_momentum=bn_momentum)
    for layer in enc.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(_random_weights(rng, layer.gamma.shape[0]))
        elif isinstance(layer, LeadNormalization):
            layer.set_weights([rng.normal(0, 0.1, 12).astype("float32"),
                               rng.uniform(0.5, 2, 12).astype("float32")])
    names = sorted(layer.name for layer in ref.layers)
    assert names == sorted(layer.name for layer in enc.layers)
    for layer in ref.layers:
        layer.set_weights(enc.get_layer(layer.name).get_weights())
    return enc, ref


def test_encoder_layers_order_and_grad_cam_target():
    enc = build_encoder(**ENC, bn_momentum=0.9)
    names = [layer.name for layer in enc.layers]
    assert names.index("temporal_1_pool") < names.index("temporal_1_relu")
    assert names.index("temporal_3_relu") < names.index("temporal_3_pool")     # last block
    bns = [layer for layer in enc.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [b.name for b in bns] == ["temporal_1_bn", "temporal_2_bn", "temporal_3_bn",
                                     "spatial_bn"]
    assert all(isinstance(b, FusedBatchNormalization) and b.momentum == 0.9 for b in bns)
    from ecg_moco_tf.explain.gradcam import resolve_layer

    assert resolve_layer(enc) == "temporal_3_relu"
    assert enc.get_layer("temporal_3_relu").output.shape == (None, 12, 16, 4)   # pre-pool
    default = build_encoder()
    assert default.get_layer("temporal_6_relu").output.shape == (None, 12, 78, 64)


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_encoder_matches_keras_bn_relu_before_pool(momentum):
    rng = np.random.default_rng(9)
    enc, ref = _encoder_pair(rng, momentum)
    x = rng.normal(0, 0.5, (8, 12, 64)).astype("float32")
    w = rng.normal(size=(8, 16)).astype("float32")
    _close(enc(x, training=False), ref(x, training=False))
    for step in range(3):
        xb = (x * (1 + 0.3 * step)).astype("float32")
        grads = []
        for model in (enc, ref):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(xb, training=True) * w)
            grads.append(dict(zip([v.path for v in model.trainable_weights],
                                  tape.gradient(loss, model.trainable_weights))))
        outputs = [model(xb, training=False) for model in (enc, ref)]
        _close(*outputs)
        assert sorted(grads[0]) == sorted(grads[1])          # same layer/weight names
        for path, g in grads[0].items():
            _close(g, grads[1][path], tol=1e-4)
    for layer in ref.layers:
        for a, e in zip(enc.get_layer(layer.name).get_weights(), layer.get_weights()):
            _close(a, e)
    _close(enc(x, training=True), ref(x, training=True))


def test_tflite_matches_keras_and_folds_batch_norm():
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(10)
    enc, ref = _encoder_pair(rng)
    x = rng.normal(0, 0.5, (1, 12, 64)).astype("float32")
    op_names = {}
    for label, model in (("fused", enc), ("keras", ref)):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        flatbuffer = converter.convert()
        interp = Interpreter(model_content=flatbuffer)
        op_names[label] = [d["op_name"] for d in interp._get_ops_details()]   # pre-delegate
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        out = interp.get_tensor(interp.get_output_details()[0]["index"])
        np.testing.assert_allclose(out, model(x, training=False), atol=1e-4)
    # batch norm folded into the convolutions: no BN, MUL or ADD op per block
    assert not any("BATCH_NORM" in op.upper() or "FLEX" in op.upper()
                   for op in op_names["fused"]), op_names["fused"]
    assert op_names["fused"].count("CONV_2D") == 4
    assert op_names["fused"] == op_names["keras"]           # what Keras BN converts to
    assert op_names["fused"].count("ADD") + op_names["fused"].count("MUL") <= 1   # input norm
