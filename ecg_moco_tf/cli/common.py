"""Flags shared by several commands, defined on demand under the calling command's name so
that ``ecg-moco CMD --help`` lists them with the command's own flags."""
from absl import flags

FLAGS = flags.FLAGS


def define_encoder_flags(module_name):
    from ecg_moco_tf.models import encoder as enc   # here: split and synth load no TensorFlow

    m = {"module_name": module_name}
    flags.DEFINE_list("kernel_sizes", [str(k) for k in enc.KERNELS],
                      "Temporal kernel sizes K, one per block.", **m)
    flags.DEFINE_list("filters", [str(f) for f in enc.FILTERS], "Filters per temporal block.", **m)
    flags.DEFINE_list("pools", [str(p) for p in enc.POOLS], "Max-pool size per temporal block.", **m)
    flags.DEFINE_integer("spatial_filters", 128, "Filters of the 12 x 1 spatial convolution.", **m)
    flags.DEFINE_integer("feature_dim", 128, "Encoder output (feature) size.", **m)


def encoder_kwargs():
    """``build_encoder`` arguments from the encoder flags, checked (``ValueError`` naming the
    flag): call it before reading any ECG."""
    from ecg_moco_tf.models.encoder import check_architecture

    lists = {}
    for name in ("kernel_sizes", "filters", "pools"):
        try:
            lists[name] = [int(v) for v in FLAGS[name].value]
        except ValueError:
            raise ValueError(f"{name}={','.join(FLAGS[name].value)}: give whole numbers "
                             "separated by commas, one per temporal block") from None
    check_architecture(**lists)
    return dict(**lists, spatial_filters=FLAGS.spatial_filters, feature_dim=FLAGS.feature_dim)


ARCHITECTURE_FLAGS = ("kernel_sizes", "filters", "pools", "spatial_filters", "feature_dim")


def refuse_architecture_with_encoder(encoder):
    """A pretrained ``encoder`` fixes the architecture: architecture flags given beside it
    would be ignored, so they are refused (SystemExit, one line naming them)."""
    given = [f"--{n}" for n in ARCHITECTURE_FLAGS if n in FLAGS and FLAGS[n].present]
    if encoder and given:
        raise SystemExit(f"{', '.join(given)} given with --encoder={encoder}: a pretrained "
                         "encoder has its own architecture; drop these flags (or --encoder)")


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


def define_split_flags(module_name):
    """The split shares of :class:`~ecg_moco_tf.data.splits.SplitFractions` (paper Table 1)."""
    from ecg_moco_tf.data.splits import SplitFractions

    d, m = SplitFractions(), {"module_name": module_name}
    flags.DEFINE_float("downstream_negative_fraction", d.downstream_negative_fraction,
                       "Share of negative patients sent downstream (the rest pretrain).", **m)
    flags.DEFINE_float("valid1", d.valid1, "Share of the pretraining pool used as valid1.", **m)
    flags.DEFINE_float("valid2", d.valid2, "Share of the downstream pool used as valid2.", **m)
    flags.DEFINE_float("test", d.test, "Share of the downstream pool used as test (< 1), or a "
                       "number of test patients (>= 1, e.g. 400 for narrow CIs).", **m)


def split_fractions_from_flags():
    from ecg_moco_tf.data.splits import SplitFractions

    return SplitFractions(FLAGS.downstream_negative_fraction, FLAGS.valid1, FLAGS.valid2,
                          FLAGS.test)


def define_manifest_flag(module_name, required=True):
    flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet) with a 'split' column.",
                        required=required, module_name=module_name)


