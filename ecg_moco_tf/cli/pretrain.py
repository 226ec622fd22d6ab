"""MoCo pretraining of the encoder on the manifest's train1/valid1 splits (labels unused).

Example: ecg-moco pretrain --manifest=runs/demo/cohort/manifest.csv --out=runs/demo/pretrain \
             --flagfile=flags/pretrain.flags
Writes encoder.keras (lowest valid1 loss), moco.keras, pretrain_log.csv, tensorboard/.
Re-running the same command after an interruption resumes from backup/; a folder that holds
a finished run is refused (exit code 2) unless --overwrite replaces it.
"""
import sys

from absl import flags

from ecg_moco_tf.cli import common

FLAGS = flags.FLAGS
common.define_manifest_flag(__name__)
common.define_encoder_flags(__name__)
flags.DEFINE_string("out", "runs/pretrain", "Output folder.")
flags.DEFINE_integer("epochs", 50, "Epochs.")
flags.DEFINE_integer("batch_size", 64, "Batch size (two views each).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("queue_size", 4096, "Negative keys K (must be well below the train1 size).")
flags.DEFINE_float("momentum", 0.999, "EMA momentum of the key encoder.")
flags.DEFINE_float("temperature", 0.2, "InfoNCE temperature.")
flags.DEFINE_enum("version", "2", ["1", "2"], "MoCo v1 (no head) or v2 (MLP head).")
flags.DEFINE_bool("symmetric", False, "Symmetric loss (both views as queries).")
flags.DEFINE_integer("shuffle_bn_splits", 2, "Key-batch BN groups (single-device shuffle-BN).")
flags.DEFINE_list("augmentations", [], "Transform class names; empty = the paper's five.")
flags.DEFINE_float("augment_probability", 0.5, "Per-sample probability of each transform.")
flags.DEFINE_bool("cache", True, "Keep decoded ECGs in memory (turn off for large data).")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in --out (default: refuse it; "
                  "an unfinished run there is resumed).")


def main(argv):
    del argv
    from ecg_moco_tf.data import experiment_view, read_manifest
    from ecg_moco_tf.training.pretrain import PretrainConfig, check_out_dir, pretrain

    try:
        check_out_dir(FLAGS.out, FLAGS.overwrite)         # before any work
    except FileExistsError as e:
        print(f"ecg-moco pretrain: {e}", file=sys.stderr)
        return 2
    view = experiment_view(read_manifest(FLAGS.manifest), "proposed")
    cfg = PretrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, queue_size=FLAGS.queue_size,
                         momentum=FLAGS.momentum, temperature=FLAGS.temperature,
                         version=int(FLAGS.version), symmetric=FLAGS.symmetric,
                         shuffle_bn_splits=FLAGS.shuffle_bn_splits,
                         augmentations=tuple(FLAGS.augmentations),
                         augment_probability=FLAGS.augment_probability, cache=FLAGS.cache,
                         seed=FLAGS.seed)
    import keras

    keras.utils.set_random_seed(FLAGS.seed)               # seeds the encoder's initial weights
    pretrain(view["pretrain_train"], view["pretrain_valid"], FLAGS.out, cfg,
             encoder=common.encoder_from_flags(), overwrite=FLAGS.overwrite)
    print(f"best encoder: {FLAGS.out}/encoder.keras")
