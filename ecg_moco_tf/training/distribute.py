"""tf.distribute for pretraining and fine-tuning: which strategy, which precision, which input.

Everything here is TensorFlow's own machinery; this module only picks and checks it:

- :func:`make_strategy`: ``default`` (one device: the first GPU, else the CPU), ``mirrored``
  (``MirroredStrategy``: every GPU of this machine), ``multi_worker``
  (``MultiWorkerMirroredStrategy`` with the cluster from ``TF_CONFIG``, or from Slurm through
  ``SlurmClusterResolver`` inside an ``srun`` job step) or ``tpu`` (``TPUStrategy``, TPU from
  ``TPU_NAME`` or the local one). Create it once, at the start of the program (before any
  other TensorFlow work: ``MultiWorkerMirroredStrategy`` requires it), and pass the same
  object to every stage;
- :func:`precision`: the Keras dtype policy (``float32``, ``mixed_float16``,
  ``mixed_bfloat16``) while models are built and trained;
- :func:`check_global_batch`: batch sizes are *global*: each of the R replicas gets
  ``batch_size / R`` samples per step (R = ``strategy.num_replicas_in_sync``, every device of
  every worker), so the optimizer steps and the MoCo queue see the same number of samples
  whatever R is. The batch size must be a multiple of R;
- input between workers: :func:`shard_policy` sets ``DATA`` auto-sharding for manifests
  (every worker runs the whole pipeline and keeps its share; Keras's ``fit`` hands the
  dataset to ``strategy.experimental_distribute_dataset``); TFRecord shards are FILE-sharded
  with ``strategy.distribute_datasets_from_function`` (each worker reads its own files: have
  at least as many shards as workers);
- :func:`worker_dir`: where a worker writes: the chief ``out_dir`` itself, the other workers
  ``out_dir/workers/<task>-<id>`` (their own backups, so that a restarted job resumes
  everywhere; their other files are copies of the chief's);
- :func:`_keras_multi_worker_fit_fix`: the one piece that is not configuration, a fix of two
  spots of Keras 3's trainer without which ``fit`` does not run under
  ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585).
"""
from __future__ import annotations

import contextlib
import json
import os

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class DistributeError(ValueError):
    """A strategy, precision or batch setting that cannot work; the message says what to set."""


def _tf():
    import tensorflow as tf

    return tf


def cluster_resolver():
    """The cluster of a multi-worker job: ``TF_CONFIG``, else Slurm (``SLURM_STEP_ID`` set:
    inside ``srun``), else :class:`DistributeError` saying what to set."""
    tf = _tf()
    text = os.environ.get("TF_CONFIG", "").strip()
    if text:
        try:
            spec = json.loads(text)
            hosts = spec["cluster"]["worker"]
            task = spec["task"]
            task["type"], int(task["index"])
        except (ValueError, KeyError, TypeError) as e:
            raise DistributeError(
                f"TF_CONFIG is not a cluster spec ({type(e).__name__}: {e}); set it to e.g. "
                '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": '
                '"worker", "index": 0}}\' on every worker (its own index)') from None
        if not hosts:
            raise DistributeError("TF_CONFIG lists no workers: set cluster.worker to the "
                                  "host:port of every worker")
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_STEP_ID") is not None and os.environ.get("SLURM_PROCID"):
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise DistributeError(
        "strategy=multi_worker needs the cluster: set TF_CONFIG on every worker (e.g. "
        '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
        '"index": 0}}\') or start the workers with srun inside a Slurm job; on one machine use '
        "strategy=mirrored")


