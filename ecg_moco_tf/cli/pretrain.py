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
monitor. Several GPUs or machines: --strategy=mirrored|multi_worker (docs/distributed.md);
--batch_size is the global batch. --verbose: Keras' progress bar within each epoch (default:
one line per epoch).
"""
from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
common.define_manifest_flag(__name__, required=False)
common.define_encoder_flags(__name__)
common.define_read_flags(__name__, on_error="raise")
common.define_distribute_flags(__name__)
common.define_pretrain_flags(__name__)             # PretrainConfig: types and defaults
flags.DEFINE_alias("momentum", "moco_momentum")     # earlier names (flags/pretrain*.flags)
flags.DEFINE_alias("momentum_final", "moco_momentum_final")
flags.DEFINE_alias("version", "moco_version")
flags.DEFINE_string("shards", None, "Folder of TFRecord shards from `ecg-moco convert`: "
                    "pretrain on its train1-*/valid1-*.tfrecord files (streamed; FILE "
                    "auto-sharding between workers; --cache has no effect) instead of the "
                    "manifest's records.")
flags.DEFINE_string("encoder", None, "Continue pretraining from this encoder (a shipped name, "
                    "e.g. ptbxl-pool, or a .keras file; domain-adaptive pretraining on your own "
                    "archive): the query encoder starts as it, the key encoder as its copy. "
                    "Default: a freshly initialised encoder of the architecture flags.")
flags.DEFINE_bool("renormalize", False, "With --encoder: re-fit its input normalization on "
                  "this run's train1 ECGs (default: keep the encoder's own).")
flags.DEFINE_string("out", "runs/pretrain", "Output folder (created).")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in --out (default: refuse it; "
                  "an unfinished run there is resumed).")


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
    from ecg_moco_tf.training.pretrain import (check_config, check_distribution, check_out_dir,
                                               pretrain)

    if not FLAGS.manifest and not FLAGS.shards:
        raise SystemExit("pass --manifest (a manifest with train1/valid1 splits) or --shards "
                         "(TFRecords from `ecg-moco convert`)")
    common.refuse_architecture_with_encoder(FLAGS.encoder)
    if FLAGS.renormalize and not FLAGS.encoder:
        raise SystemExit("--renormalize re-fits the normalization of a given --encoder: pass "
                         "--encoder too (a new encoder is always fitted to its data)")
    strategy = common.strategy_from_flags("batch_size")  # first: before other TensorFlow work
    cfg = common.pretrain_config()
    base = None
    if FLAGS.encoder:
        from ecg_moco_tf.pretrained import encoder_path

        base = encoder_path(FLAGS.encoder)
    enc_kwargs = None if base else common.encoder_kwargs()    # checked before any reading
    check_out_dir(FLAGS.out, FLAGS.overwrite)             # before any work
    pre = ("pretrain_train", "pretrain_valid")
    df, view = None, {"train": None, "valid": None}
    if FLAGS.manifest:
        df = read_manifest(FLAGS.manifest)
        view = experiment_view(df, "proposed", require=() if FLAGS.shards else pre)
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
    if base:
        from ecg_moco_tf.training.experiments import load_encoder

        encoder = load_encoder(base)
        norm = ("normalization re-fitted on train1" if FLAGS.renormalize else
                "its own normalization kept")
        print(f"continuing from --encoder={base} ({norm})")
    else:
        from ecg_moco_tf.models.encoder import build_encoder

        encoder = build_encoder(**enc_kwargs)
    pretrain(train, valid, FLAGS.out, cfg, encoder=encoder, overwrite=FLAGS.overwrite,
             strategy=strategy, base_encoder=base,
             fit_normalization=FLAGS.renormalize or not base, **monitor)
    from ecg_moco_tf.training.distribute import worker_dir

    print(f"saved encoder: {worker_dir(FLAGS.out, strategy)}/encoder.keras")
