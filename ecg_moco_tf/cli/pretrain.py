"""MoCo pretraining of the encoder on the manifest's train1/valid1 splits (labels unused).

Example: ecg-moco pretrain --manifest=runs/demo/cohort/manifest.csv --out=runs/demo/pretrain \
             --flagfile=flags/pretrain.flags
Writes encoder.keras (chosen by --select_encoder: by default the highest logistic-probe AUC of
the representation monitor, which uses the manifest's labelled train2 -> valid2 when both
classes are there, else the last epoch's), moco.keras, pretrain_log.csv, tensorboard/.
Re-running the same command after an interruption resumes from backup/; a folder that holds
a finished run is refused (exit code 2) unless --overwrite replaces it. Every record used is
read once before training: an unreadable one stops the command (--on_error=raise) or is left
out, listed in <out>/problems.csv (--on_error=skip).
Large data: --shards=DIR pretrains from the TFRecord shards of `ecg-moco convert`
(DIR/train1-*.tfrecord, DIR/valid1-*.tfrecord), streamed; --manifest then only feeds the
monitor. Several GPUs or machines: --strategy=mirrored|multi_worker (README "Distributed
training"); --batch_size is the global batch.
"""
from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
common.define_manifest_flag(__name__, required=False)
common.define_encoder_flags(__name__)
common.define_read_flags(__name__, on_error="raise")
common.define_distribute_flags(__name__, sync_bn=True)
flags.DEFINE_string("shards", None, "Folder of TFRecord shards from `ecg-moco convert`: "
                    "pretrain on its train1-*/valid1-*.tfrecord files (streamed; FILE "
                    "auto-sharding between workers; --cache has no effect) instead of the "
                    "manifest's records.")
flags.DEFINE_string("out", "runs/pretrain", "Output folder (created).")
flags.DEFINE_integer("epochs", 50, "Epochs.")
flags.DEFINE_integer("batch_size", 64, "Batch size (two views each).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("queue_size", 4096, "Negative keys K (must be well below the train1 size).")
flags.DEFINE_float("momentum", 0.999, "EMA momentum of the key encoder.")
flags.DEFINE_float("temperature", 0.2, "InfoNCE temperature.")
flags.DEFINE_alias("moco_momentum", "momentum")            # reproduce's name for the setting
flags.DEFINE_enum("version", "2", ["1", "2"], "MoCo v1 (no head) or v2 (MLP head).")
flags.DEFINE_bool("symmetric", False, "Symmetric loss (both views as queries).")
flags.DEFINE_integer("shuffle_bn_splits", 2, "Key-batch BN groups (single-device shuffle-BN).")
flags.DEFINE_list("augmentations", [], "Transform class names; empty = the paper's five.")
flags.DEFINE_float("augment_probability", 0.5, "Per-sample probability of each transform.")
flags.DEFINE_string("augment_overrides", "", "Per-transform constructor arguments as JSON, e.g. "
                    '\'{"GaussianNoise": {"max_std_mv": 0.1}, "TimeResize": '
                    '{"probability": 0.8}}\'.')
flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warm-up from 0 over this many "
                     "optimizer steps.")
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"], "Learning rate after the "
                  "warm-up: constant, or cosine decay to 0 at the last step.")
flags.DEFINE_float("momentum_final", None, "If set: the key momentum follows a cosine from "
                   "--momentum to this over the whole run (e.g. 0.9 -> 0.99).")
flags.DEFINE_alias("moco_momentum_final", "momentum_final")
flags.DEFINE_bool("cache", True, "Keep decoded ECGs in memory (turn off for large data).")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in --out (default: refuse it; "
                  "an unfinished run there is resumed).")
flags.DEFINE_integer("monitor_every", 1, "Representation monitor (kNN / logistic-probe AUC of "
                     "frozen features on the manifest's train2 -> valid2, alignment, "
                     "uniformity) every N epochs; 0: off.")
flags.DEFINE_enum("select_encoder", "monitor", ["monitor", "last", "val_loss"],
                  "Encoder saved: highest monitor probe AUC (falls back to last without "
                  "labelled train2/valid2), last epoch, or lowest MoCo validation loss.")


