import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from ecg_moco_tf.models import MoCo, build_encoder
from ecg_moco_tf.models.clone import copy_model
from ecg_moco_tf.models.moco import parameters
from tests.sizes import SHORT


def _moco(enc, **kw):
    m = MoCo(enc, **{"queue_size": 16, "momentum": 0.9, "seed": 0, "shuffle_bn_splits": 1, **kw})
    m.compile(optimizer=keras.optimizers.Adam(1e-2))
    return m


def _vals(vs):
    return [v.numpy().copy() for v in vs]


def test_key_encoder_starts_as_exact_copy_and_stays_out_of_optimizer(small_encoder):
    m = _moco(small_encoder)
    for a, b in zip(m.encoder.weights + m.head.weights, m.key_encoder.weights + m.key_head.weights):
        assert a is not b
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ids = {id(v) for v in m.trainable_variables}
    assert not ids & {id(v) for v in m.key_encoder.weights + m.key_head.weights}
    assert ids == {id(v) for v in m.encoder.trainable_variables + m.head.trainable_variables}
    # BN layers of the key encoder stay trainable (=> batch statistics in training mode)
    assert all(layer.trainable for layer in m.key_encoder.layers)


def _moving(model):
    return [v for v in model.weights if "moving" in v.path]


def test_one_step_ema_of_parameters_own_bn_statistics_and_queue(small_encoder, views):
    """After one step: every key parameter is the EMA of the query's; the key encoder's moving
    statistics are its own, i.e. what a copy of the old key network gets from one train-mode
    pass on the key views (the reference implementation: EMA over parameters, running
    statistics are buffers), not the EMA of the query's; the keys are enqueued."""
    xq, xk = views
    m = _moco(small_encoder)
    old_key = _vals(parameters(m.key_encoder, m.key_head))
    old_moving = _vals(_moving(m.key_encoder))
    own = copy_model(m.key_encoder)
    own(tf.constant(xk), training=True)                      # the key network's own update
    expected_keys = m._keys(tf.constant(xk)).numpy()
    for v, o in zip(_moving(m.key_encoder), old_moving):
        v.assign(o)                                          # undo _keys' update
    m.train_on_batch((xq, xk))
    ema_of_query = [0.9 * k + 0.1 * q for k, q in zip(old_moving, _vals(_moving(m.encoder)))]
    new_query = _vals(parameters(m.encoder, m.head))
    new_key = _vals(parameters(m.key_encoder, m.key_head))
    assert len(new_key) == len(m.key_encoder.weights + m.key_head.weights) - 2 * 3  # 3 BNs
    assert sum(not np.allclose(a, b) for a, b in zip(old_key, new_query)) > len(old_key) // 2
    for ok, nq, nk in zip(old_key, new_query, new_key):
        np.testing.assert_allclose(nk, 0.9 * ok + 0.1 * nq, rtol=1e-5, atol=1e-6)
    for v, mine, ema in zip(_moving(m.key_encoder), _vals(_moving(own)), ema_of_query):
        np.testing.assert_allclose(v.numpy(), mine, rtol=1e-5, atol=1e-6, err_msg=v.path)
        assert not np.allclose(v.numpy(), ema, rtol=1e-3, atol=1e-5), v.path
    np.testing.assert_allclose(m.queue.keys.numpy()[:8], expected_keys, atol=1e-5)
    assert int(m.queue.pointer.numpy()) == 8


def test_gradients_reach_only_the_query_side(small_encoder, views):
    xq, xk = views
    m = _moco(small_encoder, momentum=1.0)
    before = _vals(parameters(m.key_encoder, m.key_head))
    queue_vars = [m.queue.keys]
    with tf.GradientTape(persistent=True) as tape:
        k = m._keys(tf.constant(xk))
        q = m._query(tf.constant(xq), training=True)
        loss = tf.reduce_mean(m._contrast(q, k)[0])
    key_grads = tape.gradient(loss, m.key_encoder.trainable_weights + m.key_encoder.weights
                              + queue_vars)
    assert all(g is None for g in key_grads)
    q_grads = tape.gradient(loss, m.trainable_variables)
    assert all(g is not None for g in q_grads)
    m.train_on_batch((xq, xk))
    for a, b in zip(before, _vals(parameters(m.key_encoder, m.key_head))):
        np.testing.assert_array_equal(a, b)            # m=1: key parameters frozen
    assert len(m.optimizer.variables) < 2 * len(m.trainable_variables) + 5