def define_read_flags(module_name, on_error=None):
    """How records are read (``--min_seconds``, ``--drop_extra_leads``) and, with
    ``on_error`` (its default), what an unreadable record does (``--on_error``)."""
    from ecg_moco_tf.data.records import ReadOptions

    m = {"module_name": module_name}
    flags.DEFINE_float("min_seconds", ReadOptions.min_seconds, "Shortest accepted record, "
                       "seconds.", **m)
    flags.DEFINE_bool("drop_extra_leads", ReadOptions.drop_extra_leads, "Records with leads "
                      "beyond the 12 standard ones "
                      "(e.g. vx, vy, vz): keep the 12 (default: the record is an error).", **m)
    flags.DEFINE_bool("accept_amplitude", False, "Use records whose median QRS "
                      "peak-to-peak is outside 0.15-8 mV as they are (default: such a record "
                      "is an error naming the likely cause: gain x10, volts, microvolts).", **m)
    if on_error:
        flags.DEFINE_enum("on_error", on_error, ["raise", "skip"], "Unreadable records: stop "
                          "with one line listing them (raise), or leave them out, listed in "
                          "problems.csv with the reason (skip).", **m)


def read_options_from_flags():
    from ecg_moco_tf.data.records import ReadOptions

    return ReadOptions(min_seconds=FLAGS.min_seconds, drop_extra_leads=FLAGS.drop_extra_leads,
                       check_amplitude=not FLAGS.accept_amplitude)


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


# library spellings of the read options -> the flags that set them (define_read_flags)
PYTHON_SPELLINGS = {"set ReadOptions(check_amplitude=False)": "accept_amplitude",
                    "set ReadOptions(drop_extra_leads=True)": "drop_extra_leads",
                    "set on_error='skip'": "on_error=skip"}


def read_flag_spelling(text, names=None):
    """A library message about reading records as a command's user reads it (flags); with
    ``names`` (the command's flags) only the flags the command has."""
    for python, flag in PYTHON_SPELLINGS.items():
        if names is None or flag.partition("=")[0] in names:
            text = text.replace(python, f"pass --{flag}")
    return text


def write_problems(problems, out_dir, total=None):
    """Skipped records (a DataFrame: record, problem) to ``<out_dir>/problems.csv`` and, with
    their count (of ``total``), to the console; nothing when there are none."""
    import os

    if len(problems):
        problems = problems.assign(problem=problems["problem"].map(read_flag_spelling))
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "problems.csv")
        problems.to_csv(path, index=False)
        of = "" if total is None else f" of {total}"
        print(f"{len(problems)}{of} record(s) skipped (unreadable), listed in {path}:")
        print(problems.to_string(index=False))


def output_file(path, flag="out", example="predictions.csv"):
    """``path`` with its folder created (before any work, so a long run never ends without a
    place to write); a folder given where a file is wanted is a usage error."""
    import os

    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise SystemExit(f"--{flag}={path} is a folder; --{flag} takes a file name, e.g. "
                         f"--{flag}={os.path.join(path, example)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def define_distribute_flags(module_name):
    """``--strategy`` and ``--deterministic`` (``--mixed_precision``, ``--jit_compile`` and
    ``--sync_bn`` are settings of the stage configs: :func:`define_pretrain_flags`,
    :func:`define_finetune_flags`)."""
    flags.DEFINE_string("strategy", "default", "tf.distribute strategy: default (one device), "
                        "mirrored (every GPU of this machine), multi_worker (a cluster from "
                        "TF_CONFIG or Slurm srun) or tpu. Batch sizes are global: each replica "
                        "gets batch_size / replicas.", module_name=module_name)
    flags.DEFINE_bool("deterministic", False, _DETERMINISTIC, module_name=module_name)


_DETERMINISTIC = (
    "Make TensorFlow's ops deterministic (tf.config.experimental.enable_op_determinism(), "
    "set before any training). Bit-for-bit reproducible runs (same seed, same machine type) "
    "were verified on CPU only, with oneDNN on and default settings, where this flag is not "
    "needed; on GPU this flag makes TensorFlow's ops deterministic (deterministic cuDNN "
    "algorithms and kernels) at a speed cost, and an op with no deterministic GPU "
    "implementation raises an error instead of running.")


def enable_determinism(enabled=None):
    """``tf.config.experimental.enable_op_determinism()`` when ``enabled`` (default: the
    ``--deterministic`` flag); returns whether it was enabled. Call before any training."""
    if enabled is None:
        enabled = "deterministic" in FLAGS and FLAGS.deterministic
    if enabled:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return bool(enabled)


def strategy_from_flags(*batch_flags):
    """The ``tf.distribute`` strategy of ``--strategy``, with ``--mixed_precision``,
    ``--jit_compile`` and the global batch flags named in ``batch_flags`` checked against its
    replicas. Call it first (before other TensorFlow work); a problem is ``SystemExit`` with
    one line saying what to set (exit code 2). With ``--deterministic``, TensorFlow's op
    determinism is enabled first (:func:`enable_determinism`)."""
    from ecg_moco_tf.training import distribute

    deterministic = enable_determinism()

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
          f"{'; XLA' if FLAGS.jit_compile else ''}"
          f"{'; deterministic ops' if deterministic else ''}")
    return strategy


