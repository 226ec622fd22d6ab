"""Flags shared by several commands, defined on demand under the calling command's name so
that ``ecg-moco CMD --help`` lists them with the command's own flags."""
from absl import flags

from ecg_moco_tf.models import encoder as enc

FLAGS = flags.FLAGS


def define_encoder_flags(module_name):
    m = {"module_name": module_name}
    flags.DEFINE_list("kernel_sizes", [str(k) for k in enc.KERNELS],
                      "Temporal kernel sizes K, one per block.", **m)
    flags.DEFINE_list("filters", [str(f) for f in enc.FILTERS], "Filters per temporal block.", **m)
    flags.DEFINE_list("pools", [str(p) for p in enc.POOLS], "Max-pool size per temporal block.", **m)
    flags.DEFINE_integer("spatial_filters", 128, "Filters of the 12 x 1 spatial convolution.", **m)
    flags.DEFINE_integer("feature_dim", 128, "Encoder output (feature) size.", **m)


def encoder_kwargs():
    """``build_encoder`` arguments from the encoder flags."""
    return dict(kernel_sizes=[int(k) for k in FLAGS.kernel_sizes],
                filters=[int(f) for f in FLAGS.filters], pools=[int(p) for p in FLAGS.pools],
                spatial_filters=FLAGS.spatial_filters, feature_dim=FLAGS.feature_dim)


def encoder_from_flags():
    return enc.build_encoder(**encoder_kwargs())


def augment_overrides_from_flags():
    """``--augment_overrides`` (JSON: transform class name -> constructor arguments) as a dict,
    checked against ``--augmentations``: ``ValueError`` naming the problem (bad JSON, unknown
    transform or parameter, an override of a transform that is not used)."""
    import json

    from ecg_moco_tf.augment import build_augmenter

    text = (FLAGS.augment_overrides or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--augment_overrides is not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("--augment_overrides must be a JSON object of objects, e.g. "
                         '\'{"GaussianNoise": {"max_std_mv": 0.1}}\'')
    build_augmenter(list(FLAGS.augmentations) or None, **value)     # raises with the reason
    return value


def define_manifest_flag(module_name, required=True):
    flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet) with a 'split' column.",
                        required=required, module_name=module_name)


def define_distribute_flags(module_name, sync_bn=False):
    """``--strategy``, ``--mixed_precision``, ``--jit_compile`` (and ``--sync_bn``)."""
    m = {"module_name": module_name}
    flags.DEFINE_string("strategy", "default", "tf.distribute strategy: default (one device), "
                        "mirrored (every GPU of this machine), multi_worker (a cluster from "
                        "TF_CONFIG or Slurm srun) or tpu. Batch sizes are global: each replica "
                        "gets batch_size / replicas.", **m)
    flags.DEFINE_string("mixed_precision", "float32", "Keras dtype policy: float32, "
                        "mixed_float16 (GPU, with loss scaling) or mixed_bfloat16 (TPU, recent "
                        "GPUs and CPUs). InfoNCE logits, loss and queue stay float32; saved "
                        "models are float32.", **m)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (one replica only).",
                      **m)
    if sync_bn:
        flags.DEFINE_bool("sync_bn", False, "MoCo: synchronized batch norms (statistics of the "
                          "global batch across replicas) instead of shuffle-BN.", **m)


def strategy_from_flags(*batch_flags):
    """The ``tf.distribute`` strategy of ``--strategy``, with ``--mixed_precision``,
    ``--jit_compile`` and the global batch flags named in ``batch_flags`` checked against its
    replicas. Call it first (before other TensorFlow work); a problem is ``SystemExit`` with
    one line saying what to set (exit code 2)."""
    from ecg_moco_tf.training import distribute

    def check(strategy):
        for name in batch_flags:
            distribute.check_global_batch(FLAGS[name].value, strategy, f"--{name}")
        distribute.check_jit(FLAGS.jit_compile, strategy)

    try:
        distribute.check_precision(FLAGS.mixed_precision)
        planned = distribute.planned_replicas(FLAGS.strategy)
        if planned:                      # before a multi-worker strategy waits for its peers
            check(planned)
        strategy = distribute.make_strategy(FLAGS.strategy)
        check(strategy)
    except distribute.DistributeError as e:
        raise SystemExit(str(e)) from None
    print(f"strategy: {distribute.describe(strategy)}; precision {FLAGS.mixed_precision}"
          f"{'; XLA' if FLAGS.jit_compile else ''}")
    return strategy