def test_shuffle_bn_and_symmetric_and_v1(small_encoder, views):
    xq, xk = views
    for kw in ({"shuffle_bn_splits": 2}, {"symmetric": True}, {"version": 1}):
        m = _moco(build_encoder(**SHORT), **kw)
        logs = m.train_on_batch((xq, xk), return_dict=True)
        assert np.isfinite(logs["loss"]) and 0 <= logs["accuracy"] <= 1
    assert m.queue.keys.shape == (16, 16)                            # v1: feature width


def test_save_load_roundtrip(small_encoder, views, tmp_path):
    xq, xk = views
    m = _moco(small_encoder)
    m.train_on_batch((xq, xk))
    m.save(tmp_path / "moco.keras")
    back = keras.saving.load_model(tmp_path / "moco.keras")
    assert isinstance(back, MoCo) and back.queue_size == 16 and back.momentum == 0.9
    np.testing.assert_array_equal(back.queue.keys.numpy(), m.queue.keys.numpy())
    assert int(back.queue.pointer.numpy()) == 8
    for a, b in zip(back.key_encoder.weights, m.key_encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(back.predict(xq, verbose=0), m.predict(xq, verbose=0), atol=1e-6)
    m.encoder.save(tmp_path / "enc.keras")
    enc = keras.saving.load_model(tmp_path / "enc.keras")
    np.testing.assert_allclose(enc.predict(xq, verbose=0), m.encoder.predict(xq, verbose=0),
                               atol=1e-6)


def test_metrics_reported(small_encoder, views):
    m = _moco(small_encoder)
    logs = m.train_on_batch(views, return_dict=True)
    assert set(logs) >= {"loss", "accuracy", "pos_cosine", "neg_cosine", "feature_std"}
    ev = m.test_on_batch(views, return_dict=True)
    assert np.isfinite(ev["loss"])


@pytest.mark.parametrize("batch,groups", [(8, 2), (8, 4), (12, 3), (64, 4)])
def test_shuffle_bn_groups_never_pair_a_query_group_with_its_key_group(batch, groups):
    from ecg_moco_tf.models.moco import shuffle_bn_groups

    rows = batch // groups
    for seed in range(20):
        q, k = (o.numpy() for o in shuffle_bn_groups(batch, groups, tf.constant([seed, 1])))
        assert sorted(q) == sorted(k) == list(range(batch))
        q_groups = [set(q[j * rows:(j + 1) * rows]) for j in range(groups)]
        for j in range(groups):
            members = set(k[j * rows:(j + 1) * rows])
            assert members not in q_groups                        # never a query group
            assert sum(bool(members & g) for g in q_groups) >= min(rows, groups)


def test_shuffle_bn_query_and_key_see_different_batch_statistics(views):
    """Which samples move sample i's query, and which its key (training-mode BN)? Perturb each
    sample in turn: the sets must be i's query group and i's key group, and differ."""
    xq, _ = views
    m = _moco(build_encoder(**SHORT), shuffle_bn_splits=2)
    q_order, k_order = m._bn_orders(8)
    base_q = m._query(xq, True, q_order).numpy()
    base_k = m._keys(xq, order=k_order).numpy()
    moves_q, moves_k = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    for j in range(8):
        x = xq.copy()
        x[j] += 3.0
        moves_q[:, j] = np.abs(m._query(x, True, q_order).numpy() - base_q).max(1) > 1e-6
        moves_k[:, j] = np.abs(m._keys(x, order=k_order).numpy() - base_k).max(1) > 1e-6
    for i in range(8):
        assert moves_q[i].sum() == 4 and moves_k[i].sum() == 4     # groups of 4
        assert moves_q[i, i] and moves_k[i, i]
        assert set(np.flatnonzero(moves_q[i])) != set(np.flatnonzero(moves_k[i]))
    no_split = _moco(build_encoder(**SHORT))                          # without: whole batch
    q = no_split._query(xq, True).numpy()
    x = xq.copy()
    x[7] += 3.0
    assert (np.abs(no_split._query(x, True).numpy() - q).max(1) > 1e-6).all()


# ------------------------------------------------------------ key-momentum schedule
def test_key_momentum_schedule_by_hand():
    from ecg_moco_tf.models.moco import key_momentum

    m0, mf, T = 0.9, 0.99, 8
    # m_t = mf - (mf - m0) * (cos(pi t / T) + 1) / 2
    expect = {0: 0.9, T // 2: 0.99 - 0.09 * 0.5, T: 0.99, 2 * T: 0.99,
              T // 4: 0.99 - 0.09 * (np.cos(np.pi / 4) + 1) / 2}
    for t, m in expect.items():
        assert float(key_momentum(t, m0, mf, T)) == pytest.approx(m, abs=1e-7), t
    assert float(key_momentum(0, m0, mf, T)) == np.float32(0.9)           # exact ends
    assert float(key_momentum(T, m0, mf, T)) == np.float32(0.99)
    assert key_momentum(5, 0.99) == 0.99 and key_momentum(5, 0.99, 0.999, 0) == 0.99  # off
    with pytest.raises(ValueError, match="momentum_final"):
        MoCo(build_encoder(**SHORT), momentum_final=1.5)


def test_momentum_schedule_applies_m_t_of_each_step(small_encoder, views):
    """Step 1 applies m_0 = 0.9 exactly, step 2 m_1 (from optimizer.iterations = 1)."""
    xq, xk = views
    m = _moco(small_encoder, momentum=0.9, momentum_final=0.99, momentum_steps=4)
    keys = lambda: _vals(parameters(m.key_encoder, m.key_head))            # noqa: E731
    queries = lambda: _vals(parameters(m.encoder, m.head))                 # noqa: E731
    m1 = 0.99 - 0.09 * (np.cos(np.pi / 4) + 1) / 2
    for step, mt in ((0, 0.9), (1, m1)):
        old_key = keys()
        assert int(m.optimizer.iterations.numpy()) == step
        assert float(m.key_momentum()) == pytest.approx(mt, abs=1e-7)
        m.train_on_batch((xq, xk))
        for ok, nq, nk in zip(old_key, queries(), keys()):
            np.testing.assert_allclose(nk, mt * ok + (1 - mt) * nq, rtol=1e-5, atol=1e-6)
    for _ in range(3):
        m.train_on_batch((xq, xk))
    assert float(m.key_momentum()) == pytest.approx(0.99)                # stays at the end


def test_momentum_schedule_in_config_and_saved_model(small_encoder, views, tmp_path):
    xq, xk = views
    m = _moco(small_encoder, momentum_final=0.99, momentum_steps=8)
    cfg = m.get_config()
    assert (cfg["momentum_final"], cfg["momentum_steps"]) == (0.99, 8)
    m.train_on_batch((xq, xk))
    m.save(tmp_path / "moco.keras")
    back = keras.saving.load_model(tmp_path / "moco.keras")
    assert (back.momentum_final, back.momentum_steps) == (0.99, 8)
    assert int(back.optimizer.iterations.numpy()) == 1                   # schedule resumes
    assert float(back.key_momentum()) == pytest.approx(float(m.key_momentum()))


def test_pretrain_cosine_lr_with_warmup_and_momentum_schedule(small_cohort, tmp_path):
    import json

    from ecg_moco_tf.data import experiment_view
    from ecg_moco_tf.training.pretrain import (PretrainConfig, learning_rate, pretrain,
                                               total_steps)
    from tests.sizes import TINY

    view = experiment_view(small_cohort, "proposed")
    train, valid = view["pretrain_train"], view["pretrain_valid"]
    cfg = PretrainConfig(epochs=1, batch_size=8, queue_size=16, lr_schedule="cosine",
                         warmup_steps=2, momentum=0.9, momentum_final=0.99, verbose=0)
    keras.utils.set_random_seed(0)
    moco, hist = pretrain(train, valid, str(tmp_path / "pre"), cfg,
                          encoder=build_encoder(**TINY))
    steps = total_steps(cfg, len(train))
    assert steps == len(train) // 8 >= 4 and np.isfinite(hist["loss"]).all()
    sched = learning_rate(cfg, steps)
    assert isinstance(sched, keras.optimizers.schedules.CosineDecay)
    lr = cfg.learning_rate
    assert [float(sched(t)) for t in (0, 1, 2)] == pytest.approx([0.0, lr / 2, lr])   # warm-up
    assert float(sched(2 + (steps - 2) / 2)) == pytest.approx(lr / 2)      # cosine midpoint
    assert int(moco.optimizer.iterations.numpy()) == steps
    assert float(moco.optimizer.learning_rate.numpy()) == pytest.approx(float(sched(steps)),
                                                                        abs=1e-12)
    assert float(sched(steps)) == pytest.approx(0.0, abs=1e-12)            # decayed to 0
    assert moco.momentum_steps == steps and float(moco.key_momentum()) == pytest.approx(0.99)
    saved = json.loads((tmp_path / "pre" / "pretrain_config.json").read_text())
    assert (saved["lr_schedule"], saved["warmup_steps"], saved["momentum_final"]) == (
        "cosine", 2, 0.99)
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate(PretrainConfig(lr_schedule="step"), 10)
    flat = learning_rate(PretrainConfig(warmup_steps=4), 10)                # constant + warm-up
    assert [float(flat(t)) for t in (0, 2, 4, 10)] == pytest.approx([0, 5e-4, 1e-3, 1e-3])
    assert learning_rate(PretrainConfig(), 10) == 1e-3                      # unchanged default


# ------------------------------------------------- issue 22, section 5: seeds, skipped steps
def test_cross_replica_key_order_depends_on_the_seed_and_never_uses_a_query_batch():
    """The seeded cross-replica permutation is a real draw: seeds [1,2], [3,4], ... give at
    least two different orders (the old one relabelled its draw away: one order for every
    seed), the same seed the same order; each is a permutation and no replica's key batch is
    a query batch (its own replica's included), for every seed."""
    from ecg_moco_tf.models.moco import cross_replica_key_order

    for replicas, per in ((2, 4), (4, 2), (4, 8)):
        n = replicas * per
        orders = set()
        for seed in ([1, 2], [3, 4], [5, 6], [7, 8], [9, 10]):
            order = cross_replica_key_order(n, replicas, tf.constant(seed)).numpy()
            again = cross_replica_key_order(n, replicas, tf.constant(seed)).numpy()
            np.testing.assert_array_equal(order, again)                   # same seed
            assert sorted(order) == list(range(n))                        # a permutation
            query_batches = [set(range(a * per, (a + 1) * per)) for a in range(replicas)]
            for r in range(replicas):
                keys = set(order[r * per:(r + 1) * per])
                assert keys != query_batches[r]                           # never its own
                assert keys not in query_batches                          # nor another's
                assert len({i // per for i in keys}) >= min(per, replicas)
            orders.add(tuple(order))
        assert len(orders) >= 2, (replicas, per)


def _key_state(m):
    return _vals(m.key_encoder.weights + m.key_head.weights) + _vals(
        [m.queue.keys, m.queue.pointer])


def test_skipped_loss_scale_step_moves_neither_the_key_network_nor_the_queue(views):
    """mixed_float16 (LossScaleOptimizer): a step with non-finite gradients (loss scale
    forced to 1e38) is skipped by the optimizer; the key network (EMA parameters and its own
    moving statistics), the queue and its pointer are left as they were. A normal step before
    and after moves all of them (graph mode: train_on_batch)."""
    from ecg_moco_tf.training import distribute

    xq, xk = views
    keras.utils.set_random_seed(0)
    with distribute.precision("mixed_float16"):
        m = MoCo(copy_model(build_encoder(**SHORT), dtype="mixed_float16"), queue_size=16,
                 momentum=0.9, seed=0)
        m.compile(optimizer=keras.optimizers.Adam(1e-2))
    opt = m.optimizer
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)

    def changed(before):
        return [not np.array_equal(a, b) for a, b in zip(before, _key_state(m))]

    def moved(before):           # queue and pointer, and most key weights (some are constant)
        c = changed(before)
        return c[-2] and c[-1] and sum(c[:-2]) > len(c[:-2]) // 2

    before = _key_state(m)
    m.train_on_batch((xq, xk))                                      # normal step
    assert moved(before) and int(opt.iterations.numpy()) == 1
    assert int(m.queue.pointer.numpy()) == 8

    opt.dynamic_scale.assign(1e38)                                  # gradients overflow
    before, query = _key_state(m), _vals(parameters(m.encoder, m.head))
    m.train_on_batch((xq, xk))
    assert int(opt.iterations.numpy()) == 1                         # the optimizer skipped it
    assert float(opt.dynamic_scale.numpy()) == pytest.approx(5e37, rel=1e-6)
    for a, b in zip(query, _vals(parameters(m.encoder, m.head))):
        np.testing.assert_array_equal(a, b)
    assert not any(changed(before))                                 # key net, queue, pointer
    assert int(m.queue.pointer.numpy()) == 8

    opt.dynamic_scale.assign(128.0)                                 # normal again
    before = _key_state(m)
    m.train_on_batch((xq, xk))
    assert int(opt.iterations.numpy()) == 2
    assert moved(before) and int(m.queue.pointer.numpy()) == 0
