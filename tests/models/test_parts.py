import numpy as np
import pytest
import tensorflow as tf

from ecg_moco_tf.models import KeyQueue, info_nce, momentum_update, projection_head


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    q, k, queue = (_unit(rng.standard_normal(s)).astype("float32")
                   for s in ((4, 8), (4, 8), (10, 8)))
    loss, logits = info_nce(q, k, queue, temperature=0.2)
    pos = (q * k).sum(1, keepdims=True)
    lg = np.concatenate([pos, q @ queue.T], 1) / 0.2
    assert logits.shape == (4, 11)
    np.testing.assert_allclose(logits, lg, rtol=1e-5)
    expect = -lg[:, 0] + np.log(np.exp(lg).sum(1))                 # positive is column 0
    np.testing.assert_allclose(loss, expect, rtol=1e-5)


def test_projection_head_v1_v2():
    h = projection_head(16, 32, 8)
    assert h(np.zeros((2, 16), "float32")).shape == (2, 8)
    ident = projection_head(16, 0, 16)
    x = np.random.default_rng(0).standard_normal((2, 16)).astype("float32")
    np.testing.assert_array_equal(ident(x), x)
    with pytest.raises(ValueError):
        projection_head(16, 0, 8)


def test_momentum_update_hand_computed():
    a = [tf.Variable([1.0, 2.0]), tf.Variable(3.0)]
    b = [tf.Variable([5.0, 6.0]), tf.Variable(-1.0)]
    momentum_update(a, b, 0.9)
    np.testing.assert_allclose(a[0].numpy(), [0.9 * 1 + 0.1 * 5, 0.9 * 2 + 0.1 * 6])
    np.testing.assert_allclose(a[1].numpy(), 0.9 * 3 + 0.1 * -1)
    np.testing.assert_allclose(b[0].numpy(), [5.0, 6.0])            # query side untouched
    with pytest.raises(ValueError):
        momentum_update(a, b[:1], 0.9)


def test_queue_order_wraparound_and_pointer():
    q = KeyQueue(size=5, dim=2, seed=0)
    init = q.keys.numpy().copy()
    np.testing.assert_allclose(np.linalg.norm(init, axis=1), 1, rtol=1e-5)
    k1 = np.arange(6, dtype="float32").reshape(3, 2)
    q.enqueue(k1)
    np.testing.assert_array_equal(q.keys.numpy()[:3], k1)
    np.testing.assert_array_equal(q.keys.numpy()[3:], init[3:])
    assert int(q.pointer.numpy()) == 3
    k2 = 10 + np.arange(6, dtype="float32").reshape(3, 2)          # K=5 not divisible by B=3
    q.enqueue(k2)
    np.testing.assert_array_equal(q.keys.numpy()[3:], k2[:2])
    np.testing.assert_array_equal(q.keys.numpy()[0], k2[2])          # wrapped around
    np.testing.assert_array_equal(q.keys.numpy()[1:3], k1[1:])
    assert int(q.pointer.numpy()) == 1
    big = 100 + np.arange(14, dtype="float32").reshape(7, 2)       # batch larger than K
    q.enqueue(big)
    assert int(q.pointer.numpy()) == (1 + 7) % 5
    assert {tuple(r) for r in q.keys.numpy()} == {tuple(r) for r in big[-5:]}
