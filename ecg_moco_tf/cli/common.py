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
        build_augmenter(list(FLAGS.augmentations) or None)          # checks the names
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


def define_read_flags(module_name, on_error=None):
    """How records are read (``--min_seconds``, ``--drop_extra_leads``) and, with
    ``on_error`` (its default), what an unreadable record does (``--on_error``)."""
    m = {"module_name": module_name}
    flags.DEFINE_float("min_seconds", 5.0, "Shortest accepted record, seconds.", **m)
    flags.DEFINE_bool("drop_extra_leads", False, "Records with leads beyond the 12 standard ones "
                      "(e.g. vx, vy, vz): keep the 12 (default: the record is an error).", **m)
    if on_error:
        flags.DEFINE_enum("on_error", on_error, ["raise", "skip"], "Unreadable records: stop "
                          "with one line listing them (raise), or leave them out, listed in "
                          "problems.csv with the reason (skip).", **m)


def read_options_from_flags():
    from ecg_moco_tf.data.records import ReadOptions

    return ReadOptions(min_seconds=FLAGS.min_seconds, drop_extra_leads=FLAGS.drop_extra_leads)


def readable_records(df, out_dir, on_error=None, options=None):
    """Read every record of ``df`` once (signals not kept) before any work: with
    ``on_error='raise'`` an unreadable record stops the command (one ``RecordError`` listing
    them, exit status 2); with ``'skip'`` they are left out and listed by
    :func:`write_problems`. Returns the manifest of the readable records. Defaults: the
    command's ``--on_error`` and read flags."""
    from ecg_moco_tf.data import load_records

    res = load_records(df, on_error=on_error or FLAGS.on_error, keep_signals=False,
                       options=options or read_options_from_flags())
    write_problems(res.problems, out_dir, len(df))
    return res.manifest


def write_problems(problems, out_dir, total=None):
    """Skipped records (a DataFrame: record, problem) to ``<out_dir>/problems.csv`` and, with
    their count (of ``total``), to the console; nothing when there are none."""
    import os

    if len(problems):
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "problems.csv")
        problems.to_csv(path, index=False)
        of = "" if total is None else f" of {total}"
        print(f"{len(problems)}{of} record(s) skipped (unreadable), listed in {path}:")
        print(problems.to_string(index=False))


def output_file(path):
    """``path`` with its folder created (before any work, so a long run never ends without a
    place to write)."""
    import os

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


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