# ---- the stage configs: one flag per field of PretrainConfig / FinetuneConfig ------------------
# Each table maps a config field to (flag name, help[, choices]); the flag's type and default
# are the field's, so the commands (pretrain, finetune, reproduce) and the Python API share one
# set of defaults. Not in the tables: verbose (--verbose), read_options (the read flags) and
# augment_overrides' parsing (augment_overrides_from_flags).

# reproduce runs both stages: these pretraining flags are named pretrain_<name> there
REPRODUCE_PRETRAIN_PREFIXED = ("epochs", "batch_size", "learning_rate", "warmup_steps",
                               "lr_schedule")
# settings of both stages: one flag in reproduce, no stage in its help
BOTH_STAGES = ("cache", "seed", "mixed_precision", "jit_compile")

_PRECISION = ("Keras dtype policy: float32, mixed_float16 (GPU, with loss scaling) or "
              "mixed_bfloat16 (TPU, recent GPUs and CPUs). InfoNCE logits, loss and queue stay "
              "float32; saved models are float32.")
_JIT = "XLA-compile the train step (one replica only)."
_VERBOSE = ("Keras' progress bar within each epoch (step, loss, time left) for long epochs; "
            "default: one line per epoch.")


def pretrain_flag_table():
    """PretrainConfig field -> (flag name, help[, choices])."""
    from ecg_moco_tf.training.pretrain import LR_SCHEDULES, SELECT

    return {
        "epochs": ("epochs", "Epochs."),
        "batch_size": ("batch_size", "Batch size (two views each)."),
        "learning_rate": ("learning_rate", "Adam learning rate."),
        "queue_size": ("queue_size", "Negative keys K (must be well below the train1 size)."),
        "momentum": ("moco_momentum", "EMA momentum of the key encoder."),
        "momentum_final": ("moco_momentum_final", "If set: the key momentum follows a cosine "
                           "from --moco_momentum to this over the whole run (e.g. 0.9 -> 0.99)."),
        "temperature": ("temperature", "InfoNCE temperature."),
        "version": ("moco_version", "MoCo v1 (no head) or v2 (MLP head).", (1, 2)),
        "symmetric": ("symmetric", "Symmetric loss (both views as queries)."),
        "shuffle_bn_splits": ("shuffle_bn_splits", "Key-batch BN groups (single-device "
                              "shuffle-BN)."),
        "augmentations": ("augmentations", "Transform class names; empty = the paper's five."),
        "augment_probability": ("augment_probability", "Per-sample probability of each "
                                "transform."),
        "augment_overrides": ("augment_overrides", "Per-transform constructor arguments as "
                              'JSON, e.g. \'{"GaussianNoise": {"max_std_mv": 0.1}, '
                              '"TimeResize": {"probability": 0.8}}\'.'),
        "warmup_steps": ("warmup_steps", "Linear learning-rate warm-up from 0 over this many "
                         "optimizer steps."),
        "lr_schedule": ("lr_schedule", "Learning rate after the warm-up: constant, or cosine "
                        "decay to 0 at the last step.", LR_SCHEDULES),
        "cache": ("cache", "Keep decoded ECGs in memory (turn off for large data)."),
        "seed": ("seed", "Seed."),
        "monitor_every": ("monitor_every", "Representation monitor (kNN / logistic-probe AUC "
                          "of frozen features on the manifest's train2 -> valid2, alignment, "
                          "uniformity) every N epochs; 0: off."),
        "select": ("select_encoder", "Encoder saved: highest monitor probe AUC (falls back to "
                   "last without labelled train2/valid2), last epoch, or lowest MoCo "
                   "validation loss (not comparable across epochs).", SELECT),
        "sync_bn": ("sync_bn", "Synchronized batch norms (statistics of the global batch "
                    "across replicas) instead of shuffle-BN."),
        "mixed_precision": ("mixed_precision", _PRECISION),
        "jit_compile": ("jit_compile", _JIT),
    }