def _shards(split, strategy):
    import glob
    import os

    from ecg_moco_tf.training.distribute import workers

    pattern = os.path.join(FLAGS.shards, f"{split}-*.tfrecord")
    files = glob.glob(pattern)
    if not files:
        raise SystemExit(f"--shards={FLAGS.shards} has no {split}-*.tfrecord files: write them "
                         "with `ecg-moco convert --manifest=... --out=DIR` from a manifest with "
                         "train1/valid1 splits")
    if split == "train1" and len(files) < workers(strategy):
        raise SystemExit(f"--shards={FLAGS.shards} has {len(files)} train1 files for "
                         f"{workers(strategy)} workers (each reads its own files): convert "
                         "again with a smaller --shard_size")
    return pattern


def main(argv):
    del argv
    from ecg_moco_tf.data import experiment_view, read_manifest
    from ecg_moco_tf.training.pretrain import (PretrainConfig, check_config,
                                               check_distribution, check_out_dir, pretrain)

    if not FLAGS.manifest and not FLAGS.shards:
        raise SystemExit("pass --manifest (a manifest with train1/valid1 splits) or --shards "
                         "(TFRecords from `ecg-moco convert`)")
    strategy = common.strategy_from_flags("batch_size")  # first: before other TensorFlow work
    overrides = common.augment_overrides_from_flags()
    check_out_dir(FLAGS.out, FLAGS.overwrite)             # before any work
    pre = ("pretrain_train", "pretrain_valid")
    df, view = None, {"train": None, "valid": None}
    if FLAGS.manifest:
        df = read_manifest(FLAGS.manifest)
        view = experiment_view(df, "proposed", require=() if FLAGS.shards else pre)
    cfg = PretrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, queue_size=FLAGS.queue_size,
                         momentum=FLAGS.momentum, temperature=FLAGS.temperature,
                         version=int(FLAGS.version), symmetric=FLAGS.symmetric,
                         shuffle_bn_splits=FLAGS.shuffle_bn_splits,
                         augmentations=tuple(FLAGS.augmentations),
                         augment_probability=FLAGS.augment_probability, cache=FLAGS.cache,
                         augment_overrides=overrides, warmup_steps=FLAGS.warmup_steps,
                         lr_schedule=FLAGS.lr_schedule, momentum_final=FLAGS.momentum_final,
                         seed=FLAGS.seed, monitor_every=FLAGS.monitor_every,
                         select=FLAGS.select_encoder, sync_bn=FLAGS.sync_bn,
                         mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
                         read_options=common.read_options_from_flags())
    check_distribution(cfg, strategy)
    if FLAGS.shards:
        train, valid = _shards("train1", strategy), _shards("valid1", strategy)
    else:
        check_config(cfg, *(len(view[k]) for k in pre))   # before reading any record
        used = df[df["split"].isin(["train1", "valid1", "train2", "valid2"])]   # + monitor's
        view = experiment_view(common.readable_records(used, FLAGS.out), "proposed",
                               require=pre)
        train, valid = view["pretrain_train"], view["pretrain_valid"]
    from ecg_moco_tf.training.monitor import check_split, split_labels

    why = (["no --manifest"] if view["train"] is None else
           [r for s in ("train", "valid") if (r := check_split(s + "2", split_labels(view[s])))])
    monitor = {} if why else {"monitor_train_df": view["train"], "monitor_valid_df": view["valid"]}
    if why and FLAGS.monitor_every > 0:
        print(f"no representation monitor: {'; '.join(why)}")
    import keras

    keras.utils.set_random_seed(FLAGS.seed)               # seeds the encoder's initial weights
    pretrain(train, valid, FLAGS.out, cfg, encoder=common.encoder_from_flags(),
             overwrite=FLAGS.overwrite, strategy=strategy, **monitor)
    from ecg_moco_tf.training.distribute import worker_dir

    print(f"saved encoder: {worker_dir(FLAGS.out, strategy)}/encoder.keras")
