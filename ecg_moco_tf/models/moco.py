"""MoCo (v1/v2) as a ``keras.Model`` whose ``train_step`` lets plain ``model.fit`` pretrain.

The design (why each step is as it is) is in docs/design.md, "The MoCo training step".
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from .batchnorm import batch_norms
from .clone import copy_model
from .heads import projection_head
from .losses import info_nce
from .momentum import momentum_update
from .queue import KeyQueue


def _group_rows(batch_size, groups):
    """Rows per shuffle-BN group, checked: ``batch_size`` a multiple of ``groups``, >= 2 rows."""
    rows = batch_size // groups
    tf.debugging.assert_equal(rows * groups, batch_size, "the MoCo batch size must be a "
                              "multiple of shuffle_bn_splits (--shuffle_bn_splits)")
    tf.debugging.assert_greater_equal(rows, 2, "shuffle-BN needs at least 2 samples per "
                                      "group: lower shuffle_bn_splits or raise batch_size")
    return rows


def shuffle_bn_groups(batch_size, groups, seed):
    """Batch-norm groups of queries and keys for one step (single-device shuffle-BN).

    Returns (query_order, key_order), two permutations of ``range(batch_size)``: chunk ``j`` of
    each (``batch_size // groups`` rows) is BN group ``j``. Queries: a random permutation. The
    sample at rank ``r`` of query group ``a`` goes to key group ``(a + r) % groups``, so every
    key group takes one sample of each rank from ``min(rows, groups)`` different query groups:
    no key group equals a query group, whatever the draw.
    """
    rows = _group_rows(batch_size, groups)
    order = tf.argsort(tf.random.stateless_uniform([batch_size], seed))
    pos = tf.range(batch_size)
    key_group = (pos // rows + pos % rows) % groups
    key_order = tf.gather(order, tf.argsort(key_group * batch_size + pos))
    return order, key_order


def cross_replica_key_order(global_batch, replicas, seed):
    """Key permutation of cross-replica shuffle-BN: a permutation ``order`` of
    ``range(global_batch)``; replica r runs the key network on the samples
    ``order[r * b:(r + 1) * b]`` (b = global_batch / replicas) of the all-gathered key views.

    The query groups are the replicas' own batches (contiguous chunks of the global batch, in
    replica order). The layout of :func:`shuffle_bn_groups` with those chunks as query groups:
    the sample of rank ``r`` in chunk ``a`` goes to key group ``(a + r) % replicas``, where the
    ranks within each chunk are a seeded random permutation, and key group ``j`` runs on
    replica ``perm[j]`` (a seeded random permutation of the replicas), so the same guarantee
    holds whatever the draw: no replica's key batch equals a query batch (its own included),
    each mixes samples of ``min(b, replicas)`` replicas. Same seed, same order (on every
    replica: stateless draws); different seeds, different orders.
    """
    b = _group_rows(global_batch, replicas)
    u = tf.random.stateless_uniform(tf.stack([replicas, b + 1]), seed)
    ranks = tf.argsort(u[:, :b], axis=1)                  # a random rank order in each chunk
    members = tf.reshape(ranks + tf.range(replicas)[:, None] * b, [-1])  # (a, r) -> sample
    replica_of_group = tf.argsort(u[:, b])                # key group j runs on this replica
    pos = tf.range(global_batch)
    key_group = (pos // b + pos % b) % replicas
    replica = tf.gather(replica_of_group, key_group)
    return tf.gather(members, tf.argsort(replica * global_batch + pos))


def parameters(*models):
    """The weights the key network takes by EMA: every floating-point weight but batch norms'
    moving statistics (each network keeps its own, as buffers in the reference
    implementation); integer weights (a Keras ``Normalization``'s count) are not averaged."""
    stats = {id(v) for m in models for bn in batch_norms(m)
             for v in (bn.moving_mean, bn.moving_variance)}
    return [v for m in models for v in m.weights
            if id(v) not in stats and "float" in str(v.dtype)]


def key_moving_statistics(moco):
    """The batch norms' moving statistics of the key network (encoder and head), which its
    own train-mode passes update."""
    return [v for m in (moco.key_encoder, moco.key_head) for bn in batch_norms(m)
            for v in (bn.moving_mean, bn.moving_variance)]


def gather_replicas(ctx, x):
    """``x`` of every replica, stacked in replica order along axis 0 (same shape on every
    replica), in replica context ``ctx``.

    An all-reduce (sum) of ``x`` placed in its replica's slot of zeros: exact (x + 0 = x),
    and it works under every strategy, while ``ReplicaContext.all_gather`` fails under
    ``MultiWorkerMirroredStrategy`` with one device per worker (TensorFlow 2.21:
    "destinations can not be empty"). It moves R times the data of an all-gather, small
    next to a step (the keys; the key views for shuffle-BN)."""
    n = ctx.num_replicas_in_sync
    slot = tf.one_hot(ctx.replica_id_in_sync_group, n, dtype=x.dtype)
    slot = tf.reshape(slot, [n, 1] + [1] * len(x.shape[1:]))
    stacked = ctx.all_reduce(tf.distribute.ReduceOp.SUM, slot * x[None])
    rest = x.shape[1:]
    return tf.reshape(stacked, [-1] + (rest.as_list() if rest.is_fully_defined()
                                       else tf.unstack(tf.shape(x)[1:])))


def key_momentum(step, momentum, momentum_final=None, momentum_steps=0):
    """Key-encoder momentum at optimizer step ``step``: a float32 scalar tensor, or the Python
    float ``momentum`` when there is no schedule.

    Constant ``momentum`` unless ``momentum_final`` is set and ``momentum_steps`` > 0; then
    a cosine from ``momentum`` (step 0) to ``momentum_final`` (step ``momentum_steps`` and
    after), as in BYOL: ``m_t = m_final - (m_final - m_0) * (cos(pi t / T) + 1) / 2``,
    computed in float64 as ``w * m_0 + (1 - w) * m_final`` with ``w = (cos(pi t / T) + 1) / 2``
    so that both ends are exact.
    """
    if momentum_final is None or momentum_steps <= 0:
        return momentum
    t = tf.minimum(tf.cast(step, tf.float64), float(momentum_steps))
    w = 0.5 * (tf.cos(math.pi * t / float(momentum_steps)) + 1.0)
    return tf.cast(w * momentum + (1.0 - w) * momentum_final, tf.float32)


@keras.saving.register_keras_serializable("ecg_moco_tf")
class MoCo(keras.Model):
    """Momentum Contrast around any Keras encoder mapping ECG batches to feature vectors.

    Args:
        encoder: a built Keras model (the query encoder), e.g. ``build_encoder()``.
        version: 2 adds an MLP projection head (MoCo v2); 1 uses the features directly.
        projection_dim: width of the contrastive space and of the queue.
        hidden_dim: hidden width of the v2 head (default: the encoder's feature width).
        queue_size: number of negative keys K.
        momentum: EMA coefficient m of the key network (the start value of a schedule).
        momentum_final: if set (with ``momentum_steps`` > 0), m follows a cosine from
            ``momentum`` to ``momentum_final`` over ``momentum_steps`` optimizer steps and
            stays there (:func:`key_momentum`; the step is ``optimizer.iterations``, so a
            checkpoint resumes the schedule). E.g. 0.9 -> 0.99: the key encoder forgets its
            random start within tens of steps on small data, then smooths more.
        momentum_steps: length T of the momentum schedule in optimizer steps.
        temperature: InfoNCE temperature.
        symmetric: also contrast key-view queries with query-view keys (2x compute).
        shuffle_bn_splits: single-device shuffle-BN substitute (1 = off); under
            ``tf.distribute`` with several replicas, > 1 turns on cross-replica shuffle-BN.
        seed: seed of the initial queue and of shuffle-BN permutations.

    Example:
        >>> moco = MoCo(build_encoder(), queue_size=1024)
        >>> moco.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> moco.fit(two_view_dataset, epochs=10)
        >>> moco.encoder.save("encoder.keras")
    """

    def __init__(self, encoder, version=2, projection_dim=128, hidden_dim=None,
                 queue_size=4096, momentum=0.999, temperature=0.2, symmetric=False,
                 shuffle_bn_splits=1, seed=None, momentum_final=None, momentum_steps=0,
                 **kwargs):
        super().__init__(**kwargs)
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError("momentum must be in [0, 1]")
        if momentum_final is not None and not 0.0 <= momentum_final <= 1.0:
            raise ValueError("momentum_final must be in [0, 1]")
        if momentum_steps < 0:
            raise ValueError("momentum_steps must be >= 0")
        self.momentum_final = None if momentum_final is None else float(momentum_final)
        self.momentum_steps = int(momentum_steps)
        self.version, self.projection_dim = version, projection_dim
        feat = encoder.output.shape[-1]
        self.hidden_dim = hidden_dim or feat
        self.queue_size, self.momentum, self.temperature = queue_size, momentum, temperature
        self.symmetric, self.shuffle_bn_splits, self.seed = symmetric, shuffle_bn_splits, seed
        self.encoder = encoder
        self.head = projection_head(feat, self.hidden_dim if version == 2 else 0,
                                    projection_dim if version == 2 else feat,
                                    name="query_head")
        # exact copies (weights and outputs); variables out of the optimizer, BN in train mode
        self.key_encoder = copy_model(encoder, trainable=False)
        self.key_head = copy_model(self.head, trainable=False)
        self.queue = KeyQueue(queue_size, self.head.output.shape[-1], seed=seed, name="queue")
        self._seed_gen = keras.random.SeedGenerator(seed)
        names = ("loss", "accuracy", "pos_cosine", "neg_cosine", "feature_std")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.built = True

    # ----------------------------------------------------------------------- forward parts
    def call(self, inputs, training=False):
        """Query-encoder features (what downstream tasks use)."""
        return self.encoder(inputs, training=training)

    def _grouped(self, net, x, order, training):
        """``net`` on ``x`` in BN groups: chunk j of ``order`` is group j; rows back in order."""
        if order is None:
            return net(x, training=training)
        parts = tf.split(tf.gather(x, order), self.shuffle_bn_splits)
        feats = tf.concat([net(p, training=training) for p in parts], 0)
        return tf.gather(feats, tf.math.invert_permutation(order))

    @staticmethod
    def _unit(z):
        """L2-normalized rows in float32 (half-precision projections under mixed precision)."""
        return tf.math.l2_normalize(tf.cast(z, tf.float32), axis=1)

    def _query(self, x, training, order=None):
        feats = self._grouped(self.encoder, x, order, training)
        return self._unit(self.head(feats, training=training))

    def _key_net(self, x):
        return self._unit(self.key_head(self.key_encoder(x, training=True), training=True))

    def _shuffled_keys(self, x, order, ctx):
        """Cross-replica shuffle-BN: all-gather the key views, run the key network on this
        replica's share ``order[r * b:(r + 1) * b]`` of the global batch (its own batch
        statistics), all-gather those keys and un-shuffle them; returns this replica's keys,
        row i for its sample i."""
        b = tf.shape(x)[0]
        start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b
        x_all = gather_replicas(ctx, x)
        k = self._key_net(tf.gather(x_all, tf.slice(order, [start], [b])))
        k_all = tf.gather(gather_replicas(ctx, k), tf.math.invert_permutation(order))
        return tf.slice(k_all, [start, 0], [b, -1])

    def _keys(self, x, training=True, order=None):
        """Keys of the key network in train-mode BN (which updates its own moving statistics).

        ``order``: shuffle-BN groups (:meth:`_bn_orders`): on one replica a permutation of
        this batch, across R > 1 replicas one of the global batch."""
        if not training:
            return self._unit(self.key_head(self.key_encoder(x, training=False)))
        ctx = tf.distribute.get_replica_context()
        if order is not None and ctx is not None and ctx.num_replicas_in_sync > 1:
            k = self._shuffled_keys(x, order, ctx)
        elif order is None:
            k = self._key_net(x)
        else:
            feats = self._grouped(self.key_encoder, x, order, training=True)
            k = self._unit(self.key_head(feats, training=True))
        return tf.stop_gradient(k)

    def key_momentum(self, step=None):
        """The key momentum m at optimizer step ``step`` (default: the optimizer's current
        iteration, i.e. the m the next train step applies)."""
        if step is None:
            opt = getattr(self, "optimizer", None)
            step = opt.iterations if opt is not None else 0
        return key_momentum(step, self.momentum, self.momentum_final, self.momentum_steps)

    def _bn_orders(self, batch_size, replicas=1):
        """(query order, key order) of this step's shuffle-BN groups, or (None, None).

        Across ``replicas`` > 1 (``batch_size`` per replica): no query order (each replica's
        batch is a group) and the cross-replica key permutation of the global batch, drawn
        from a seed generator whose state is the same on every replica."""
        if self.shuffle_bn_splits <= 1:
            return None, None
        seed = tf.cast(self._seed_gen.next(), tf.int32)
        if replicas > 1:
            return None, cross_replica_key_order(batch_size * replicas, replicas, seed)
        return shuffle_bn_groups(batch_size, self.shuffle_bn_splits, seed)

    def _contrast(self, q, k):
        loss, logits = info_nce(q, k, self.queue.keys, self.temperature)
        return loss, logits

    def _update_metrics(self, loss, logits, q, k):
        acc = tf.cast(tf.equal(tf.argmax(logits, axis=1), 0), tf.float32)
        std = tf.reduce_mean(tf.math.reduce_std(q, axis=0))
        values = {"loss": tf.reduce_mean(loss), "accuracy": tf.reduce_mean(acc),
                  "pos_cosine": tf.reduce_mean(tf.reduce_sum(q * k, 1)),
                  "neg_cosine": tf.reduce_mean(tf.matmul(q, self.queue.keys, transpose_b=True)),
                  "feature_std": std}
        for name, v in values.items():
            self.trackers[name].update_state(v)
        return {name: t.result() for name, t in self.trackers.items()}

    # ----------------------------------------------------------------------------- steps
    def _views(self, data):
        """(query_view, key_view) from ``(q, k)`` (what fit passes as x, y), ``x=(q, k)`` or a
        dict with 'query' and 'key'."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            return x["query"], x["key"]
        if y is None:
            return x[0], x[1]
        return x, y

    def train_step(self, data):
        xq, xk = self._views(data)
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        q_order, k_order = self._bn_orders(tf.shape(xq)[0], replicas)
        key_stats = key_moving_statistics(self)
        old_stats = [tf.identity(v) for v in key_stats]      # before the key passes move them
        k = self._keys(xk, order=k_order)
        k2 = self._keys(xq, order=k_order) if self.symmetric else None
        with tf.GradientTape() as tape:
            q = self._query(xq, training=True, order=q_order)
            loss, logits = self._contrast(q, k)
            if self.symmetric:
                q2 = self._query(xk, training=True, order=q_order)
                loss = 0.5 * (loss + self._contrast(q2, k2)[0])
            # mean over the global batch: gradients are summed across replicas
            scaled = tf.reduce_mean(loss) / replicas
            scaled = self.optimizer.scale_loss(scaled)     # loss scaling (mixed_float16)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        step = tf.convert_to_tensor(self.optimizer.iterations)      # this step's t
        m = self.key_momentum(step)
        self.optimizer.apply(grads, variables)
        # False where the optimizer skipped the step (LossScaleOptimizer, non-finite
        # gradients: iterations not advanced); the same on every replica (a mirrored variable)
        applied = tf.not_equal(tf.convert_to_tensor(self.optimizer.iterations), step)
        momentum_update(parameters(self.key_encoder, self.key_head),
                        parameters(self.encoder, self.head), m, applied)
        for v, old in zip(key_stats, old_stats):   # a skipped step leaves the key network as is
            v.assign(tf.where(applied, tf.convert_to_tensor(v), old))
        metrics = self._update_metrics(loss, logits, q, k)
        new = tf.concat([k, k2], 0) if self.symmetric else k
        if replicas > 1:                 # every replica's keys, in replica order, one enqueue
            new = gather_replicas(ctx, new)
        self.queue.enqueue(new, applied)
        return metrics

    def test_step(self, data):
        xq, xk = self._views(data)
        k = self._keys(xk, training=False)
        q = self._query(xq, training=False)
        loss, logits = self._contrast(q, k)
        return self._update_metrics(loss, logits, q, k)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "version": self.version, "projection_dim": self.projection_dim,
                "hidden_dim": self.hidden_dim, "queue_size": self.queue_size,
                "momentum": self.momentum, "temperature": self.temperature,
                "symmetric": self.symmetric, "shuffle_bn_splits": self.shuffle_bn_splits,
                "seed": self.seed, "momentum_final": self.momentum_final,
                "momentum_steps": self.momentum_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