def finetune_flag_table():
    """FinetuneConfig field -> (flag name, help[, choices])."""
    return {
        "learning_rates": ("learning_rates", "Learning-rate sweep (Adam)."),
        "epochs": ("epochs", "Maximum epochs per learning rate (early stopping on validation "
                   "loss)."),
        "batch_size": ("batch_size", "Batch size."),
        "patience": ("patience", "Early-stopping patience on validation loss."),
        "hidden_units": ("hidden_units", "Width of the hidden dense layer of the head."),
        "dropout": ("dropout", "Dropout before the output layer."),
        "freeze_encoder": ("freeze_encoder", "Linear-probe mode: train the head only."),
        "class_weight": ("class_weight", "Class weighting of the loss.", ("none", "balanced")),
        "augment": ("augment", "Augment training ECGs (the paper's five transforms)."),
        "bn_momentum": ("bn_momentum", "Momentum of the encoder's batch-norm statistics during "
                        "fine-tuning (set on the copy; 0.99, the Keras default, is the "
                        "paper protocol; the lower default suits a few hundred ECGs)."),
        "weight_decay": ("weight_decay", "> 0: AdamW with this decoupled weight decay."),
        "encoder_lr_multiplier": ("encoder_lr_multiplier", "Encoder learning rate relative to "
                                  "the head's."),
        "linear_probe_epochs": ("linear_probe_epochs", "LP-FT: head-only epochs (encoder "
                                "frozen) before fine-tuning."),
        "reestimate_bn": ("reestimate_bn", "Re-estimate batch-norm statistics on the training "
                          "ECGs after training, before validating and saving."),
        "min_steps_per_epoch": ("min_steps_per_epoch", "Repeat a training set smaller than "
                                "this many batches so every epoch has this many steps (0: one "
                                "pass per epoch)."),
        "cache": ("cache", "Keep decoded ECGs in memory (turn off for large data)."),
        "seed": ("seed", "Seed."),
        "mixed_precision": ("mixed_precision", _PRECISION),
        "jit_compile": ("jit_compile", _JIT),
    }


#: (lower, upper) bounds of the numeric settings of both stages (absl checks them at parsing:
#: one line and exit 2 naming the flag)
BOUNDS = {"epochs": (1, None), "batch_size": (1, None), "learning_rate": (1e-12, None),
          "queue_size": (1, None), "momentum": (0.0, 1.0), "momentum_final": (0.0, 1.0),
          "temperature": (1e-6, None), "shuffle_bn_splits": (1, None),
          "augment_probability": (0.0, 1.0), "warmup_steps": (0, None), "monitor_every": (0, None),
          "patience": (0, None), "hidden_units": (1, None), "dropout": (0.0, 0.99),
          "bn_momentum": (0.0, 1.0), "weight_decay": (0.0, None),
          "encoder_lr_multiplier": (0.0, None), "linear_probe_epochs": (0, None),
          "min_steps_per_epoch": (0, None)}


def _flag_names(table, prefixed=()):
    return {f: ("pretrain_" if f in prefixed else "") + spec[0] for f, spec in table.items()}