def make_strategy(name="default", devices=None):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`).

    ``devices``: the devices of ``mirrored`` (default: every GPU, else the CPU).
    Errors (unknown name, multi_worker without a cluster, tpu without a TPU) are a
    :class:`DistributeError` with one line saying what to set.
    """
    tf = _tf()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        resolver = cluster_resolver()
        _keras_multi_worker_fit_fix()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=os.environ.get("TPU_NAME", "local"))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise DistributeError(
                f"strategy=tpu found no TPU ({str(e).splitlines()[0][:200]}); run on a TPU "
                "VM, or set TPU_NAME to the TPU's name or grpc:// address") from None
        return tf.distribute.TPUStrategy(resolver)
    raise DistributeError(f"strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def _keras_multi_worker_fit_fix():
    """Make Keras 3's ``fit``/``evaluate`` run under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585, open for Keras 3.0-3.15; tf.keras did this right). Two spots of
    Keras's TensorFlow trainer pass the collective strategy values it cannot take:

    - before the first step Keras peeks at one batch and hands the whole (x, y) structure of
      per-replica values to one ``strategy.reduce`` call ("Attempt to convert a value
      (PerReplica..."): the batch only gives shapes for building the model, so each leaf's
      local value is used instead;
    - after each step it averages the (scalar) logs with ``strategy.reduce("MEAN", v,
      axis=0)`` ("Invalid reduction dimension 0 for input with 0 dimensions"): scalars are
      averaged over the replicas with ``axis=None``.

    Everything else stays Keras's own code. Applied once, when a multi-worker strategy is
    made; a Keras without these functions is left alone."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    cls = tf_trainer.TensorFlowTrainer
    build = getattr(cls, "_maybe_symbolic_build", None)
    reduce = getattr(tf_trainer, "reduce_per_replica", None)
    multi = getattr(tf_trainer, "_collective_all_reduce_multi_worker", None)
    if None in (build, reduce, multi) or getattr(build, "_multi_worker_fix", False):
        return
    tf = _tf()
    distributed = tf.distribute.DistributedValues

    def local(value):
        return value.values[0] if isinstance(value, distributed) else value

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(local, next(it))
            break
        return build(self, iterator=None, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi(strategy):
            def mean(v):
                if getattr(local(v), "shape", None) is not None and local(v).shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return reduce(v, strategy, reduction)
            return tf.nest.map_structure(mean, values)
        return reduce(values, strategy, reduction)

    _maybe_symbolic_build._multi_worker_fix = True
    cls._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica


def resolve(strategy):
    """A Strategy from ``None`` (the current one: default outside any scope), a name of
    :data:`STRATEGIES`, or a ``tf.distribute.Strategy`` (returned as is)."""
    if strategy is None:
        return _tf().distribute.get_strategy()
    if isinstance(strategy, str):
        return make_strategy(strategy)
    if not isinstance(strategy, _tf().distribute.Strategy):
        raise DistributeError(f"strategy must be a tf.distribute.Strategy or one of "
                              f"{', '.join(STRATEGIES)}, not {type(strategy).__name__}")
    if isinstance(strategy, _tf().distribute.MultiWorkerMirroredStrategy):
        _keras_multi_worker_fit_fix()               # also for strategies made by the caller
    return strategy


def workers(strategy):
    """Number of worker processes (input pipelines) of a strategy: 1 on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(t, [])) for t in ("chief", "worker")))


def is_default(strategy):
    """True for TensorFlow's default (no-op, one device) strategy."""
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def replicas(strategy):
    """Number of replicas (devices taking part in one step, all workers together)."""
    return int(strategy.num_replicas_in_sync)


def name(strategy):
    """The public name of a strategy's kind (``MultiWorkerMirroredStrategy``, not its class
    ``CollectiveAllReduceStrategy``)."""
    tf = _tf()
    if is_default(strategy):
        return "the default strategy"
    for kind in ("MultiWorkerMirroredStrategy", "MirroredStrategy", "TPUStrategy",
                 "OneDeviceStrategy"):
        if isinstance(strategy, getattr(tf.distribute, kind)):
            return kind
    return type(strategy).__name__


def describe(strategy):
    """e.g. ``"MirroredStrategy, 2 replica(s)"`` (for logs and run records)."""
    return f"{name(strategy)}, {replicas(strategy)} replica(s)"


def check_global_batch(batch_size, strategy, flag="batch_size"):
    """:class:`DistributeError` unless the global ``batch_size`` splits evenly over the
    replicas of ``strategy`` (a Strategy, or ``(number of replicas, its name)``), at least one
    sample each."""
    n, kind = _count(strategy)
    if batch_size % n or batch_size < n:
        lower = batch_size - batch_size % n
        fits = f"{lower} or {lower + n}" if lower >= n else f"{lower + n}"
        raise DistributeError(
            f"{flag}={batch_size} is the global batch and must be a multiple of the {n} "
            f"replicas of {kind}: set {flag}={fits}")


def _count(strategy):
    """(replicas, name) of a Strategy or of a ``(replicas, name)`` pair."""
    return strategy if isinstance(strategy, tuple) else (replicas(strategy), name(strategy))


def planned_replicas(name):
    """``(replicas, strategy class name)`` that :func:`make_strategy` ``(name)`` will give,
    known before it is created (a multi-worker strategy waits for every worker when it is
    created: settings are better checked first); None for ``tpu`` (known once connected).
    Every GPU of a machine is a replica (the CPU when it has none), every worker a machine."""
    local = max(1, len(_tf().config.list_physical_devices("GPU")))
    if name == "default":
        return 1, "the default strategy"
    if name == "mirrored":
        return local, "MirroredStrategy"
    if name == "multi_worker":
        spec = cluster_resolver().cluster_spec().as_dict()
        return (sum(len(spec.get(t, [])) for t in ("chief", "worker")) * local,
                "MultiWorkerMirroredStrategy")
    if name == "tpu":
        return None
    raise DistributeError(f"strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def check_jit(jit_compile, strategy):
    """:class:`DistributeError` for XLA on several replicas: Keras compiles the whole step
    (``strategy.run`` included), which XLA cannot place on several devices; Keras itself
    turns XLA off under ``tf.distribute`` by default. ``strategy``: as in
    :func:`check_global_batch`."""
    n, kind = _count(strategy)
    if jit_compile and n > 1:
        raise DistributeError(
            f"jit_compile runs on one replica only (Keras compiles the whole step, and "
            f"{kind} has {n} replicas): drop jit_compile or use strategy=default")


def check_last_batch(n, batch_size, strategy, what, last_dropped=False):
    """:class:`DistributeError` when ``n`` ECGs in global batches of ``batch_size`` cannot run
    on the strategy's replicas: a set smaller than one batch whose ECGs do not split evenly
    over the replicas (Keras builds the model on the replicas' mean first batch, which needs
    equal shapes: any device), or a last batch that leaves a replica empty on CPUs with oneDNN
    (its convolution and batch-norm kernels fail on it; GPUs are not checked; skipped with
    ``last_dropped``: training drops such a batch)."""
    n_rep = replicas(strategy)
    if n_rep < 2:
        return
    tf = _tf()
    cpu = (not tf.config.list_logical_devices("GPU")
           and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" and not last_dropped)

    def problem(b):
        if n < b and n % n_rep:
            return (f"fewer than one global batch of {b}, and {n} does not split evenly over "
                    f"the {n_rep} replicas (Keras builds the model on equal per-replica "
                    "batches)")
        if cpu and 0 < n % b < n_rep:
            return (f"the last global batch of {n % b} leaves {n_rep - n % b} of the {n_rep} "
                    "replicas an empty batch, which TensorFlow's oneDNN CPU kernels cannot run")
        return None

    reason = problem(batch_size)
    if reason is None:
        return
    fits = [b for b in range(n_rep, batch_size + 1, n_rep) if problem(b) is None]
    what_to_do = (f"set batch_size={fits[-1]}" if fits else
                  f"use a multiple of {n_rep} ECGs or fewer replicas")
    if cpu and reason.startswith("the last"):
        what_to_do += " (or TF_ENABLE_ONEDNN_OPTS=0)"
    raise DistributeError(f"{what} has {n} ECGs: {reason}; {what_to_do}")


def check_precision(policy):
    if policy not in PRECISIONS:
        raise DistributeError(f"mixed_precision={policy!r} is not one of "
                              f"{', '.join(PRECISIONS)}")
    return policy


@contextlib.contextmanager
def precision(policy="float32"):
    """Keras's global dtype policy set to ``policy`` inside the block, restored after it.

    Layers take the policy when they are built: build (or copy, ``copy_model(dtype=...)``)
    models inside the block. Under ``mixed_float16`` Keras's ``compile`` wraps the optimizer
    in a ``LossScaleOptimizer``.
    """
    import keras

    check_precision(policy)
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def shard_policy(ds):
    """``ds`` with the DATA auto-shard policy for several workers: each worker runs the
    pipeline and keeps its share of the batches (every worker the same number of steps).
    Changes nothing on one worker. (TFRecord shards are FILE-sharded by
    ``strategy.distribute_datasets_from_function`` in ``training.pretrain``.)"""
    tf = _tf()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options)


def task(strategy):
    """(task type, task index) of this process in a multi-worker cluster, or (None, None)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, None
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """True on the process that writes the results: one-worker runs, the ``chief`` task, or
    worker 0 of a cluster without a chief."""
    kind, index = task(strategy)
    if kind is None:
        return True
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def worker_dir(out_dir, strategy):
    """``out_dir`` on the chief, ``out_dir/workers/<task>-<index>`` on the other workers (a
    path already inside this worker's folder, e.g. ``reproduce``'s ``<out>/pretrain``, is
    returned as is)."""
    if is_chief(strategy):
        return out_dir
    kind, index = task(strategy)
    parts = os.path.normpath(out_dir).split(os.sep)
    if any(parts[i:i + 2] == ["workers", f"{kind}-{index}"] for i in range(len(parts) - 1)):
        return out_dir
    return os.path.join(out_dir, "workers", f"{kind}-{index}")