def _define_config_flags(config, table, names, module_name, stage=""):
    """One absl flag per ``table`` entry, typed and defaulted by ``config``'s field; a flag the
    command already defined is kept (reproduce's --seed; the settings of both stages)."""
    import dataclasses
    import json

    defaults = config()
    types = {f.name: str(f.type) for f in dataclasses.fields(config)}
    for field, (_, text, *choices) in table.items():
        name, d = names[field], getattr(defaults, field)
        if name in FLAGS:
            continue
        m = {"module_name": module_name}
        text = f"{stage}: {text}" if stage and field not in BOTH_STAGES else text
        lower, upper = BOUNDS.get(field, (None, None))
        bounds = {"lower_bound": lower, "upper_bound": upper}
        if choices:
            flags.DEFINE_enum(name, str(d), [str(c) for c in choices[0]], text, **m)
        elif isinstance(d, bool):
            flags.DEFINE_bool(name, d, text, **m)
        elif isinstance(d, int):
            flags.DEFINE_integer(name, d, text, **bounds, **m)
        elif isinstance(d, float) or types[field].startswith("float"):   # float | None
            flags.DEFINE_float(name, d, text, **bounds, **m)
        elif isinstance(d, tuple):
            flags.DEFINE_list(name, [str(x) for x in d], text, **m)
        elif isinstance(d, dict):
            flags.DEFINE_string(name, json.dumps(d) if d else "", text, **m)
        else:
            flags.DEFINE_string(name, d, text, **m)
    if "verbose" not in FLAGS:
        flags.DEFINE_bool("verbose", False, _VERBOSE, module_name=module_name)


def _config_from_flags(config, names, **given):
    """``config`` from the parsed flags (``given``: fields set by the caller)."""
    defaults, values = config(), dict(given)
    for field, name in names.items():
        if field in given:
            continue
        d, v = getattr(defaults, field), FLAGS[name].value
        if isinstance(d, tuple):              # list flag -> tuple of the default's element type
            try:
                v = tuple(type(d[0])(x) for x in v) if d else tuple(v)
            except ValueError:
                raise SystemExit(f"--{name}={','.join(v)}: each value must be a "
                                 f"{type(d[0]).__name__}, e.g. --{name}="
                                 f"{','.join(map(str, d))}") from None
            if field == "learning_rates" and any(x <= 0 for x in v):
                raise SystemExit(f"--{name}={','.join(FLAGS[name].value)}: learning rates "
                                 "must be > 0")
        elif d is not None and v is not None:
            v = type(d)(v)                    # e.g. an enum's "2" -> 2
        values[field] = v
    values.setdefault("verbose", 1 if FLAGS.verbose else 2)
    values.setdefault("read_options", read_options_from_flags())
    return config(**values)


def define_pretrain_flags(module_name, prefixed=(), stage=""):
    """The flags of :class:`PretrainConfig` (``prefixed``: fields named ``pretrain_<name>``,
    as in reproduce; ``stage`` starts their help there)."""
    from ecg_moco_tf.training.pretrain import PretrainConfig

    table = pretrain_flag_table()
    _define_config_flags(PretrainConfig, table, _flag_names(table, prefixed), module_name, stage)


def define_finetune_flags(module_name, stage=""):
    """The flags of :class:`FinetuneConfig`."""
    from ecg_moco_tf.training.finetune import FinetuneConfig

    table = finetune_flag_table()
    _define_config_flags(FinetuneConfig, table, _flag_names(table), module_name, stage)


def pretrain_config(prefixed=(), **given):
    """The :class:`PretrainConfig` of the parsed flags (those of :func:`define_pretrain_flags`
    with the same ``prefixed``); ``--augment_overrides`` checked (ValueError)."""
    from ecg_moco_tf.training.pretrain import PretrainConfig

    if "augment_overrides" not in given:
        given["augment_overrides"] = augment_overrides_from_flags()
    return _config_from_flags(PretrainConfig, _flag_names(pretrain_flag_table(), prefixed),
                              **given)


def finetune_config(**given):
    """The :class:`FinetuneConfig` of the parsed flags, checked (ValueError)."""
    from ecg_moco_tf.training.finetune import FinetuneConfig

    return _config_from_flags(FinetuneConfig, _flag_names(finetune_flag_table()),
                              **given).check()
